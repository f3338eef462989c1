// What both transports (curl_transport.cc, epoll_transport.cc) share: one
// I/O thread sleeping in epoll_wait, an inbox that Send() fills from any
// thread (each request with the time it may start), an eventfd to wake the
// thread, and a Shutdown that works from any thread, the I/O thread's own
// callbacks included. Internal to the transports.
#pragma once

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "stoker/base/cpu_time.h"
#include "stoker/base/thread_name.h"
#include "stoker/storage/http/http.h"

namespace stoker::storage::http::internal {

struct Pending {
  Request request;
  Transport::Callback done;
};

inline void Cancel(Transport::Callback& done) {
  Response r;
  r.error = NetError::kCancelled;
  r.error_message = "transport shut down";
  done(std::move(r));
}

// The inbox and the epoll set. A transport's state derives from it and adds
// Loop(), which runs on the I/O thread until TakeIncoming says stop.
struct IoState {
  // epoll_event.data of the wake-up eventfd (sockets use their fd or an id).
  static constexpr uint64_t kWakeKey = ~uint64_t{0};

  std::mutex mu;
  std::vector<std::pair<double, Pending>> incoming;  // guarded by mu: (due time, request)
  bool stop = false;                                 // guarded by mu
  int epoll_fd = -1;
  int wake_fd = -1;
  // I/O thread only: requests whose start time has not come (retry backoff).
  std::multimap<double, Pending> delayed;

  IoState() {
    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kWakeKey;
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &ev);
  }
  IoState(const IoState&) = delete;
  IoState& operator=(const IoState&) = delete;
  ~IoState() {
    if (wake_fd >= 0) ::close(wake_fd);
    if (epoll_fd >= 0) ::close(epoll_fd);
  }

  void Wake() {
    const uint64_t one = 1;
    // A full counter already means "wake up"; nothing to do on failure.
    [[maybe_unused]] ssize_t n = ::write(wake_fd, &one, sizeof(one));
  }
  // After epoll_wait reported kWakeKey.
  void Drain() {
    uint64_t count;
    [[maybe_unused]] ssize_t r = ::read(wake_fd, &count, sizeof(count));
  }

  // Moves what Send() queued into `delayed` and returns the requests due by
  // `now`, earliest first; false once the transport is stopping.
  bool TakeDue(double now, std::vector<Pending>* due) {
    std::vector<std::pair<double, Pending>> batch;
    bool stopping;
    {
      std::lock_guard<std::mutex> lock(mu);
      batch.swap(incoming);
      stopping = stop;
    }
    for (auto& [when, p] : batch) delayed.emplace(when, std::move(p));
    if (stopping) return false;
    while (!delayed.empty() && delayed.begin()->first <= now) {
      due->push_back(std::move(delayed.begin()->second));
      delayed.erase(delayed.begin());
    }
    return true;
  }

  // Shutting down: every request not started completes as cancelled.
  void CancelDelayed() {
    for (auto& [when, p] : delayed) Cancel(p.done);
    delayed.clear();
  }
};

// A Transport on one I/O thread running `State::Loop()`.
template <class State>
class ThreadedTransport final : public Transport {
 public:
  explicit ThreadedTransport(std::shared_ptr<State> state) : state_(std::move(state)) {
    thread_ = std::thread([s = state_] {
      SetThreadName("stoker-io");
      s->Loop();
    });
  }

  ~ThreadedTransport() override { Shutdown(); }

  void Shutdown() override {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->stop = true;
    }
    state_->Wake();
    std::lock_guard<std::mutex> lock(join_mu_);
    if (!thread_.joinable()) return;
    if (thread_.get_id() == std::this_thread::get_id()) {
      // From a callback on the I/O thread: it cannot join itself; it
      // finishes on its own (cancelling what is left), owning the state.
      thread_.detach();
    } else {
      thread_.join();
    }
  }

  void Send(Request request, std::chrono::nanoseconds delay, Callback done) override {
    const double due = WallSeconds() + std::chrono::duration<double>(delay).count();
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (!state_->stop) {
        state_->incoming.emplace_back(due, Pending{std::move(request), std::move(done)});
        done = nullptr;
      }
    }
    if (done) {
      Cancel(done);
      return;
    }
    state_->Wake();
  }

 private:
  std::shared_ptr<State> state_;
  std::mutex join_mu_;
  std::thread thread_;
};

}  // namespace stoker::storage::http::internal
