// How many requests to keep in flight, from Little's law.
//
// To sustain a rate R (requests/s) against a latency W (s), L = R * W
// requests must be in flight. W is the measured latency of one attempt; R the
// demand, measured as the rate at which requests arrive (the loader asks only
// for what its prefetch window lets it, so this is the consumer's rate). Both
// are smoothed, and the limit is headroom * R * W.
//
// When requests wait in the queue the limit is what binds, and arrivals say
// little (a burst arrives at once, then nothing). The demand is then at least
// what completes, L / W, so R is taken as the larger of the arrival and
// completion rates: the next limit is headroom * L, which grows geometrically
// while a backlog remains (up to `max`), and falls back to what arrivals need
// once it drains. No fixed guess of the latency or the rate is needed.
#pragma once

#include <cstdint>

namespace stoker::storage::http {

struct ConcurrencyOptions {
  int min_in_flight = 4;
  int max_in_flight = 256;
  // Before anything has been measured (a cold start should not crawl).
  int initial_in_flight = 64;
  double headroom = 2.0;
  // Rate and latency are folded into the estimate once per interval,
  // exponentially smoothed with weight `smoothing` for the newest interval.
  double interval_s = 0.05;
  double smoothing = 0.3;
};

// Not thread-safe: the owner serialises calls. Times are seconds on any
// monotonic clock, passed in so tests can drive it.
class ConcurrencyController {
 public:
  explicit ConcurrencyController(const ConcurrencyOptions& options = {});

  // A request arrived (was asked for by the consumer); `queued` requests
  // wait for a slot, this one included.
  void OnArrival(double now, int64_t queued);
  // One attempt completed after `latency_s` seconds on the wire, with
  // `queued` requests waiting.
  void OnCompletion(double now, double latency_s, int64_t queued);

  // The current cap on requests in flight, in [min_in_flight, max_in_flight].
  int limit() const { return limit_; }
  // Smoothed estimates (0 until measured).
  double rate() const { return rate_; }
  double latency() const { return latency_; }

 private:
  void MaybeUpdate(double now);

  ConcurrencyOptions o_;
  int limit_;
  double rate_ = 0, latency_ = 0;
  double interval_start_ = -1;
  int64_t arrivals_ = 0, completions_ = 0;
  double latency_sum_ = 0;
  bool backlog_ = false;  // requests waited during this interval
};

}  // namespace stoker::storage::http
