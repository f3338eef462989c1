// A Transport for unit tests: canned responses, no network.
//
// Automatic mode (a handler given): each request is answered by the handler
// on the mock's own thread, in order; delays are recorded, not waited for.
// Manual mode (no handler): requests wait until the test calls Reply(), so a
// test can see how many are in flight at once.
// Either way a request whose stop was requested is answered kCancelled
// instead (CancelStopped() does so at once in manual mode).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "stoker/storage/http/http.h"

namespace stoker::storage::http {

class MockTransport final : public Transport {
 public:
  using Handler = std::function<Response(const Request&)>;

  struct Sent {
    Request request;
    std::chrono::nanoseconds delay;
  };

  // What was sent and what waits for an answer. Shared, so a test can read it
  // after the transport is gone (the Dispatcher owns and destroys it) and so
  // the mock's thread can outlive a transport destroyed from a callback.
  class State {
   public:
    std::vector<Sent> sent() {
      std::lock_guard<std::mutex> lock(mu_);
      return sent_;
    }
    size_t pending() {
      std::lock_guard<std::mutex> lock(mu_);
      return pending_.size();
    }
    // Manual mode: answers the oldest waiting request with `make(request)`,
    // on the calling thread. False if none waits.
    bool Reply(const Handler& make) {
      std::pair<Request, Callback> p;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (pending_.empty()) return false;
        p = std::move(pending_.front());
        pending_.pop_front();
      }
      p.second(p.first.stop.stop_requested() ? Cancelled() : make(p.first));
      return true;
    }

    // Manual mode: completes the waiting requests whose stop was requested
    // as cancelled, as a transport does. Returns how many.
    size_t CancelStopped() {
      std::vector<std::pair<Request, Callback>> stopped;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto it = pending_.begin(); it != pending_.end();) {
          if (it->first.stop.stop_requested()) {
            stopped.push_back(std::move(*it));
            it = pending_.erase(it);
          } else {
            ++it;
          }
        }
      }
      for (auto& [r, cb] : stopped) cb(Cancelled());
      return stopped.size();
    }

    // Manual mode: completes every waiting request as cancelled, as a
    // transport that shuts down does. Returns how many.
    size_t CancelAll() {
      std::deque<std::pair<Request, Callback>> left;
      {
        std::lock_guard<std::mutex> lock(mu_);
        left.swap(pending_);
      }
      for (auto& [r, cb] : left) cb(Cancelled());
      return left.size();
    }

   private:
    friend class MockTransport;
    std::mutex mu_;
    std::condition_variable cv_;
    Handler handler_;
    std::vector<Sent> sent_;
    std::deque<std::pair<Request, Callback>> pending_;
    bool stop_ = false;
    bool shut_down_ = false;
  };

  explicit MockTransport(Handler handler = nullptr,
                         std::shared_ptr<State> state = std::make_shared<State>())
      : state_(std::move(state)) {
    state_->handler_ = std::move(handler);
    if (state_->handler_) thread_ = std::thread([s = state_] { Run(*s); });
  }

  ~MockTransport() override {
    std::deque<std::pair<Request, Callback>> left;
    {
      std::lock_guard<std::mutex> lock(state_->mu_);
      state_->stop_ = true;
      if (!state_->handler_) left.swap(state_->pending_);
    }
    state_->cv_.notify_all();
    if (thread_.joinable()) {
      // Destroyed from a callback on the mock's thread: it cannot join
      // itself; it drains and exits on its own, holding the state.
      if (thread_.get_id() == std::this_thread::get_id()) {
        thread_.detach();
      } else {
        thread_.join();
      }
    }
    for (auto& [r, cb] : left) cb(Cancelled());
  }

  static Response Cancelled() {
    Response r;
    r.error = NetError::kCancelled;
    r.error_message = "transport shut down";
    return r;
  }

  // Manual mode: what waits is cancelled, and later Sends are cancelled at
  // once, as with the real transport. (With a handler, its thread answers
  // everything already sent.)
  void Shutdown() override {
    {
      std::lock_guard<std::mutex> lock(state_->mu_);
      state_->shut_down_ = true;
    }
    if (!state_->handler_) state_->CancelAll();
  }

  void Send(Request request, std::chrono::nanoseconds delay, Callback done) override {
    {
      std::unique_lock<std::mutex> lock(state_->mu_);
      if (state_->shut_down_) {
        lock.unlock();
        done(Cancelled());
        return;
      }
      state_->sent_.push_back({request, delay});
      state_->pending_.emplace_back(std::move(request), std::move(done));
    }
    state_->cv_.notify_all();
  }

  const std::shared_ptr<State>& state() const { return state_; }

 private:
  static void Run(State& s) {
    while (true) {
      std::pair<Request, Callback> item;
      {
        std::unique_lock<std::mutex> lock(s.mu_);
        s.cv_.wait(lock, [&] { return s.stop_ || !s.pending_.empty(); });
        if (s.pending_.empty()) return;
        item = std::move(s.pending_.front());
        s.pending_.pop_front();
      }
      item.second(item.first.stop.stop_requested() ? Cancelled() : s.handler_(item.first));
    }
  }

  std::shared_ptr<State> state_;
  std::thread thread_;
};

}  // namespace stoker::storage::http
