#include "stoker/pipeline/autotune.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace stoker::pipeline {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// Decode threads are asked to be busy at most this share of the time, and
// Little's law is given this much more in flight than the mean latency
// needs (latency varies; a batch needs all of its samples back).
constexpr double kThreadBusy = 0.75;
constexpr double kFlightHeadroom = 1.5;

double Smooth(double old, double v) { return old > 0 ? 0.5 * old + 0.5 * v : v; }

}  // namespace

Autotuner::Autotuner(const TuneLimits& limits, const TuneSettings& start)
    : limits_(limits), s_(start) {}

// Batches ahead that keep `rate` images/s coming against `latency` seconds
// per request: the requests in flight (Little's law) in batches, plus the
// batch being decoded.
static int LittleBatches(double rate, double latency, int64_t batch_size) {
  const double in_flight = rate * latency * kFlightHeadroom;
  return static_cast<int>(std::ceil(in_flight / static_cast<double>(batch_size))) + 1;
}

double Autotuner::Predict(const TuneSettings& s, double consumer_rate) const {
  const double decode = cpu_per_image_ > 0 ? s.threads / cpu_per_image_ : kInf;
  const double fetch =
      latency_ > 0 ? static_cast<double>(s.prefetch * limits_.batch_size) / latency_ : kInf;
  const double consumer = consumer_rate > 0 ? consumer_rate : kInf;
  const double r = std::min({decode, fetch, consumer});
  return std::isfinite(r) ? r : 0;
}

void Autotuner::Try(Kind kind, TuneSettings next, double rate, std::string why) {
  trial_ = Trial{.kind = kind, .before = s_, .rate_before = rate};
  s_ = next;
  base_.clear();
  ++changes_;
  stable_ = 0;
  reason_ = std::move(why);
}

void Autotuner::Adopt(const TuneSettings& s) {
  if (s == s_) return;
  s_ = s;
  trial_.reset();
  base_.clear();
  skip_ = true;
  stable_ = 0;
}

TuneSettings Autotuner::Observe(const TuneWindow& w) {
  ++windows_;
  if (w.wall_s <= 0) return s_;
  for (int& h : hold_) h = std::max(0, h - 1);
  const double rate = static_cast<double>(w.images) / w.wall_s;
  measured_ = rate;
  if (w.decoded > 0 && w.decode_cpu_s > 0) {
    cpu_per_image_ = Smooth(cpu_per_image_, w.decode_cpu_s / static_cast<double>(w.decoded));
  }
  if (w.fetch_latency_s > 0) latency_ = Smooth(latency_, w.fetch_latency_s);
  const double consumer_rate =
      w.consumer_s > 0 ? static_cast<double>(w.images) / w.consumer_s : 0;
  predicted_ = Predict(s_, consumer_rate);

  if (trial_) {
    if (!trial_->settled) {
      trial_->settled = true;
      return s_;
    }
    trial_->rate_sum += rate;
    if (++trial_->measured < kTrialWindows) return s_;
    const double after = trial_->rate_sum / trial_->measured;
    const Kind k = trial_->kind;
    const bool adds = k == kThreadsUp || k == kPrefetchUp;
    const bool paid = adds ? after >= trial_->rate_before * (1 + kGain)
                           : after >= trial_->rate_before * (1 - kLoss);
    if (paid) {
      backoff_[k] = 0;
    } else {
      s_ = trial_->before;
      ++reverted_;
      backoff_[k] = backoff_[k] == 0 ? 4 : std::min(kMaxHold, backoff_[k] * 2);
      hold_[k] = backoff_[k];
      stable_ = 0;
      skip_ = true;
      predicted_ = Predict(s_, consumer_rate);
    }
    trial_.reset();
    return s_;
  }
  if (skip_) {
    skip_ = false;
    return s_;
  }
  ++stable_;
  base_.push_back(rate);
  if (base_.size() > static_cast<size_t>(kBaseWindows)) base_.erase(base_.begin());
  if (base_.size() < static_cast<size_t>(kMinBaseWindows)) return s_;
  double base_rate = 0;
  for (double r : base_) base_rate += r;
  base_rate /= static_cast<double>(base_.size());

  const double waited = w.wait_fetch_s + w.wait_decode_s + w.wait_collate_s;
  const double starved = waited / w.wall_s;
  const double target = cpu_per_image_ > 0 ? s_.threads / cpu_per_image_ : 0;
  if (starved > kStarvedShare) {
    const bool fetch_bound = w.wait_fetch_s >= w.wait_decode_s + w.wait_collate_s;
    if (fetch_bound && limits_.prefetch && s_.prefetch < limits_.max_prefetch &&
        hold_[kPrefetchUp] == 0) {
      // Little's law, at most doubled per trial: under a bandwidth limit the
      // latency grows with what is in flight, and the law's answer with it.
      int next = s_.prefetch * 2;
      if (latency_ > 0 && target > 0) {
        const int little = LittleBatches(target, latency_, limits_.batch_size);
        if (little > s_.prefetch) next = std::min(next, little);
      }
      next = std::min(next, limits_.max_prefetch);
      Try(kPrefetchUp, {s_.threads, next}, base_rate, "the consumer waited for storage reads");
    } else if (!fetch_bound && limits_.threads && s_.threads < limits_.max_threads &&
               hold_[kThreadsUp] == 0) {
      Try(kThreadsUp, {s_.threads + 1, s_.prefetch}, base_rate, "the consumer waited for decoding");
    }
  } else if (starved < kIdleShare && w.wait_consumer_s > 0) {
    // Ahead of the consumer: give back what its rate does not need.
    if (limits_.threads && s_.threads > 1 && cpu_per_image_ > 0 && hold_[kThreadsDown] == 0) {
      const int need =
          std::max(1, static_cast<int>(std::ceil(base_rate * cpu_per_image_ / kThreadBusy)));
      if (need < s_.threads) {
        Try(kThreadsDown, {need, s_.prefetch}, base_rate,
            "the loader waited for the consumer: fewer decode threads cover its rate");
        return s_;
      }
    }
    const int floor = std::max(2, limits_.min_prefetch);
    if (limits_.prefetch && s_.prefetch > floor && hold_[kPrefetchDown] == 0) {
      const int need = latency_ > 0 ? LittleBatches(base_rate, latency_, limits_.batch_size) : floor;
      const int next = std::max({floor, need, s_.prefetch / 2});
      if (next < s_.prefetch) {
        Try(kPrefetchDown, {s_.threads, next}, base_rate,
            "the loader waited for the consumer: fewer batches ahead cover its rate");
      }
    }
  }
  return s_;
}

}  // namespace stoker::pipeline
