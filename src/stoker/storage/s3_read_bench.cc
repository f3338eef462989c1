// CPU per object of stoker's S3 read path alone (signing, dispatch, HTTP,
// the body into a recycled buffer), no decoding: the part of a Loader's
// cost that reading from S3 adds over reading files.
//
//   s3_read_bench s3://bucket/prefix/ [rounds] [files-folder]
//
// (endpoint and credentials the AWS way: AWS_ENDPOINT_URL etc.) Lists the
// prefix, then reads every object `rounds` times (default 5), keeping at
// most 256 in flight, and prints per round: objects/s, MB/s, and the
// process's CPU microseconds per object (all threads: the I/O thread does
// nearly all of it). With a folder, it then reads the same keys from there
// through FileStorage, for comparison.

#include <time.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "stoker/base/cpu_time.h"
#include "stoker/storage/storage.h"

namespace {

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

int Run(const std::string& base, int rounds) {
  using namespace stoker;
  auto opened = storage::OpenStorage(base);
  if (!opened.ok()) {
    std::fprintf(stderr, "%s\n", opened.status().ToString().c_str());
    return 1;
  }
  std::shared_ptr<storage::Storage> store = *opened;
  auto listed = store->List(base);
  if (!listed.ok()) {
    std::fprintf(stderr, "%s\n", listed.status().ToString().c_str());
    return 1;
  }
  std::vector<std::string> uris;
  for (const auto& o : *listed) uris.push_back(store->Join(base, o.key));
  std::printf("%s: %zu objects\n", base.c_str(), uris.size());
  constexpr int kWindow = 256;
  for (int round = 0; round < rounds; ++round) {
    std::mutex mu;
    std::condition_variable cv;
    int in_flight = 0, failed = 0;
    int64_t bytes = 0;
    const double t0 = WallSeconds(), c0 = ProcessCpuSeconds();
    for (const auto& uri : uris) {
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return in_flight < kWindow; });
        ++in_flight;
      }
      store->ReadAsync(uri, [&, store](Result<storage::Bytes> r) {
        std::lock_guard<std::mutex> lock(mu);
        if (r.ok()) {
          bytes += static_cast<int64_t>(r->size());
          store->Recycle(std::move(*r));
        } else {
          ++failed;
        }
        --in_flight;
        cv.notify_all();
      });
    }
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return in_flight == 0; });
    }
    const double wall = WallSeconds() - t0, cpu = ProcessCpuSeconds() - c0;
    const double n = static_cast<double>(uris.size());
    std::printf("  round %d: %.0f objects/s, %.0f MB/s, %.1f us CPU per object%s\n", round,
                n / wall, static_cast<double>(bytes) / wall / 1e6, cpu / n * 1e6,
                failed ? " (some failed)" : "");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: s3_read_bench s3://bucket/prefix/ [rounds] [files-folder]\n");
    return 2;
  }
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  if (int rc = Run(argv[1], rounds); rc != 0) return rc;
  return argc > 3 ? Run(argv[3], rounds) : 0;
}
