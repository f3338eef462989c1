// Autotuning (docs/autotune.md): the decode threads and the batches
// prefetched ahead of the consumer, chosen while the loader runs.
//
// The tuner is fed one window of measurements at a time (about a second of
// the loader's meters: images delivered, the decode threads' CPU, the
// consumer's waits and time away, request latency) and answers with the
// settings to use next. Model first, then measured adjustments:
//
//   consumer waits for fetch   prefetch from Little's law: requests in
//                              flight = target rate x latency, in batches;
//                              doubled when the model already holds and
//                              the consumer still waits (tf.data's rule)
//   consumer waits for decode  one more decode thread (up to the CPU budget)
//   the loader waits for the   the fewest decode threads whose CPU covers
//   consumer                   the consumer's rate (rate x CPU per image),
//                              then fewer prefetched batches
//
// Every change is a trial: the window after it settles, the next
// kTrialWindows are measured against the last stable windows before it
// (up to kBaseWindows; a decision needs at least kMinBaseWindows of them),
// and the change is kept only if it paid: more threads or batches must
// raise the rate by kGain, fewer must not lower it by more than kLoss. A reverted trial of a kind waits 4, 8, 16 ... windows before
// that kind is tried again; a kept one resets the wait. Conditions that
// drift (a slower step, a bandwidth drop) show up as waits of another kind,
// so the tuner re-tunes without a restart.
//
// Not thread-safe; a pure function of the windows it is fed, so tests drive
// it with made-up ones.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace stoker::pipeline {

// What the loader measured over one window.
struct TuneWindow {
  double wall_s = 0;
  int64_t images = 0;   // delivered to the consumer
  int64_t batches = 0;  // delivered to the consumer
  double decode_cpu_s = 0;  // the decode threads' busy CPU
  int64_t decoded = 0;      // samples decoded
  // The consumer's waits in Next(), by the stage it waited for.
  double wait_fetch_s = 0, wait_decode_s = 0, wait_collate_s = 0;
  // The loader's wait for the consumer (a batch was ready when it came).
  double wait_consumer_s = 0;
  double consumer_s = 0;       // the consumer's time away from the loader
  double fetch_latency_s = 0;  // mean, request to bytes; 0: unknown
};

struct TuneSettings {
  int threads = 1;
  int prefetch = 2;
  bool operator==(const TuneSettings&) const = default;
};

struct TuneLimits {
  bool threads = true;   // tune the decode threads
  bool prefetch = true;  // tune the batches prefetched
  int max_threads = 1;   // the CPU budget
  int min_prefetch = 1;
  int max_prefetch = 2;  // what the memory budget holds
  int64_t batch_size = 1;
};

class Autotuner {
 public:
  // The share of the window the consumer may wait before the loader counts
  // as too slow; the loader counts as ahead below kIdleShare.
  static constexpr double kStarvedShare = 0.05;
  static constexpr double kIdleShare = 0.01;
  // A trial that adds must gain this much; one that takes away may lose
  // at most kLoss.
  static constexpr double kGain = 0.03;
  static constexpr double kLoss = 0.03;
  static constexpr int kMaxHold = 64;
  static constexpr int kTrialWindows = 2;
  static constexpr int kBaseWindows = 3;
  static constexpr int kMinBaseWindows = 2;

  Autotuner(const TuneLimits& limits, const TuneSettings& start);

  // Folds one window in; returns the settings to use from now on.
  TuneSettings Observe(const TuneWindow& w);
  // The settings in use were changed from outside (the user's
  // set_threads): a trial in progress is dropped and the next window is
  // taken as a transient.
  void Adopt(const TuneSettings& s);
  // Whether the threads are the tuner's to change (the user's set_threads
  // takes them and gives them back); off, no trial touches them.
  void TuneThreads(bool on) { limits_.threads = on; }

  const TuneSettings& settings() const { return s_; }
  // The rate the model expects of the current settings (images/s; 0 until
  // measured), and the last window's measured rate.
  double predicted() const { return predicted_; }
  double measured() const { return measured_; }
  double cpu_per_image() const { return cpu_per_image_; }
  int64_t changes() const { return changes_; }
  int64_t reverted() const { return reverted_; }
  int64_t windows() const { return windows_; }
  // Windows since the settings last changed.
  int64_t stable_windows() const { return stable_; }
  // Why the settings last changed ("" when they never did).
  const std::string& reason() const { return reason_; }

 private:
  enum Kind { kThreadsUp, kThreadsDown, kPrefetchUp, kPrefetchDown, kKinds };
  struct Trial {
    Kind kind;
    TuneSettings before;
    double rate_before;
    bool settled = false;  // the window right after the change was skipped
    double rate_sum = 0;   // over the measured windows since
    int measured = 0;
  };
  void Try(Kind kind, TuneSettings next, double rate, std::string why);
  double Predict(const TuneSettings& s, double consumer_rate) const;

  TuneLimits limits_;
  TuneSettings s_;
  std::optional<Trial> trial_;
  bool skip_ = true;  // the next window is a transient: measured, not acted on
  std::vector<double> base_;  // rates of the stable windows since the last change
  int hold_[kKinds] = {};     // windows before this kind is tried again
  int backoff_[kKinds] = {};  // the hold after the next revert
  double cpu_per_image_ = 0;  // decode CPU seconds per sample, smoothed
  double latency_ = 0;        // seconds, smoothed
  double predicted_ = 0, measured_ = 0;
  int64_t changes_ = 0, reverted_ = 0, windows_ = 0, stable_ = 0;
  std::string reason_;
};

}  // namespace stoker::pipeline
