// The metrics registry: every stage and queue of a loader records the same
// figures in one place, and stats(), `stoker profile` and (later) the tuner
// read them from here. Nothing is counted twice by hand.
//
//   StageMeter  items, bytes, busy CPU (thread CPU clock), wall time blocked
//               on input and blocked on handing on, current parallelism
//   QueueMeter  puts, gets, capacity, time-weighted occupancy, time empty
//   Counter     a named count (samples delivered, skipped, ...)
//
// Meters are always on. Each costs a relaxed atomic add per event, plus two
// clock reads per timed span (thread CPU clock, or a steady clock for waits).
// Building with -DSTOKER_METERS=0 compiles every recording call to nothing,
// so their cost can be measured (bench/meter_cost.py); the registry itself,
// and so stats(), stays.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "stoker/base/histogram.h"
#include "stoker/loader.h"

#ifndef STOKER_METERS
#define STOKER_METERS 1
#endif

namespace stoker::obs {

inline constexpr bool kMetersOn = STOKER_METERS != 0;

// Monotonic wall clock and the calling thread's CPU clock, in nanoseconds.
int64_t NowNs();
int64_t ThreadCpuNs();

class StageMeter {
 public:
  explicit StageMeter(std::string name) : name_(std::move(name)) {}
  const std::string& name() const { return name_; }

  void AddItems(int64_t n, int64_t bytes = 0) {
    if constexpr (kMetersOn) {
      items_.fetch_add(n, std::memory_order_relaxed);
      if (bytes) bytes_.fetch_add(bytes, std::memory_order_relaxed);
    }
  }
  void AddBusyNs(int64_t ns) {
    if constexpr (kMetersOn) busy_ns_.fetch_add(ns, std::memory_order_relaxed);
  }
  void AddWaitInputNs(int64_t ns) {
    if constexpr (kMetersOn) wait_in_ns_.fetch_add(ns, std::memory_order_relaxed);
  }
  void AddWaitOutputNs(int64_t ns) {
    if constexpr (kMetersOn) wait_out_ns_.fetch_add(ns, std::memory_order_relaxed);
  }
  void SetParallelism(int n) { parallelism_.store(n, std::memory_order_relaxed); }
  int parallelism() const { return parallelism_.load(std::memory_order_relaxed); }

  StageStats Snapshot() const;

 private:
  const std::string name_;
  std::atomic<int64_t> items_{0}, bytes_{0}, busy_ns_{0}, wait_in_ns_{0}, wait_out_ns_{0};
  std::atomic<int> parallelism_{0};
};

// Occupancy of a bounded queue. Changes are recorded by its owner under the
// owner's lock, so they arrive in order; the area under the length curve
// gives the mean occupancy, and the time at length 0 gives readiness
// (1 - time empty / time), the figure SPDL and DS-Analyzer locate slow
// stages with.
class QueueMeter {
 public:
  explicit QueueMeter(std::string name) : name_(std::move(name)) {}
  const std::string& name() const { return name_; }

  void SetCapacity(int64_t c) { capacity_.store(c, std::memory_order_relaxed); }
  // `delta` items put (> 0) or taken (< 0) at time `now` (NowNs()).
  void Change(int64_t delta, int64_t now) {
    if constexpr (kMetersOn) {
      std::lock_guard<std::mutex> lock(mu_);
      Advance(now);
      length_ += delta;
      if (delta > 0) puts_ += delta;
      if (delta < 0) gets_ -= delta;
    }
  }
  void Change(int64_t delta) {
    if constexpr (kMetersOn) Change(delta, NowNs());
  }

  QueueStats Snapshot() const;

 private:
  void Advance(int64_t now) {
    if (start_ == 0) start_ = last_ = now;
    const int64_t dt = now - last_;
    if (dt > 0) {
      area_ += static_cast<double>(length_) * static_cast<double>(dt);
      if (length_ == 0) empty_ns_ += dt;
      last_ = now;
    }
  }

  const std::string name_;
  std::atomic<int64_t> capacity_{0};
  mutable std::mutex mu_;
  int64_t length_ = 0, puts_ = 0, gets_ = 0;
  int64_t start_ = 0, last_ = 0, empty_ns_ = 0;
  double area_ = 0;
};

// A named count; or, made by Registry::Seconds, a time kept in nanoseconds
// and reported in seconds.
class Counter {
 public:
  explicit Counter(std::string name, double scale = 1) : name_(std::move(name)), scale_(scale) {}
  const std::string& name() const { return name_; }
  void Add(int64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }
  Metric Read() const {
    return Metric{name_, static_cast<double>(value()) * scale_, scale_ == 1};
  }

 private:
  const std::string name_;
  const double scale_;
  std::atomic<int64_t> value_{0};
};

// Durations, in nanoseconds, in base/histogram.h's log-scale buckets (four
// per power of two: relaxed atomic adds, no lock); a percentile names the
// largest value of its bucket, so it is high by less than 25%.
class Histogram {
 public:
  explicit Histogram(std::string name) : name_(std::move(name)) {}
  const std::string& name() const { return name_; }
  void AddNs(int64_t ns) {
    if constexpr (kMetersOn) h_.Record(ns);
  }
  HistogramSnapshot Snapshot() const { return h_.Snapshot(); }
  // name_count, name_mean_s, name_p50_s, name_p90_s, name_p99_s.
  void Read(std::vector<Metric>& out) const;

 private:
  const std::string name_;
  stoker::Histogram h_;
};

// One per loader; outlives its passes. Meters are created once, up front,
// and never removed, so the references handed out stay valid.
class Registry {
 public:
  StageMeter& Stage(const std::string& name);
  QueueMeter& Queue(const std::string& name);
  Counter& Count(const std::string& name);
  // A duration: Add() nanoseconds, reported in seconds.
  Counter& Seconds(const std::string& name);
  Histogram& Latency(const std::string& name);

  // Figures kept elsewhere (the storage's request counters and latency
  // histogram, the JPEG index): read when a snapshot is taken.
  using Source = std::function<void(std::vector<Metric>&)>;
  void AddSource(Source source);

  // Every metric, stage and queue, in registration order.
  void Snapshot(LoaderStats& out) const;

 private:
  mutable std::mutex mu_;
  std::deque<StageMeter> stages_;
  std::deque<QueueMeter> queues_;
  std::deque<Counter> counters_;
  std::deque<Histogram> histograms_;
  std::vector<Source> sources_;
};

// Times a span on the calling thread's CPU clock into a stage's busy time.
class BusyTimer {
 public:
  explicit BusyTimer(StageMeter& m) : m_(m) {
    if constexpr (kMetersOn) t0_ = ThreadCpuNs();
  }
  ~BusyTimer() {
    if constexpr (kMetersOn) m_.AddBusyNs(ThreadCpuNs() - t0_);
  }
  BusyTimer(const BusyTimer&) = delete;
  BusyTimer& operator=(const BusyTimer&) = delete;

 private:
  StageMeter& m_;
  int64_t t0_ = 0;
};

}  // namespace stoker::obs
