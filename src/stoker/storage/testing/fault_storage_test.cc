#include "stoker/storage/testing/fault_storage.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "stoker/storage/testing/memory_storage.h"

namespace stoker::storage::testing {
namespace {

std::string S(const Bytes& b) { return std::string(b.begin(), b.end()); }

class FaultStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem_->Put("mem://b/a", "abcdef");
    mem_->Put("mem://b/big", std::string(100000, 'x'));
  }
  // Collects callbacks: their results and threads.
  struct Sink {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<Result<Bytes>> results;
    std::vector<std::thread::id> threads;
    Storage::ReadCallback Callback() {
      return [this](Result<Bytes> r) {
        std::lock_guard<std::mutex> lock(mu);
        results.push_back(std::move(r));
        threads.push_back(std::this_thread::get_id());
        cv.notify_all();
      };
    }
    void Wait(size_t n) {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return results.size() >= n; });
    }
  };
  std::shared_ptr<MemoryStorage> mem_ = std::make_shared<MemoryStorage>();
  FaultStorage fault_{mem_};
};

TEST_F(FaultStorageTest, ErrorsForChosenUrisAndAttempts) {
  fault_.AddRule({.uri_contains = "/a", .first_attempt = 2, .attempts = 2,
                  .error = IOError("injected reset")});
  auto r1 = fault_.Read("mem://b/a");  // attempt 1: fine
  ASSERT_TRUE(r1.ok());
  for (int attempt = 2; attempt <= 3; ++attempt) {
    auto r = fault_.Read("mem://b/a");
    ASSERT_FALSE(r.ok()) << attempt;
    EXPECT_EQ(r.status().code(), StatusCode::kIOError);
    EXPECT_EQ(r.status().message(), "mem://b/a: injected reset");
  }
  auto r4 = fault_.Read("mem://b/a");
  ASSERT_TRUE(r4.ok());
  EXPECT_EQ(S(*r4), "abcdef");
  EXPECT_TRUE(fault_.Read("mem://b/big").ok());  // another URI: untouched
  EXPECT_EQ(fault_.counts().errors, 2);
  EXPECT_EQ(fault_.counts().reads, 5);
}

TEST_F(FaultStorageTest, BodiesCutShortArriveAsIfWhole) {
  fault_.AddRule({.uri_contains = "/a", .cut_to = 3});
  auto r = fault_.Read("mem://b/a");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(S(*r), "abc");
  auto range = fault_.ReadRange("mem://b/a", {1, 4});
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(S(*range), "bcd");
  EXPECT_EQ(fault_.counts().cut, 2);
}

TEST_F(FaultStorageTest, StallsLastUntilCancelledOrShutDown) {
  fault_.AddRule({.stall = true});
  Sink sink;
  std::stop_source stop;
  for (int i = 0; i < 5; ++i) fault_.ReadAsync("mem://b/a", sink.Callback(), stop.get_token());
  fault_.ReadAsync("mem://b/big", sink.Callback());  // no stop: only shutdown ends it
  EXPECT_EQ(fault_.stalled_now(), 6);
  {
    // Under the lock the callbacks take: none runs inside request_stop().
    std::lock_guard<std::mutex> lock(sink.mu);
    EXPECT_TRUE(sink.results.empty());
    stop.request_stop();
  }
  sink.Wait(5);
  {
    std::lock_guard<std::mutex> lock(sink.mu);
    ASSERT_EQ(sink.results.size(), 5u);
    for (size_t i = 0; i < 5; ++i) {
      EXPECT_EQ(sink.results[i].status().code(), StatusCode::kCancelled);
      EXPECT_EQ(sink.results[i].status().message(), "mem://b/a: read cancelled");
      EXPECT_NE(sink.threads[i], std::this_thread::get_id());
    }
  }
  EXPECT_EQ(fault_.stalled_now(), 1);
  fault_.Shutdown();
  sink.Wait(6);
  EXPECT_EQ(sink.results[5].status().message(), "mem://b/big: storage is shutting down");
  EXPECT_EQ(fault_.counts().cancelled, 5);
  EXPECT_EQ(fault_.counts().stalled, 6);
  auto later = fault_.Read("mem://b/a");
  EXPECT_EQ(later.status().code(), StatusCode::kCancelled);
}

TEST_F(FaultStorageTest, LatencyDeliversOnItsOwnThread) {
  fault_.AddRule({.uri_contains = "/a", .latency = std::chrono::milliseconds(200)});
  Sink sink;
  fault_.ReadAsync("mem://b/a", sink.Callback());
  sink.Wait(1);
  ASSERT_TRUE(sink.results[0].ok());
  EXPECT_EQ(S(*sink.results[0]), "abcdef");
  EXPECT_NE(sink.threads[0], std::this_thread::get_id());
  EXPECT_EQ(fault_.counts().delayed, 1);
}

TEST_F(FaultStorageTest, DelayedReadsAreCancelledAndTheirBytesRecycled) {
  fault_.AddRule({.latency = std::chrono::hours(1)});
  Sink sink;
  std::stop_source stop;
  fault_.ReadAsync("mem://b/big", sink.Callback(), stop.get_token());
  EXPECT_EQ(mem_->buffers().kept(), 0u);
  stop.request_stop();
  sink.Wait(1);
  EXPECT_EQ(sink.results[0].status().code(), StatusCode::kCancelled);
  EXPECT_EQ(mem_->buffers().kept(), 1u);  // the bytes read went back to the storage
  EXPECT_EQ(fault_.counts().cancelled, 1);
}

TEST_F(FaultStorageTest, BandwidthLimitSendsReadsOverOneLinkInOrder) {
  fault_.SetBandwidth(1 << 20);
  Sink sink;
  for (int i = 0; i < 4; ++i) fault_.ReadRangeAsync("mem://b/big", {i * 1000, 50000}, sink.Callback(), {});
  sink.Wait(4);
  for (size_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(sink.results[i].ok());
    EXPECT_EQ(sink.results[i]->size(), 50000u);
  }
  // The last waited for 200 KB to cross a 1 MB/s link: delivered late.
  EXPECT_GE(fault_.counts().delayed, 1);
}

}  // namespace
}  // namespace stoker::storage::testing
