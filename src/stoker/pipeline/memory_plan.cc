#include "stoker/pipeline/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "stoker/pipeline/pass.h"
#include "stoker/pipeline/sample.h"
#include "stoker/sampler/chunk_order.h"

namespace stoker::pipeline {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;
// Scratch: what the process's allocator and the pass hold besides the
// pools, and each decode thread's decoded region and transform buffers
// (measured: docs/memory.md).
constexpr int64_t kBaseScratch = 24 * kMiB;
constexpr int64_t kThreadScratch = 8 * kMiB;
// A loose file's read when its size is not known.
constexpr int64_t kFileRead = 256 << 10;

std::string Mb(int64_t b) { return std::to_string((b + kMiB - 1) / kMiB) + " MB"; }

// A whole number read from the start of a file; -1 when it is not there
// or does not start with one ("max").
int64_t ReadNumber(const char* path) {
  std::ifstream f(path);
  long long v = -1;
  if (!(f >> v)) return -1;
  return v;
}

}  // namespace

int64_t AvailableMemory() {
  int64_t avail = -1;
  std::ifstream f("/proc/meminfo");
  std::string line;
  while (std::getline(f, line)) {
    long long kb = 0;
    if (std::sscanf(line.c_str(), "MemAvailable: %lld kB", &kb) == 1) {
      avail = static_cast<int64_t>(kb) * 1024;
      break;
    }
  }
  // cgroup v2: what the group's limit leaves.
  const int64_t limit = ReadNumber("/sys/fs/cgroup/memory.max");
  const int64_t current = ReadNumber("/sys/fs/cgroup/memory.current");
  if (limit > 0 && current >= 0) {
    const int64_t left = std::max<int64_t>(0, limit - current);
    avail = avail < 0 ? left : std::min(avail, left);
  }
  return avail;
}

Result<MemoryPlan> PlanMemory(LoaderOptions& o, const dataset::Dataset& d, int threads,
                              bool remote_pages) {
  // The default: a share of what is available, never less than the least
  // a loader needs (a default does not refuse to run).
  const bool given = o.memory_budget > 0;
  if (o.memory_budget == 0) {
    const int64_t avail = AvailableMemory();
    o.memory_budget = avail > 0 ? avail / kDefaultBudgetShare : LoaderOptions::kNoMemoryBudget;
  }
  MemoryPlan p;
  p.batch_bytes = static_cast<int64_t>(SampleImageBytes(o.transform)) * o.batch_size;
  p.scratch = kBaseScratch + kThreadScratch * std::max(1, threads);
  p.read_bytes = kFileRead;
  if (d.shards && d.size() > 0) {
    int64_t sum = 0;
    for (uint64_t i = 0; i < d.size(); ++i) sum += d.shards->entry(i).length;
    p.read_bytes = std::max<int64_t>(4096, sum / static_cast<int64_t>(d.size()));
  }
  const auto held_pages = [&](int64_t window, int64_t page) {
    if (!remote_pages) return int64_t{0};
    const auto w = static_cast<uint32_t>(window);
    return static_cast<int64_t>((1 + Pass::LeadWindows(w)) * w) * page;
  };
  const auto fill = [&] {
    p.batches = o.prefetch_batches + 2;
    p.reads = o.max_in_flight > 0 ? o.max_in_flight : int64_t{o.prefetch_batches} * o.batch_size;
    p.jpeg_index = (o.jpeg_index && !d.shards) ? o.jpeg_index_max_bytes : 0;
    const int64_t window = o.window_pages > 0 ? o.window_pages : sampler::kDefaultWindowPages;
    p.pages = held_pages(window, o.page_bytes);
    p.cache = o.cache.memory_bytes + o.cache.decoded_bytes;
  };
  fill();
  if (o.memory_budget <= 0) return p;

  const int64_t fixed = 3 * p.batch_bytes + p.scratch;
  if (!given) o.memory_budget = std::max(o.memory_budget, fixed);
  p.budget = o.memory_budget;
  if (fixed > o.memory_budget) {
    return InvalidArgument("memory_budget " + Mb(o.memory_budget) + " cannot hold one batch: " +
                           "a batch of " + std::to_string(o.batch_size) + " images takes " +
                           Mb(p.batch_bytes) + ", and the loader needs 3 batch buffers (" +
                           Mb(3 * p.batch_bytes) + ") and " + Mb(p.scratch) + " of scratch for " +
                           std::to_string(std::max(1, threads)) +
                           " threads; give a larger budget, a smaller batch_size or fewer threads");
  }
  const int64_t rest = o.memory_budget - fixed;
  // Shares of what is left: more batches ahead 40%, reads in flight 15%,
  // the JPEG index 15%, remote pages 30% (what a pool does not use goes to
  // the memory cache).
  const int64_t more_batches = std::max<int64_t>(0, rest * 40 / 100 / p.batch_bytes);
  o.prefetch_batches = static_cast<int>(std::clamp<int64_t>(more_batches + 1, 1, o.prefetch_batches));
  const int64_t reads = std::max<int64_t>(8, rest * 15 / 100 / p.read_bytes);
  const int64_t asked_reads = o.max_in_flight > 0 ? o.max_in_flight : int64_t{o.prefetch_batches} * o.batch_size;
  if (reads < asked_reads) o.max_in_flight = reads;
  if (o.jpeg_index && !d.shards) o.jpeg_index_max_bytes = std::min(o.jpeg_index_max_bytes, rest * 15 / 100);
  if (remote_pages) {
    const int64_t room = rest * 30 / 100;
    int64_t window = o.window_pages > 0 ? o.window_pages : sampler::kDefaultWindowPages;
    while (held_pages(window, o.page_bytes) > room && window > 2) window /= 2;
    while (held_pages(window, o.page_bytes) > room && o.page_bytes > kMiB) o.page_bytes /= 2;
    o.window_pages = static_cast<int>(window);
  }
  fill();
  const int64_t used = p.total() - p.cache;
  o.cache.memory_bytes = std::clamp<int64_t>(o.memory_budget - used, 0, o.cache.memory_bytes);
  o.cache.decoded_bytes = std::clamp<int64_t>(o.memory_budget - used - o.cache.memory_bytes, 0,
                                              o.cache.decoded_bytes);
  fill();
  return p;
}

}  // namespace stoker::pipeline
