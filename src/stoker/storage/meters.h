// What every backend counts about its reads, in atomics (no lock on the
// read path), turned into StorageCounters on demand.
#pragma once

#include <atomic>
#include <cstdint>

#include "stoker/base/cpu_time.h"
#include "stoker/base/histogram.h"
#include "stoker/storage/storage.h"

namespace stoker::storage {

struct StorageMeters {
  std::atomic<int64_t> requests{0};
  std::atomic<int64_t> bytes_read{0};
  std::atomic<int64_t> in_flight{0};
  std::atomic<int64_t> cancelled{0};
  Histogram latency_us;  // local backends: per read; remote ones keep theirs per attempt

  void Add(std::atomic<int64_t>& a, int64_t n = 1) { a.fetch_add(n, std::memory_order_relaxed); }
  static void RecordSeconds(Histogram& h, double seconds) {
    h.Record(static_cast<int64_t>(seconds * 1e6));
  }
  // A read's outcome: counts its bytes or its cancellation.
  template <class R>
  void Ended(const R& result) {
    if (result.ok()) {
      Add(bytes_read, static_cast<int64_t>(result->size()));
    } else if (result.status().code() == StatusCode::kCancelled) {
      Add(cancelled);
    }
  }

  StorageCounters Counters() const {
    StorageCounters c;
    c.requests = requests.load(std::memory_order_relaxed);
    c.bytes_read = bytes_read.load(std::memory_order_relaxed);
    c.in_flight = in_flight.load(std::memory_order_relaxed);
    c.cancelled = cancelled.load(std::memory_order_relaxed);
    c.latency_us = latency_us.Snapshot();
    return c;
  }
};

}  // namespace stoker::storage
