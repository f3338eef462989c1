// A memory budget shared out over the loader's pools (docs/memory.md):
// batch buffers, reads in flight, the JPEG index, remote shard pages, the
// memory cache and per-thread scratch.
#pragma once

#include <cstdint>
#include <string>

#include "stoker/dataset/dataset.h"
#include "stoker/options.h"
#include "stoker/status.h"

namespace stoker::pipeline {

// What each pool may hold under the budget, in bytes, with the settings
// that bound it.
struct MemoryPlan {
  int64_t budget = 0;
  int64_t batch_bytes = 0;    // one batch's image buffer
  int64_t batches = 0;        // batch buffers (prefetch_batches + 2)
  int64_t scratch = 0;        // decode and transform scratch, all threads
  int64_t reads = 0;          // reads in flight
  int64_t read_bytes = 0;     // the bytes one read is expected to take
  int64_t jpeg_index = 0;
  int64_t pages = 0;          // remote shard pages held
  int64_t cache = 0;          // cache_memory and cache_decoded
  int64_t total() const {
    return batch_bytes * batches + scratch + reads * read_bytes + jpeg_index + pages + cache;
  }
};

// The default budget is the memory available over this.
inline constexpr int64_t kDefaultBudgetShare = 4;

// Bytes this process may still take: MemAvailable, or what the cgroup's
// limit leaves when that is less; -1 when neither can be read.
int64_t AvailableMemory();

// o.memory_budget 0 is first replaced by the default (AvailableMemory() /
// kDefaultBudgetShare, at least what three batch buffers and the scratch
// need), and kNoMemoryBudget means none. With a budget, lowers o's prefetch_batches, max_in_flight,
// jpeg_index_max_bytes, window_pages, page_bytes and cache.memory_bytes
// until the pools fit the budget (settings already below their share are
// kept), and returns the plan. InvalidArgument, saying what one batch
// needs, when the budget cannot hold three batch buffers and the scratch
// of `threads` decode threads (only for a budget the user gave). Without a
// budget, returns the plan of o's own settings (budget 0).
Result<MemoryPlan> PlanMemory(LoaderOptions& o, const dataset::Dataset& d, int threads,
                              bool remote_pages);

}  // namespace stoker::pipeline
