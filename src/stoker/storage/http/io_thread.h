// What both transports (curl_transport.cc, epoll_transport.cc) share: one
// I/O thread sleeping in epoll_wait, an inbox that Send() fills from any
// thread (each request with the time it may start), an eventfd to wake the
// thread, and a Shutdown that works from any thread, the I/O thread's own
// callbacks included. Internal to the transports.
#pragma once

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <functional>
#include <mutex>
#include <stop_token>
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
  // Wakes the I/O thread when request.stop is requested (a stop_callback);
  // lives as long as the request does. Null when the request cannot stop.
  std::shared_ptr<void> stop_wake;
};

inline void Cancel(Transport::Callback& done, const char* why = "transport shut down") {
  Response r;
  r.error = NetError::kCancelled;
  r.error_message = why;
  done(std::move(r));
}

constexpr const char* kStopped = "request cancelled";

// The inbox, the epoll set and the loop. A transport's state derives from
// it and supplies the hooks, which Run() calls on the I/O thread.
struct IoState {
  // epoll_event.data of the wake-up eventfd (sockets use their fd or an id).
  static constexpr uint64_t kWakeKey = ~uint64_t{0};
  static constexpr double kNever = 1e300;

  // A request whose start time has come.
  virtual void Start(Pending p) = 0;
  // Runs what is due by `now` (timeouts, the library's timers); returns
  // when something next falls due (kNever: nothing).
  virtual double Tick(double now) = 0;
  // A socket the transport registered is ready.
  virtual void OnEvent(const epoll_event& e) = 0;
  // Shutting down: every started request completes as cancelled.
  virtual void CancelStarted() = 0;
  // Some request's stop was requested: every started request whose
  // request.stop is requested is taken off the wire (its connection closed,
  // its body buffer back to request.body_buffers) and completes with
  // NetError::kCancelled.
  virtual void AbortStopped() = 0;

  std::mutex mu;
  std::vector<std::pair<double, Pending>> incoming;  // guarded by mu: (due time, request)
  bool stop = false;                                 // guarded by mu
  bool stop_asked = false;  // guarded by mu: some request's stop was requested
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
  virtual ~IoState() {
    if (wake_fd >= 0) ::close(wake_fd);
    if (epoll_fd >= 0) ::close(epoll_fd);
  }

  void Wake() {
    const uint64_t one = 1;
    // A full counter already means "wake up"; nothing to do on failure.
    [[maybe_unused]] ssize_t n = ::write(wake_fd, &one, sizeof(one));
  }
  // The I/O thread: starts requests as their time comes, runs the
  // transport's timers, sleeps in epoll_wait until a socket is ready, a
  // request arrives, a timer or a delayed request falls due, or a second
  // passes; on shutdown, cancels everything.
  void Run() {
    constexpr int kMaxEvents = 256;
    epoll_event events[kMaxEvents];
    std::vector<std::pair<double, Pending>> batch;
    while (true) {
      bool stopping, stop_seen;
      {
        std::lock_guard<std::mutex> lock(mu);
        batch.swap(incoming);
        stopping = stop;
        stop_seen = stop_asked;
        stop_asked = false;
      }
      for (auto& [when, p] : batch) delayed.emplace(when, std::move(p));
      batch.clear();
      if (stopping) break;
      if (stop_seen) {
        for (auto it = delayed.begin(); it != delayed.end();) {
          if (!it->second.request.stop.stop_requested()) {
            ++it;
            continue;
          }
          Pending p = std::move(it->second);
          it = delayed.erase(it);
          Cancel(p.done, kStopped);
        }
        AbortStopped();
      }
      const double started = WallSeconds();
      while (!delayed.empty() && delayed.begin()->first <= started) {
        Pending p = std::move(delayed.begin()->second);
        delayed.erase(delayed.begin());
        if (p.request.stop.stop_requested()) {
          Cancel(p.done, kStopped);
          continue;
        }
        Start(std::move(p));
      }
      const double now = WallSeconds();
      double wake_at = std::min(now + 1.0, Tick(now));
      if (!delayed.empty()) wake_at = std::min(wake_at, delayed.begin()->first);
      const int timeout_ms =
          std::clamp(static_cast<int>(std::ceil((wake_at - WallSeconds()) * 1000.0)), 0, 1000);
      const int n = epoll_wait(epoll_fd, events, kMaxEvents, timeout_ms);
      for (int i = 0; i < n; ++i) {
        if (events[i].data.u64 == kWakeKey) {
          uint64_t count;
          [[maybe_unused]] ssize_t r = ::read(wake_fd, &count, sizeof(count));
          continue;
        }
        OnEvent(events[i]);
      }
    }
    CancelStarted();
    for (auto& [when, p] : delayed) Cancel(p.done);
    delayed.clear();
  }
};

// A Transport on one I/O thread running `State::Run()`.
template <class State>
class ThreadedTransport final : public Transport {
 public:
  explicit ThreadedTransport(std::shared_ptr<State> state) : state_(std::move(state)) {
    thread_ = std::thread([s = state_] {
      SetThreadName("stoker-io");
      s->Run();
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
    // Made before taking the lock: it runs at once if stop was requested
    // already, and takes the lock itself.
    std::shared_ptr<void> wake;
    if (request.stop.stop_possible()) {
      wake = std::make_shared<std::stop_callback<std::function<void()>>>(
          request.stop, std::function<void()>([s = state_.get()] {
            {
              std::lock_guard<std::mutex> lock(s->mu);
              s->stop_asked = true;
            }
            s->Wake();
          }));
    }
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (!state_->stop) {
        state_->incoming.emplace_back(due,
                                      Pending{std::move(request), std::move(done), std::move(wake)});
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
