#include "stoker/storage/http/concurrency.h"

#include <algorithm>
#include <cmath>

namespace stoker::storage::http {

ConcurrencyController::ConcurrencyController(const ConcurrencyOptions& options) : o_(options) {
  o_.min_in_flight = std::max(1, o_.min_in_flight);
  o_.max_in_flight = std::max(o_.min_in_flight, o_.max_in_flight);
  limit_ = std::clamp(o_.initial_in_flight, o_.min_in_flight, o_.max_in_flight);
}

void ConcurrencyController::OnArrival(double now, int64_t queued) {
  MaybeUpdate(now);
  ++arrivals_;
  backlog_ |= queued > 0;
}

void ConcurrencyController::OnCompletion(double now, double latency_s, int64_t queued) {
  MaybeUpdate(now);
  ++completions_;
  latency_sum_ += std::max(0.0, latency_s);
  backlog_ |= queued > 0;
}

void ConcurrencyController::MaybeUpdate(double now) {
  if (interval_start_ < 0) {
    interval_start_ = now;
    return;
  }
  const double dt = now - interval_start_;
  if (dt < o_.interval_s) return;
  if (dt > 20 * o_.interval_s) {
    // An idle gap (say, between epochs) says nothing about the demand when
    // work resumes: start a fresh interval, keep the estimates.
    arrivals_ = completions_ = 0;
    latency_sum_ = 0;
    backlog_ = false;
    interval_start_ = now;
    return;
  }
  const double a = o_.smoothing;
  const double rate = static_cast<double>(backlog_ ? std::max(arrivals_, completions_) : arrivals_) / dt;
  rate_ = rate_ == 0 ? rate : a * rate + (1 - a) * rate_;
  if (completions_ > 0) {
    const double lat = latency_sum_ / static_cast<double>(completions_);
    latency_ = latency_ == 0 ? lat : a * lat + (1 - a) * latency_;
  }
  arrivals_ = completions_ = 0;
  latency_sum_ = 0;
  backlog_ = false;
  interval_start_ = now;
  // Until a latency is known, keep the initial limit.
  if (latency_ > 0) {
    const double want = std::ceil(o_.headroom * rate_ * latency_);
    limit_ = static_cast<int>(std::clamp(want, static_cast<double>(o_.min_in_flight),
                                         static_cast<double>(o_.max_in_flight)));
  }
}

}  // namespace stoker::storage::http
