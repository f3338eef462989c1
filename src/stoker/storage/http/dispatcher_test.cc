#include "stoker/storage/http/dispatcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "stoker/storage/http/mock_transport.h"

namespace stoker::storage::http {
namespace {

using std::chrono::milliseconds;

Response Reply(int status, std::string body = "") {
  Response r;
  r.status = status;
  r.body.assign(body.begin(), body.end());
  return r;
}

Verdict Classify(const Response& r) {
  if (r.error == NetError::kNone && r.status / 100 == 2) return Verdict::Done();
  Status st = IOError("HTTP " + std::to_string(r.status));
  return IsTransient(r) ? Verdict::Retry(st) : Verdict::Fail(st);
}

// Submits a GET of `url` and returns a future of its outcome.
std::future<Result<Response>> Get(Dispatcher& d, const std::string& url,
                                  std::atomic<int>* prepares = nullptr) {
  auto p = std::make_shared<std::promise<Result<Response>>>();
  auto f = p->get_future();
  Dispatcher::Call call;
  call.prepare = [url, prepares]() -> Result<Request> {
    if (prepares) ++*prepares;
    Request r;
    r.url = url;
    return r;
  };
  call.classify = Classify;
  call.done = [p](Result<Response> r) { p->set_value(std::move(r)); };
  d.Submit(std::move(call));
  return f;
}

DispatcherOptions Options() {
  DispatcherOptions o;
  o.seed = 42;
  o.retry.max_attempts = 5;
  o.retry.base_backoff = milliseconds(10);
  o.retry.max_backoff = milliseconds(40);
  return o;
}

// A limit that does not adapt: exactly n requests in flight.
DispatcherOptions FixedInFlight(int n) {
  DispatcherOptions o = Options();
  o.concurrency.min_in_flight = n;
  o.concurrency.initial_in_flight = n;
  o.concurrency.max_in_flight = n;
  return o;
}

TEST(Dispatcher, RetriesTransientFailuresWithBackoffAndResigns) {
  std::atomic<int> calls{0};
  auto state = std::make_shared<MockTransport::State>();
  auto mock = std::make_unique<MockTransport>(
      [&](const Request&) {
        const int n = calls++;
        if (n == 0) return Reply(503);
        if (n == 1) {
          Response r;
          r.error = NetError::kReset;
          return r;
        }
        if (n == 2) return Reply(500);
        return Reply(200, "ok");
      },
      state);
  auto d = Dispatcher::Create(std::move(mock), Options());
  std::atomic<int> prepares{0};
  auto r = Get(*d, "http://h/a", &prepares).get();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->BodyText(), "ok");
  EXPECT_EQ(prepares.load(), 4);  // each attempt signed anew
  const auto s = d->stats();
  EXPECT_EQ(s.requests, 4);
  EXPECT_EQ(s.retries, 3);
  EXPECT_EQ(s.in_flight, 0);
  const auto sent = state->sent();
  ASSERT_EQ(sent.size(), 4u);
  EXPECT_EQ(sent[0].delay.count(), 0);
  // Retry n waits at most min(40 ms, 10 ms * 2^(n-1)).
  EXPECT_LE(sent[1].delay, milliseconds(10));
  EXPECT_LE(sent[2].delay, milliseconds(20));
  EXPECT_LE(sent[3].delay, milliseconds(40));
}

TEST(Dispatcher, GivesUpAfterMaxAttempts) {
  auto state = std::make_shared<MockTransport::State>();
  auto d = Dispatcher::Create(
      std::make_unique<MockTransport>([](const Request&) { return Reply(503); }, state), Options());
  auto r = Get(*d, "http://h/a").get();
  ASSERT_FALSE(r.ok());
  // Nothing but 503s from the server: it is failing, not this object.
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("HTTP 503"), std::string::npos);
  EXPECT_NE(r.status().message().find("gave up after 5 attempts"), std::string::npos);
  EXPECT_NE(r.status().message().find("(max_attempts 5)"), std::string::npos);
  EXPECT_NE(r.status().message().find("no answer from the server to any request since"),
            std::string::npos)
      << r.status().message();
  EXPECT_EQ(state->sent().size(), 5u);
  EXPECT_EQ(d->stats().retries, 4);
}

TEST(Dispatcher, OneFailingRequestWhileOthersSucceedIsAnIOError) {
  DispatcherOptions o = Options();
  o.server = "http://h";
  auto state = std::make_shared<MockTransport::State>();
  auto d = Dispatcher::Create(std::make_unique<MockTransport>(nullptr, state), o);  // manual
  auto bad = Get(*d, "http://h/bad");
  auto good = Get(*d, "http://h/good");
  ASSERT_TRUE(state->Reply([](const Request&) { return Reply(503); }));  // bad, attempt 1
  ASSERT_TRUE(state->Reply([](const Request& r) { return Reply(200, r.url); }));  // good
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(state->Reply([](const Request& r) {
      EXPECT_EQ(r.url, "http://h/bad");
      return Reply(503);
    }));
  }
  ASSERT_TRUE(good.get().ok());
  auto r = bad.get();
  ASSERT_FALSE(r.ok());
  // The server answered meanwhile: a problem of this object, which a loader
  // may skip.
  EXPECT_EQ(r.status().code(), StatusCode::kIOError) << r.status().ToString();
  EXPECT_NE(r.status().message().find("gave up after 5 attempts"), std::string::npos);
  EXPECT_NE(r.status().message().find("(max_attempts 5) at http://h"), std::string::npos)
      << r.status().message();
  EXPECT_EQ(r.status().message().find("no answer"), std::string::npos);
}

TEST(Dispatcher, DeadlineEndsRetriesAndBoundsEachAttempt) {
  DispatcherOptions o = Options();
  o.retry.max_attempts = 0;  // no cap: only the deadline
  o.retry.deadline = milliseconds(300);
  o.server = "http://gone.test:9";
  auto state = std::make_shared<MockTransport::State>();
  auto d = Dispatcher::Create(std::make_unique<MockTransport>(
                                  [](const Request&) {
                                    // Each attempt takes 20 ms to time out.
                                    std::this_thread::sleep_for(milliseconds(20));
                                    Response r;
                                    r.error = NetError::kTimeout;
                                    r.error_message = "no data from the server for 0.0 s";
                                    return r;
                                  },
                                  state),
                              o);
  auto r = Get(*d, "http://gone.test:9/a").get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  const std::string& msg = r.status().message();
  EXPECT_NE(msg.find("(io_timeout 0.3 s) at http://gone.test:9"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no answer from http://gone.test:9"), std::string::npos) << msg;
  // It retried until the deadline, not after it: the reason given is the
  // io_timeout, which the dispatcher gives only once no time is left (a cap
  // on attempts would say max_attempts), after several attempts, each
  // allowed no more than what was left of the deadline (below).
  const auto sent = state->sent();
  ASSERT_GE(sent.size(), 3u);
  EXPECT_EQ(msg.find("max_attempts"), std::string::npos) << msg;
  // Each attempt may only use what is left of the deadline after its
  // backoff: attempt i starts at least 20 ms x i after the first.
  for (size_t i = 0; i < sent.size(); ++i) {
    const auto delay = std::chrono::duration_cast<milliseconds>(sent[i].delay);
    EXPECT_GT(sent[i].request.timeout, milliseconds(0)) << i;
    EXPECT_LE(sent[i].request.timeout + delay, milliseconds(300 + 1 - 20 * static_cast<int>(i))) << i;
  }
  const auto s = d->stats();
  EXPECT_EQ(s.timeouts, static_cast<int64_t>(sent.size()));
  EXPECT_EQ(s.retries, static_cast<int64_t>(sent.size()) - 1);
}

TEST(Dispatcher, ClientErrorsAreNotRetried) {
  auto state = std::make_shared<MockTransport::State>();
  auto d = Dispatcher::Create(
      std::make_unique<MockTransport>([](const Request&) { return Reply(404); }, state), Options());
  auto r = Get(*d, "http://h/a").get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(state->sent().size(), 1u);
  EXPECT_EQ(d->stats().retries, 0);
}

TEST(Dispatcher, CapsInFlightAndStartsWaitingRequestsInOrder) {
  const DispatcherOptions o = FixedInFlight(3);
  auto state = std::make_shared<MockTransport::State>();
  auto d = Dispatcher::Create(std::make_unique<MockTransport>(nullptr, state), o);  // manual
  std::vector<std::future<Result<Response>>> results;
  for (int i = 0; i < 10; ++i) results.push_back(Get(*d, "http://h/" + std::to_string(i)));
  EXPECT_EQ(state->pending(), 3u);
  EXPECT_EQ(d->stats().queued, 7);
  int replies = 0;
  while (replies < 100 && state->Reply([](const Request& r) { return Reply(200, r.url); })) {
    ++replies;
    EXPECT_LE(state->pending(), 3u);
  }
  EXPECT_EQ(replies, 10);
  const auto sent = state->sent();
  ASSERT_EQ(sent.size(), 10u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(sent[i].request.url, "http://h/" + std::to_string(i));  // FIFO
    auto r = results[i].get();
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->BodyText(), "http://h/" + std::to_string(i));
  }
}

TEST(Dispatcher, RetriesKeepTheirSlot) {
  const DispatcherOptions o = FixedInFlight(2);
  auto state = std::make_shared<MockTransport::State>();
  auto d = Dispatcher::Create(std::make_unique<MockTransport>(nullptr, state), o);
  auto a = Get(*d, "http://h/a");
  auto b = Get(*d, "http://h/b");
  auto c = Get(*d, "http://h/c");
  EXPECT_EQ(state->pending(), 2u);
  // a fails transiently: its retry goes out, c still waits.
  ASSERT_TRUE(state->Reply([](const Request&) { return Reply(503); }));
  EXPECT_EQ(state->pending(), 2u);
  EXPECT_EQ(d->stats().queued, 1);
  int n = 0;
  while (n < 10 && state->Reply([](const Request& r) { return Reply(200, r.url); })) ++n;
  EXPECT_EQ(n, 3);
  EXPECT_EQ(a.get()->BodyText(), "http://h/a");
  EXPECT_EQ(b.get()->BodyText(), "http://h/b");
  EXPECT_EQ(c.get()->BodyText(), "http://h/c");
}

TEST(Dispatcher, PrepareFailureIsDelivered) {
  auto d = Dispatcher::Create(
      std::make_unique<MockTransport>([](const Request&) { return Reply(200); }), Options());
  auto p = std::make_shared<std::promise<Result<Response>>>();
  auto f = p->get_future();
  Dispatcher::Call call;
  call.prepare = []() -> Result<Request> { return InvalidArgument("bad key"); };
  call.classify = Classify;
  call.done = [p](Result<Response> r) { p->set_value(std::move(r)); };
  d->Submit(std::move(call));
  auto r = f.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "bad key");
  EXPECT_EQ(d->stats().in_flight, 0);
}

TEST(Dispatcher, ShutdownCancelsWhatIsLeft) {
  const DispatcherOptions o = FixedInFlight(1);
  auto state = std::make_shared<MockTransport::State>();
  auto d = Dispatcher::Create(std::make_unique<MockTransport>(nullptr, state), o);
  auto a = Get(*d, "http://h/a");
  auto b = Get(*d, "http://h/b");  // queued behind a
  // The transport shuts down with `a` on the wire.
  EXPECT_EQ(state->CancelAll(), 1u);
  auto ra = a.get();
  auto rb = b.get();
  ASSERT_FALSE(ra.ok());
  EXPECT_EQ(ra.status().code(), StatusCode::kCancelled);
  ASSERT_FALSE(rb.ok());
  EXPECT_EQ(rb.status().code(), StatusCode::kCancelled);
  // Later submissions fail at once.
  auto rc = Get(*d, "http://h/c").get();
  ASSERT_FALSE(rc.ok());
  EXPECT_EQ(rc.status().code(), StatusCode::kCancelled);
}

// What a storage does when it is dropped: everything pending ends now,
// cancelled, so nothing keeps the transport's thread alive.
TEST(Dispatcher, ShutdownEndsInFlightAndQueuedCalls) {
  const DispatcherOptions o = FixedInFlight(1);
  auto state = std::make_shared<MockTransport::State>();
  auto d = Dispatcher::Create(std::make_unique<MockTransport>(nullptr, state), o);
  auto a = Get(*d, "http://h/a");  // on the wire
  auto b = Get(*d, "http://h/b");  // queued behind it
  d->Shutdown();
  EXPECT_EQ(state->pending(), 0u);
  for (auto* f : {&a, &b}) {
    auto r = f->get();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kCancelled);
  }
  auto c = Get(*d, "http://h/c").get();
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kCancelled);
  EXPECT_EQ(d->stats().in_flight, 0);
  d->Shutdown();  // idempotent
}

}  // namespace
}  // namespace stoker::storage::http
