#include "stoker/storage/http/dispatcher.h"

#include <algorithm>
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
  bool cancelled = false;
  std::vector<std::shared_ptr<Op>> start;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled = cancelled_;
    if (!cancelled) {
      // Through the queue even when there is room: a raised limit must
      // start the oldest waiting request first (FIFO).
      queue_.push_back(op);
      const int64_t room = std::max(0, controller_.limit() - in_flight_);
      controller_.OnArrival(WallSeconds(),
                            std::max<int64_t>(0, static_cast<int64_t>(queue_.size()) - room));
      while (!queue_.empty() && in_flight_ < controller_.limit()) {
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
  for (auto& next : start) Attempt(std::move(next), std::chrono::nanoseconds(0));
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
  auto self = shared_from_this();
  transport_->Send(std::move(*request), delay, [self, op](Response r) {
    self->OnResponse(op, std::move(r));
  });
}

void Dispatcher::OnResponse(const std::shared_ptr<Op>& op, Response response) {
  if (response.error == NetError::kCancelled) {
    Finish(op, Cancelled("storage is shutting down"));
    return;
  }
  const double now = WallSeconds();
  Verdict verdict = op->call.classify(response);
  std::chrono::nanoseconds backoff(0);
  {
    std::lock_guard<std::mutex> lock(mu_);
    controller_.OnCompletion(now, now - op->attempt_start, static_cast<int64_t>(queue_.size()));
    if (verdict.kind == Verdict::kRetry && op->attempt < options_.retry.max_attempts) {
      backoff = Backoff(options_.retry, op->attempt, rng_());
    }
  }
  switch (verdict.kind) {
    case Verdict::kDone: Finish(op, std::move(response)); return;
    case Verdict::kFail: Finish(op, std::move(verdict.status)); return;
    case Verdict::kRetry:
      if (op->attempt < options_.retry.max_attempts) {
        Attempt(op, backoff);
      } else {
        const Status& s = verdict.status;
        Finish(op, Status(s.code(), s.message() + " (gave up after " +
                                        std::to_string(op->attempt) + " attempts)"));
      }
      return;
  }
}

void Dispatcher::Finish(const std::shared_ptr<Op>& op, Result<Response> result) {
  const bool cancelled_now = !result.ok() && result.status().code() == StatusCode::kCancelled;
  std::vector<std::shared_ptr<Op>> start, cancel;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --in_flight_;
    if (cancelled_now) cancelled_ = true;
    if (cancelled_) {
      cancel.assign(queue_.begin(), queue_.end());
      queue_.clear();
    }
    while (!queue_.empty() && in_flight_ < controller_.limit()) {
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

DispatcherStats Dispatcher::stats() const {
  DispatcherStats s;
  s.requests = requests_.load(std::memory_order_relaxed);
  s.retries = retries_.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(mu_);
  s.in_flight = in_flight_;
  s.queued = static_cast<int>(queue_.size());
  s.limit = controller_.limit();
  s.rate = controller_.rate();
  s.latency_s = controller_.latency();
  return s;
}

}  // namespace stoker::storage::http
