#include "stoker/pipeline/lookahead.h"

#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace stoker::pipeline {
namespace {

// Storage whose reads complete only when the test says so.
class ManualStorage final : public storage::Storage {
 public:
  struct Pending {
    ReadCallback done;
    std::stop_token stop;
  };

  Result<std::vector<storage::ObjectInfo>> List(const std::string&) override {
    return std::vector<storage::ObjectInfo>{};
  }
  Result<storage::Bytes> Read(const std::string& uri) override { return NotFound(uri); }
  void ReadAsync(const std::string& uri, ReadCallback done) override {
    ReadAsync(uri, std::move(done), std::stop_token());
  }
  void ReadAsync(const std::string& uri, ReadCallback done, std::stop_token stop) override {
    std::lock_guard<std::mutex> lock(mu);
    pending.emplace(uri, Pending{std::move(done), stop});
  }
  void Recycle(storage::Bytes bytes) override {
    std::lock_guard<std::mutex> lock(mu);
    recycled.push_back(std::move(bytes));
  }
  std::string Join(const std::string& base, const std::string& key) const override {
    return base + key;
  }
  storage::StorageCounters counters() const override { return {}; }

  // Completes the read of `uri` with bytes {tag}.
  void Complete(const std::string& uri, uint8_t tag) {
    Pending p;
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = pending.find(uri);
      ASSERT_NE(it, pending.end()) << uri;
      p = std::move(it->second);
      pending.erase(it);
    }
    storage::Bytes b;
    b.push_back(tag);
    p.done(std::move(b));
  }
  // As a real backend's: reads still pending end now, with Cancelled. Their
  // callbacks hold the Lookahead, which holds this storage.
  void Shutdown() override {
    std::map<std::string, Pending> left;
    {
      std::lock_guard<std::mutex> lock(mu);
      left.swap(pending);
    }
    for (auto& [uri, p] : left) p.done(Cancelled(uri + ": storage is shutting down"));
  }
  bool StopRequested(const std::string& uri) {
    std::lock_guard<std::mutex> lock(mu);
    return pending.at(uri).stop.stop_requested();
  }

  std::mutex mu;
  std::map<std::string, Pending> pending;
  std::vector<storage::Bytes> recycled;
};

struct Got {
  int calls = 0;
  std::optional<Result<storage::Bytes>> r;
  Lookahead::Callback Callback() {
    return [this](Result<storage::Bytes> x) {
      ++calls;
      r.emplace(std::move(x));
    };
  }
};

TEST(Lookahead, ReadsRemotePositionsAndHandsEachOutOnce) {
  auto storage = std::make_shared<ManualStorage>();
  auto la = std::make_shared<Lookahead>(storage);
  // Position 1 is a local sample: not read ahead.
  la->Begin(3, {7, 4, 9}, {"s3://b/7", "", "s3://b/9"});
  EXPECT_EQ(la->epoch(), 3);
  EXPECT_EQ(la->issued(), 2);
  EXPECT_EQ(storage->pending.size(), 2u);

  // Arrived before it is claimed: handed over at once.
  storage->Complete("s3://b/7", 70);
  Got a;
  auto cb = a.Callback();
  ASSERT_TRUE(la->Claim(3, 0, 7, cb));
  ASSERT_EQ(a.calls, 1);
  ASSERT_TRUE(a.r->ok());
  EXPECT_EQ(a.r->value(), storage::Bytes{70});

  // Claimed before it arrives: handed over when it does, exactly once.
  Got c;
  cb = c.Callback();
  ASSERT_TRUE(la->Claim(3, 2, 9, cb));
  EXPECT_EQ(c.calls, 0);
  storage->Complete("s3://b/9", 90);
  ASSERT_EQ(c.calls, 1);
  EXPECT_EQ(c.r->value(), storage::Bytes{90});

  // Not read ahead, already claimed, another epoch, another sample, out of
  // range: the caller reads it itself, and its callback is left untouched.
  Got none;
  cb = none.Callback();
  EXPECT_FALSE(la->Claim(3, 1, 4, cb));
  EXPECT_FALSE(la->Claim(3, 0, 7, cb));
  EXPECT_FALSE(la->Claim(4, 2, 9, cb));
  EXPECT_FALSE(la->Claim(3, 2, 8, cb));
  EXPECT_FALSE(la->Claim(3, 3, 1, cb));
  EXPECT_TRUE(static_cast<bool>(cb));
  EXPECT_EQ(none.calls, 0);
  EXPECT_EQ(la->used(), 2);
  EXPECT_TRUE(storage->recycled.empty());
}

TEST(Lookahead, AFailedReadIsHandedOverAsItsError) {
  auto storage = std::make_shared<ManualStorage>();
  auto la = std::make_shared<Lookahead>(storage);
  la->Begin(0, {5}, {"s3://b/5"});
  Got g;
  auto cb = g.Callback();
  ASSERT_TRUE(la->Claim(0, 0, 5, cb));
  ManualStorage::Pending p = std::move(storage->pending.begin()->second);
  p.done(NotFound("s3://b/5: NoSuchKey"));
  ASSERT_EQ(g.calls, 1);
  ASSERT_FALSE(g.r->ok());
  EXPECT_EQ(g.r->status().code(), StatusCode::kNotFound);
}

TEST(Lookahead, BeginForTheSameEpochTwiceReadsOnce) {
  auto storage = std::make_shared<ManualStorage>();
  auto la = std::make_shared<Lookahead>(storage);
  la->Begin(1, {0, 1}, {"s3://b/0", "s3://b/1"});
  la->Begin(1, {0, 1}, {"s3://b/0", "s3://b/1"});
  EXPECT_EQ(la->issued(), 2);
  EXPECT_EQ(storage->pending.size(), 2u);
  storage->Shutdown();
}

TEST(Lookahead, DropCancelsReadsInFlightAndRecyclesEveryBuffer) {
  auto storage = std::make_shared<ManualStorage>();
  auto la = std::make_shared<Lookahead>(storage);
  la->Begin(2, {0, 1, 2}, {"s3://b/0", "s3://b/1", "s3://b/2"});
  storage->Complete("s3://b/0", 1);  // arrived, never claimed
  Got waiting;
  auto cb = waiting.Callback();
  ASSERT_TRUE(la->Claim(2, 1, 1, cb));  // its pass then stopped
  EXPECT_FALSE(storage->StopRequested("s3://b/1"));

  la->Drop();
  EXPECT_EQ(la->epoch(), -1);
  EXPECT_TRUE(storage->StopRequested("s3://b/1"));
  EXPECT_TRUE(storage->StopRequested("s3://b/2"));
  ASSERT_EQ(storage->recycled.size(), 1u);  // the one that had arrived
  Got late;
  cb = late.Callback();
  EXPECT_FALSE(la->Claim(2, 2, 2, cb));

  // Late arrivals go back to the storage; the dropped waiter is not called.
  storage->Complete("s3://b/1", 11);
  storage->Complete("s3://b/2", 12);
  EXPECT_EQ(waiting.calls, 0);
  EXPECT_EQ(storage->recycled.size(), 3u);

  // A new epoch starts afresh.
  la->Begin(3, {4}, {"s3://b/4"});
  EXPECT_EQ(la->epoch(), 3);
  EXPECT_FALSE(storage->StopRequested("s3://b/4"));
  storage->Shutdown();
  EXPECT_EQ(storage->recycled.size(), 3u);  // a cancelled read has no buffer
}

TEST(Lookahead, BeginForAnotherEpochDropsTheEarlierOne) {
  auto storage = std::make_shared<ManualStorage>();
  auto la = std::make_shared<Lookahead>(storage);
  la->Begin(1, {0}, {"s3://b/x"});
  storage->Complete("s3://b/x", 1);
  la->Begin(2, {0}, {"s3://b/y"});
  EXPECT_EQ(storage->recycled.size(), 1u);
  Got g;
  auto cb = g.Callback();
  EXPECT_FALSE(la->Claim(1, 0, 0, cb));
  EXPECT_TRUE(la->Claim(2, 0, 0, cb));
  storage->Complete("s3://b/y", 2);
  EXPECT_EQ(g.r->value(), storage::Bytes{2});
}

// A pass that asks for all of its reads at once (batches ahead >= the
// epoch) begins the next epoch's lookahead while reads it claimed from this
// one are still in flight: those must still reach it (a dropped waiter is a
// sample that never arrives, and an epoch that never ends).
TEST(Lookahead, ClaimedReadsInFlightOutliveTheNextBegin) {
  auto storage = std::make_shared<ManualStorage>();
  auto la = std::make_shared<Lookahead>(storage);
  la->Begin(1, {5, 6}, {"s3://b/5", "s3://b/6"});
  Got claimed;
  auto cb = claimed.Callback();
  ASSERT_TRUE(la->Claim(1, 0, 5, cb));  // claimed, still in flight
  la->Begin(2, {8}, {"s3://b/8"});      // the running pass's own lookahead
  EXPECT_FALSE(storage->StopRequested("s3://b/5"));
  storage->Complete("s3://b/5", 50);
  ASSERT_EQ(claimed.calls, 1);
  ASSERT_TRUE(claimed.r->ok());
  EXPECT_EQ(claimed.r->value(), storage::Bytes{50});
  // The unclaimed read of epoch 1 goes on too (its stop is the claimed
  // one's), and nobody takes it: its buffer goes back.
  storage->Complete("s3://b/6", 60);
  EXPECT_EQ(storage->recycled.size(), 1u);
  // Epoch 2's lookahead is unaffected.
  Got next;
  cb = next.Callback();
  ASSERT_TRUE(la->Claim(2, 0, 8, cb));
  storage->Complete("s3://b/8", 80);
  EXPECT_EQ(next.r->value(), storage::Bytes{80});
}

TEST(Lookahead, DropCancelsClaimedReadsKeptFromAnEarlierBegin) {
  auto storage = std::make_shared<ManualStorage>();
  auto la = std::make_shared<Lookahead>(storage);
  la->Begin(1, {5}, {"s3://b/5"});
  Got claimed;
  auto cb = claimed.Callback();
  ASSERT_TRUE(la->Claim(1, 0, 5, cb));
  la->Begin(2, {8}, {"s3://b/8"});
  la->Drop();  // the pass stopped: nobody waits any more
  EXPECT_TRUE(storage->StopRequested("s3://b/5"));
  EXPECT_TRUE(storage->StopRequested("s3://b/8"));
  storage->Complete("s3://b/5", 50);
  EXPECT_EQ(claimed.calls, 0);
  EXPECT_EQ(storage->recycled.size(), 1u);
  storage->Shutdown();  // epoch 2's read, pending: its callback holds the lookahead
}

}  // namespace
}  // namespace stoker::pipeline
