#include "stoker/storage/http/dispatcher.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string_view>
#include <vector>

#include "stoker/base/cpu_time.h"

namespace stoker::storage::http {

std::shared_ptr<Dispatcher> Dispatcher::Create(std::unique_ptr<Transport> transport,
                                               const DispatcherOptions& options) {
  return std::shared_ptr<Dispatcher>(new Dispatcher(std::move(transport), options));
}

Dispatcher::Dispatcher(std::unique_ptr<Transport> transport, const DispatcherOptions& options)
    : options_(options),
      transport_(std::move(transport)),
      controller_(options.concurrency),
      rng_(options.seed != 0 ? options.seed : std::random_device{}()) {}

void Dispatcher::Submit(Call call) {
  auto op = std::make_shared<Op>();
  op->call = std::move(call);
  if (op->call.stop.stop_requested()) {
    cancelled_calls_.fetch_add(1, std::memory_order_relaxed);
    op->call.done(Cancelled("request cancelled"));
    return;
  }
  const std::stop_token stop = op->call.stop;  // op->call is another thread's once queued
  bool cancelled = false;
  std::vector<std::shared_ptr<Op>> start;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled = cancelled_;
    if (!cancelled) {
      // Through the queue even when there is room: a raised limit must
      // start the oldest waiting request first (FIFO).
      queue_.push_back(op);
      op->queued = true;
      const int64_t room = std::max(0, controller_.limit() - in_flight_);
      controller_.OnArrival(WallSeconds(),
                            std::max<int64_t>(0, static_cast<int64_t>(queue_.size()) - room));
      while (!queue_.empty() && in_flight_ < controller_.limit()) {
        queue_.front()->queued = false;
        start.push_back(std::move(queue_.front()));
        queue_.pop_front();
        ++in_flight_;
      }
    }
  }
  if (cancelled) {
    op->call.done(Cancelled("storage is shutting down"));
    return;
  }
  if (stop.stop_possible()) {
    // After queueing, outside mu_: it runs at once if stop came meanwhile.
    op->on_stop = std::make_shared<std::stop_callback<std::function<void()>>>(
        stop, std::function<void()>([w = weak_from_this(), o = std::weak_ptr<Op>(op)] {
          auto self = w.lock();
          auto op = o.lock();
          if (self && op) self->OnStop(op);
        }));
  }
  for (auto& next : start) Attempt(std::move(next), std::chrono::nanoseconds(0));
}

void Dispatcher::OnStop(const std::shared_ptr<Op>& op) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!op->queued) return;  // on the wire or in a backoff: the transport ends it
    op->queued = false;
    queue_.erase(std::find(queue_.begin(), queue_.end(), op));
    ++in_flight_;  // Finish gives it back
  }
  // Ended through the transport, so `done` runs on its thread: the caller
  // may hold a lock here that its callback takes. The request is never
  // started: its stop is requested.
  Request r;
  r.stop = op->call.stop;
  auto self = shared_from_this();
  transport_->Send(std::move(r), std::chrono::nanoseconds(0),
                   [self, op](Response response) { self->OnResponse(op, std::move(response)); });
}

void Dispatcher::Attempt(std::shared_ptr<Op> op, std::chrono::nanoseconds delay) {
  ++op->attempt;
  auto request = op->call.prepare();
  if (!request.ok()) {
    Finish(op, request.status());
    return;
  }
  requests_.fetch_add(1, std::memory_order_relaxed);
  if (op->attempt > 1) retries_.fetch_add(1, std::memory_order_relaxed);
  op->attempt_start = WallSeconds() + std::chrono::duration<double>(delay).count();
  if (op->attempt == 1) op->first_start = op->attempt_start;
  if (options_.retry.deadline.count() > 0) {
    // The attempt may use what is left of the request's deadline, no more.
    const double left = op->first_start + std::chrono::duration<double>(options_.retry.deadline).count() -
                        op->attempt_start;
    request->timeout = std::chrono::milliseconds(std::max<int64_t>(1, static_cast<int64_t>(std::ceil(left * 1e3))));
  }
  request->stop = op->call.stop;
  auto self = shared_from_this();
  transport_->Send(std::move(*request), delay, [self, op](Response r) {
    self->OnResponse(op, std::move(r));
  });
}

void Dispatcher::OnResponse(const std::shared_ptr<Op>& op, Response response) {
  if (response.error == NetError::kCancelled) {
    if (op->call.stop.stop_requested()) {
      cancelled_calls_.fetch_add(1, std::memory_order_relaxed);
      Finish(op, Cancelled("request cancelled"));
    } else {
      Finish(op, Cancelled("storage is shutting down"), /*shut_down=*/true);
    }
    return;
  }
  const double now = WallSeconds();
  latency_us_.Record(static_cast<int64_t>((now - op->attempt_start) * 1e6));
  if (response.error == NetError::kTimeout) timeouts_.fetch_add(1, std::memory_order_relaxed);
  Verdict verdict = op->call.classify(response);
  if (verdict.kind != Verdict::kRetry && response.error == NetError::kNone) {
    last_answer_ns_.store(static_cast<int64_t>(now * 1e9), std::memory_order_relaxed);
  }
  const RetryPolicy& policy = options_.retry;
  const bool attempts_left = policy.max_attempts <= 0 || op->attempt < policy.max_attempts;
  std::chrono::nanoseconds backoff(0);
  {
    std::lock_guard<std::mutex> lock(mu_);
    controller_.OnCompletion(now, now - op->attempt_start, static_cast<int64_t>(queue_.size()));
    if (verdict.kind == Verdict::kRetry && attempts_left) {
      backoff = Backoff(policy, op->attempt, rng_());
    }
  }
  switch (verdict.kind) {
    case Verdict::kDone: Finish(op, std::move(response)); return;
    case Verdict::kFail: Finish(op, std::move(verdict.status)); return;
    case Verdict::kRetry: {
      if (op->first_failure == 0) op->first_failure = now;
      if (!attempts_left) {
        Finish(op, GiveUp(*op, verdict.status, now, "max_attempts"));
        return;
      }
      const double deadline_s = std::chrono::duration<double>(policy.deadline).count();
      if (deadline_s > 0) {
        // Retry until the deadline, not short of it: a backoff that would
        // cross it is shortened so one more attempt still fits (a server
        // back a moment before the deadline is still used); with no room
        // left for an attempt, give up.
        const double room = std::min(0.1, deadline_s * 0.1);
        const double left = op->first_start + deadline_s - now;
        if (left <= room) {
          Finish(op, GiveUp(*op, verdict.status, now, "io_timeout"));
          return;
        }
        backoff = std::min<std::chrono::nanoseconds>(
            backoff, std::chrono::nanoseconds(static_cast<int64_t>((left - room) * 1e9)));
      }
      Attempt(op, backoff);
      return;
    }
  }
}

Status Dispatcher::GiveUp(const Op& op, const Status& last, double now, const char* why) const {
  char span[96];
  if (std::string_view(why) == "io_timeout") {
    std::snprintf(span, sizeof(span), " in %.1f s (io_timeout %g s)", now - op.first_start,
                  std::chrono::duration<double>(options_.retry.deadline).count());
  } else {
    std::snprintf(span, sizeof(span), " in %.1f s (max_attempts %d)", now - op.first_start,
                  options_.retry.max_attempts);
  }
  std::string msg = last.message() + "; gave up after " + std::to_string(op.attempt) +
                    (op.attempt == 1 ? " attempt" : " attempts") + span;
  if (!options_.server.empty()) msg += " at " + options_.server;
  // The server gave no request a final answer since this one first failed:
  // not this object, the server (or the way to it) is failing.
  const double last_answer =
      static_cast<double>(last_answer_ns_.load(std::memory_order_relaxed)) * 1e-9;
  if (last_answer < op.first_failure) {
    msg += "; no answer from " + (options_.server.empty() ? std::string("the server") : options_.server) +
           " to any request since: the storage is unreachable or failing";
    return Unavailable(std::move(msg));
  }
  return Status(last.code(), std::move(msg));
}

void Dispatcher::Finish(const std::shared_ptr<Op>& op, Result<Response> result, bool shut_down) {
  std::vector<std::shared_ptr<Op>> start, cancel;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --in_flight_;
    if (shut_down) cancelled_ = true;
    if (cancelled_) {
      cancel.assign(queue_.begin(), queue_.end());
      queue_.clear();
      for (auto& c : cancel) c->queued = false;
    }
    while (!queue_.empty() && in_flight_ < controller_.limit()) {
      queue_.front()->queued = false;
      start.push_back(std::move(queue_.front()));
      queue_.pop_front();
      ++in_flight_;
    }
  }
  // Refill the pipe before handing over the result.
  for (auto& next : start) Attempt(std::move(next), std::chrono::nanoseconds(0));
  auto done = std::move(op->call.done);
  op->call = Call{};  // drop what prepare/classify captured before `done` runs
  done(std::move(result));
  for (auto& c : cancel) c->call.done(Cancelled("storage is shutting down"));
}

void Dispatcher::Shutdown() {
  std::vector<std::shared_ptr<Op>> cancel;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    cancel.assign(queue_.begin(), queue_.end());
    queue_.clear();
    for (auto& c : cancel) c->queued = false;
  }
  for (auto& c : cancel) c->call.done(Cancelled("storage is shutting down"));
  // Those on the wire or waiting out a backoff come back cancelled.
  transport_->Shutdown();
}

DispatcherStats Dispatcher::stats() const {
  DispatcherStats s;
  s.requests = requests_.load(std::memory_order_relaxed);
  s.retries = retries_.load(std::memory_order_relaxed);
  s.timeouts = timeouts_.load(std::memory_order_relaxed);
  s.cancelled = cancelled_calls_.load(std::memory_order_relaxed);
  s.latency_us = latency_us_.Snapshot();
  std::lock_guard<std::mutex> lock(mu_);
  s.in_flight = in_flight_;
  s.queued = static_cast<int>(queue_.size());
  s.limit = controller_.limit();
  s.rate = controller_.rate();
  s.latency_s = controller_.latency();
  return s;
}

}  // namespace stoker::storage::http
