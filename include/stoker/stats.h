// What a Loader has done: counts, per-stage and per-queue meters, storage
// I/O figures. Generated from the loader's metrics registry
// (src/stoker/obs/metrics.h): every figure is also in `metrics`, by name, so
// a binding can hand all of them on without listing them.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace stoker {

// One pipeline stage (Plumber-style operational data). Stages of a pass:
// plan -> fetch -> decode -> collate -> deliver.
struct StageStats {
  std::string name;
  int64_t items = 0;
  int64_t bytes = 0;
  double busy_cpu_s = 0;     // thread CPU time spent working
  double wait_input_s = 0;   // wall time its workers waited for input
  double wait_output_s = 0;  // wall time its workers waited to hand on (queue full)
  int parallelism = 0;       // threads (decode) or requests allowed in flight (fetch)
};

// One bounded queue between two stages.
struct QueueStats {
  std::string name;
  int64_t capacity = 0;
  int64_t puts = 0;
  int64_t gets = 0;
  double mean_occupancy = 0;  // time-weighted mean length
  double empty_fraction = 0;  // share of its lifetime it was empty
};

// A named figure. Integral counts are exact in a double up to 2^53.
struct Metric {
  std::string name;
  double value = 0;
  bool integral = true;
};

struct LoaderStats {
  int64_t samples_delivered = 0;
  int64_t samples_skipped = 0;
  int64_t batches_delivered = 0;
  int64_t bytes_read = 0;
  int64_t requests = 0;
  int64_t retries = 0;
  // Attempts aborted by a connect, read or deadline timeout (each is also
  // retried, and counted in `retries`, unless the deadline passed).
  int64_t timeouts = 0;
  double stall_s = 0;  // time the consumer waited inside Next()
  // Remote reads of an epoch's first batches issued while the epoch before
  // it drained (counted in `requests` too), and how many of them a pass used:
  // the rest were for an epoch that did not follow (set_epoch elsewhere, a
  // resumed position, the loader closed or not iterated again).
  int64_t lookahead_reads = 0;
  int64_t lookahead_used = 0;
  // JPEG decodes that skipped MCU rows or columns (options.jpeg_index), how
  // many of them were cut to the crop's MCU rows and columns (the others
  // only start at a remembered row), and the index's memory.
  int64_t jpeg_index_jumps = 0;
  int64_t jpeg_index_crops = 0;
  int64_t jpeg_index_bytes = 0;
  // Skipped samples by reason kind ("corrupt", "not found", ...).
  std::map<std::string, int64_t> errors_by_kind;
  std::vector<StageStats> stages;
  std::vector<QueueStats> queues;
  // Every scalar figure above and any other the registry holds (storage
  // latency percentiles, requests in flight, the consumer's waits by stage),
  // by name, in registration order.
  std::vector<Metric> metrics;

  // The metric called `name`, or `fallback`.
  double Get(const std::string& name, double fallback = 0) const {
    for (const auto& m : metrics)
      if (m.name == name) return m.value;
    return fallback;
  }
};

}  // namespace stoker
