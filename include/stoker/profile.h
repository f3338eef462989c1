// Where a loader's time goes (`stoker profile`, Loader::Profile(),
// loader.profile() in Python): per stage the rate per core and utilisation,
// the consumer's waiting split over the stages it waited for, the stage that
// limits the rate, a what-if from the measured per-core rates, I/O figures,
// and CPU and energy per image. Computed from the loader's stats (the metrics
// registry) over the time since its first batch was asked for.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "stoker/stats.h"

namespace stoker {

struct StageProfile {
  std::string name;  // plan, fetch, decode, collate, deliver, consumer
  int64_t items = 0;
  double busy_cpu_s = 0;
  // Items per busy CPU-second: the stage's rate on one core (0: not measured).
  double rate_per_core = 0;
  // Busy CPU over (wall time x parallelism).
  double utilisation = 0;
  int parallelism = 0;
  // Share of all waiting (the consumer's for the loader, attributed to the
  // stage whose work the batch it waited for still needed, walking upstream;
  // and the loader's for the consumer, under `consumer`). Sums to 1 over the
  // stages when anything waited.
  double wait_share = 0;
};

struct ProfileReport {
  double wall_s = 0;     // since the first batch was asked for
  int64_t images = 0;    // samples delivered
  int64_t batches = 0;
  double images_per_s = 0;
  int cores = 0;         // cores this process may run on
  int decode_threads = 0;
  int64_t max_in_flight = 0;  // 0: no cap but the prefetch window
  std::vector<StageProfile> stages;
  std::string bottleneck;  // the stage with the largest wait_share
  std::string summary;     // one sentence saying so
  // What-if from the measured per-core rates: images/s with one more decode
  // thread (bounded by the cores, fetch and the consumer), and the training
  // step (ms per batch) at and above which the loader, as it runs now,
  // would not stall training (assuming the step takes none of these cores).
  double whatif_one_more_decode_thread_images_per_s = 0;
  double no_stall_step_ms = 0;
  // Storage reads as the pipeline saw them (issue to bytes, retries
  // included).
  int64_t io_requests = 0;
  int64_t io_retries = 0;
  int64_t io_timeouts = 0;
  double io_latency_p50_ms = 0, io_latency_p90_ms = 0, io_latency_p99_ms = 0;
  double io_mean_in_flight = 0;
  double io_bytes_per_request = 0;
  // Process CPU (all threads, the consumer's included) per image.
  double cpu_s = 0;
  double cpu_s_per_image = 0;
  // Joules: "rapl" (the CPU package's energy counter, the whole machine's
  // draw over the window) where /sys/class/powercap is readable, else
  // "estimate": process CPU-seconds x watts_per_core.
  double energy_j = 0;
  double energy_j_per_image = 0;
  std::string energy_source;
  // Autotuning (docs/autotune.md): the settings in use, which of them were
  // chosen by the loader, the rate its model predicts for them against the
  // rate measured, and why they last changed. Empty when nothing is tuned.
  std::string autotune;
  double watts_per_core = 0;
};

// What MakeProfile needs besides the stats.
struct ProfileInputs {
  double wall_s = 0;
  double cpu_s = 0;        // process CPU over the window
  double rapl_j = -1;      // < 0: not readable
  int cores = 1;
  int64_t batch_size = 1;
  int64_t max_in_flight = 0;
  double watts_per_core = 10;  // the estimate's figure when RAPL is not readable
};

// A pure function of its inputs (tested on synthetic stats).
ProfileReport MakeProfile(const LoaderStats& stats, const ProfileInputs& in);

}  // namespace stoker
