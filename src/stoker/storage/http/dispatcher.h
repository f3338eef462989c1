// Many requests in flight over one Transport: a FIFO queue in front of an
// adaptive in-flight limit (Little's law, concurrency.h), retries with
// exponential backoff and full jitter (retry.h), counters.
//
//   Submit ──► FIFO ──(in flight < limit)──► prepare (sign) ──► Transport
//                ▲                                               │
//                └── next in line ◄── done ◄── classify ◄────────┘
//                                         └─ transient: backoff, re-prepare, send again
//
// A request holds its slot from its first attempt until its final outcome,
// backoff waits included, so retries never push the total in flight above
// the limit.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <stop_token>
#include <string>

#include "stoker/base/histogram.h"

#include "stoker/status.h"
#include "stoker/storage/http/concurrency.h"
#include "stoker/storage/http/http.h"
#include "stoker/storage/http/retry.h"

namespace stoker::storage::http {

struct DispatcherOptions {
  RetryPolicy retry;
  ConcurrencyOptions concurrency;
  // Seed of the backoff jitter; 0 picks one at random.
  uint64_t seed = 0;
  // The server, as messages name it ("http://127.0.0.1:9000"); empty when
  // each request's URI says it (plain http).
  std::string server;
};

// What a response means for the request that got it.
struct Verdict {
  enum Kind {
    kDone,   // deliver the response
    kRetry,  // transient: try again; `status` is the outcome if attempts run out
    kFail,   // deliver `status`
  };
  Kind kind = kDone;
  Status status;

  static Verdict Done() { return {kDone, Status::Ok()}; }
  static Verdict Retry(Status s) { return {kRetry, std::move(s)}; }
  static Verdict Fail(Status s) { return {kFail, std::move(s)}; }
};

struct DispatcherStats {
  int64_t requests = 0;  // attempts sent, retries included
  int64_t retries = 0;   // attempts after the first
  int64_t timeouts = 0;  // attempts that ended in NetError::kTimeout
  int in_flight = 0;
  int queued = 0;
  int limit = 0;
  double rate = 0;       // smoothed arrivals per second
  double latency_s = 0;  // smoothed seconds per attempt
  int64_t cancelled = 0;  // calls ended by their stop token
  HistogramSnapshot latency_us;  // each attempt's, sent to outcome (not cancelled ones)
};

class Dispatcher : public std::enable_shared_from_this<Dispatcher> {
 public:
  struct Call {
    // Builds the request for each attempt (so each attempt is signed anew).
    std::function<Result<Request>()> prepare;
    // Decides on each response (a network error included).
    std::function<Verdict(const Response&)> classify;
    // The final outcome, exactly once, on the transport's thread (or on the
    // caller's thread, if prepare fails at once). A request that runs out of
    // attempts or deadline ends with its last verdict's status, the attempts,
    // time and server added; its code becomes kUnavailable when the server
    // gave no final answer (success or a definite error) to any request since
    // this one first failed.
    std::function<void(Result<Response>)> done;
    // Once requested, the call ends with Cancelled: taken out of the queue,
    // or its attempt off the wire (Request::stop), or not retried. `done`
    // then runs on the transport's thread, never inside request_stop().
    std::stop_token stop;
  };

  static std::shared_ptr<Dispatcher> Create(std::unique_ptr<Transport> transport,
                                            const DispatcherOptions& options);

  // Queues `call`; returns at once. Pending calls keep the Dispatcher alive.
  void Submit(Call call);

  DispatcherStats stats() const;

  // Ends every pending call with Cancelled ("storage is shutting down") and
  // refuses new ones: what a storage does when it is dropped, so requests in
  // flight or waiting to retry do not keep the I/O thread alive.
  void Shutdown();

 private:
  struct Op {
    Call call;
    int attempt = 0;
    double first_start = 0;    // seconds (WallSeconds) when the first attempt began
    double attempt_start = 0;  // seconds (WallSeconds)
    double first_failure = 0;  // when the first attempt that calls for a retry ended; 0: none yet
    bool queued = false;       // guarded by mu_: in queue_
    std::shared_ptr<void> on_stop;  // a stop_callback on call.stop: OnStop
  };

  // `op`'s stop was requested (on the requesting thread).
  void OnStop(const std::shared_ptr<Op>& op);

  // The status of a request that gives up after `last`.
  Status GiveUp(const Op& op, const Status& last, double now, const char* why) const;

  Dispatcher(std::unique_ptr<Transport> transport, const DispatcherOptions& options);
  void Attempt(std::shared_ptr<Op> op, std::chrono::nanoseconds delay);
  void OnResponse(const std::shared_ptr<Op>& op, Response response);
  // `shut_down`: the transport was shut down; every later call is refused.
  void Finish(const std::shared_ptr<Op>& op, Result<Response> result, bool shut_down = false);

  const DispatcherOptions options_;
  std::unique_ptr<Transport> transport_;

  mutable std::mutex mu_;
  std::deque<std::shared_ptr<Op>> queue_;  // guarded by mu_
  int in_flight_ = 0;                      // guarded by mu_
  bool cancelled_ = false;                 // guarded by mu_: the transport shut down
  ConcurrencyController controller_;       // guarded by mu_
  std::mt19937_64 rng_;                    // guarded by mu_

  std::atomic<int64_t> requests_{0};
  std::atomic<int64_t> retries_{0};
  std::atomic<int64_t> timeouts_{0};
  std::atomic<int64_t> cancelled_calls_{0};
  Histogram latency_us_;
  // When the server last gave some request a final answer (nanoseconds of
  // WallSeconds; 0: never): tells a dead server from one bad object.
  std::atomic<int64_t> last_answer_ns_{0};
};

}  // namespace stoker::storage::http
