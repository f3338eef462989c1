// A call's stop token (Dispatcher::Call::stop): queued calls leave the
// queue, calls on the wire are cancelled by the transport, callbacks never
// run inside request_stop(), and one cancelled call does not shut the
// dispatcher (only Shutdown does).
#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "stoker/storage/http/dispatcher.h"
#include "stoker/storage/http/mock_transport.h"

namespace stoker::storage::http {
namespace {

struct Outcomes {
  std::mutex mu;
  std::vector<Result<Response>> results;
  std::vector<std::thread::id> threads;
};

Dispatcher::Call Call(Outcomes& out, std::stop_token stop) {
  Dispatcher::Call call;
  call.prepare = []() -> Result<Request> {
    Request r;
    r.url = "http://127.0.0.1:1/x";
    return r;
  };
  call.classify = [](const Response& r) {
    return r.status == 200 ? Verdict::Done() : Verdict::Fail(IOError("HTTP error"));
  };
  call.done = [&out](Result<Response> r) {
    std::lock_guard<std::mutex> lock(out.mu);
    out.results.push_back(std::move(r));
    out.threads.push_back(std::this_thread::get_id());
  };
  call.stop = std::move(stop);
  return call;
}

Response Ok() {
  Response r;
  r.status = 200;
  return r;
}

TEST(DispatcherCancel, QueuedAndSentCallsEndCancelledAndTheDispatcherGoesOn) {
  auto mock = std::make_unique<MockTransport>();  // manual: nothing answers by itself
  auto state = mock->state();
  DispatcherOptions o;
  o.concurrency.min_in_flight = o.concurrency.initial_in_flight = o.concurrency.max_in_flight = 1;
  auto d = Dispatcher::Create(std::move(mock), o);
  Outcomes out;
  std::stop_source stop;
  for (int i = 0; i < 3; ++i) d->Submit(Call(out, stop.get_token()));
  EXPECT_EQ(state->pending(), 1u);  // one on the wire, two queued
  EXPECT_EQ(d->stats().queued, 2);
  {
    std::lock_guard<std::mutex> lock(out.mu);  // a callback run in here would deadlock
    stop.request_stop();
    EXPECT_TRUE(out.results.empty());
  }
  // The queued two left the queue through the transport, to be completed on
  // its thread (this mock's: whoever calls CancelStopped) with the one sent.
  EXPECT_EQ(d->stats().queued, 0);
  EXPECT_EQ(state->pending(), 3u);
  EXPECT_EQ(state->CancelStopped(), 3u);
  {
    std::lock_guard<std::mutex> lock(out.mu);
    ASSERT_EQ(out.results.size(), 3u);
    for (const auto& r : out.results) {
      EXPECT_EQ(r.status().code(), StatusCode::kCancelled);
      EXPECT_EQ(r.status().message(), "request cancelled");
    }
  }
  const auto s = d->stats();
  EXPECT_EQ(s.cancelled, 3);
  EXPECT_EQ(s.in_flight, 0);
  EXPECT_EQ(s.requests, 1);  // the queued ones were never sent
  // Not shut down: the next call is sent and answered.
  d->Submit(Call(out, std::stop_token()));
  ASSERT_TRUE(state->Reply([](const Request&) { return Ok(); }));
  std::lock_guard<std::mutex> lock(out.mu);
  ASSERT_EQ(out.results.size(), 4u);
  EXPECT_TRUE(out.results[3].ok()) << out.results[3].status().ToString();
}

TEST(DispatcherCancel, AlreadyStoppedIsCancelledWithoutASend) {
  auto mock = std::make_unique<MockTransport>();
  auto state = mock->state();
  auto d = Dispatcher::Create(std::move(mock), {});
  Outcomes out;
  std::stop_source stop;
  stop.request_stop();
  d->Submit(Call(out, stop.get_token()));
  ASSERT_EQ(out.results.size(), 1u);
  EXPECT_EQ(out.results[0].status().code(), StatusCode::kCancelled);
  EXPECT_EQ(state->sent().size(), 0u);
}

}  // namespace
}  // namespace stoker::storage::http
