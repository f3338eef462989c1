// S3Storage against a real S3-compatible server. Skipped unless
// STOKER_S3_TEST_ENDPOINT is set: tests/integration/test_s3.py starts moto,
// uploads the objects these cases expect and runs them.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <future>
#include <mutex>
#include <set>

#include "stoker/storage/s3/s3_storage.h"

namespace stoker::storage::s3 {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// The blob's bytes, as conftest.blob_bytes() writes them.
uint8_t BlobByte(int64_t i) { return static_cast<uint8_t>((i * 7 + i / 256) % 251); }

class S3Integration : public ::testing::Test {
 protected:
  void SetUp() override {
    endpoint_ = Env("STOKER_S3_TEST_ENDPOINT");
    bucket_ = Env("STOKER_S3_TEST_BUCKET");
    if (endpoint_.empty() || bucket_.empty()) {
      GTEST_SKIP() << "set STOKER_S3_TEST_ENDPOINT and STOKER_S3_TEST_BUCKET (tests/integration "
                      "does) to run against a server";
    }
    auto s = S3Storage::Open({.endpoint_url = endpoint_});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    storage_ = *s;
  }

  std::string Uri(const std::string& key) { return FormatS3Uri(bucket_, key); }

  std::string endpoint_, bucket_;
  std::shared_ptr<S3Storage> storage_;
};

TEST_F(S3Integration, WholeObjectHeadAndRanges) {
  const int64_t size = std::stoll(Env("STOKER_S3_TEST_BLOB_SIZE"));
  auto head = storage_->Head(Uri("ranges/blob.bin"));
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  EXPECT_EQ(head->size, size);
  EXPECT_FALSE(head->etag.empty());

  auto all = storage_->Read(Uri("ranges/blob.bin"));
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(static_cast<int64_t>(all->size()), size);
  for (int64_t i = 0; i < size; i += 4099) ASSERT_EQ((*all)[i], BlobByte(i)) << i;

  const std::pair<int64_t, int64_t> ranges[] = {
      {0, 1}, {0, 4096}, {1, 10}, {size / 2, 65536}, {size - 100, 100}, {size - 10, 1000}};
  for (auto [off, len] : ranges) {
    auto r = storage_->ReadRange(Uri("ranges/blob.bin"), {off, len});
    ASSERT_TRUE(r.ok()) << off << "+" << len << ": " << r.status().ToString();
    const int64_t want = std::min(len, size - off);
    ASSERT_EQ(static_cast<int64_t>(r->size()), want) << off << "+" << len;
    for (int64_t i = 0; i < want; ++i) ASSERT_EQ((*r)[i], BlobByte(off + i)) << off + i;
  }
  auto tail = storage_->ReadRange(Uri("ranges/blob.bin"), {size - 5, ByteRange::kToEnd});
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(tail->size(), 5u);
  // Past the end: S3 answers 416, which is no bytes (storage.h's contract).
  auto past = storage_->ReadRange(Uri("ranges/blob.bin"), {size + 10, 10});
  ASSERT_TRUE(past.ok()) << past.status().ToString();
  EXPECT_TRUE(past->empty());
}

TEST_F(S3Integration, OddKeys) {
  auto r = storage_->Read(Uri("odd keys/a b+c%20d/\xC3\xA9t\xC3\xA9 (1)~.bin"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(std::string(r->begin(), r->end()), "odd");
  auto listed = storage_->List(Uri("odd keys/"));
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].key, "a b+c%20d/\xC3\xA9t\xC3\xA9 (1)~.bin");
}

TEST_F(S3Integration, MissingObjects) {
  auto r = storage_->Read(Uri("no/such/key.jpg"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("NoSuchKey"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("key 'no/such/key.jpg'"), std::string::npos);
  auto h = storage_->Head(Uri("no/such/key.jpg"));
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(storage_->counters().retries, 0);
}

TEST_F(S3Integration, ListsAndReadsManyConcurrently) {
  const size_t count = std::stoul(Env("STOKER_S3_TEST_BIG_COUNT"));
  auto listed = storage_->List(Uri("big/"));
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  ASSERT_EQ(listed->size(), count);
  std::mutex mu;
  std::multiset<std::string> done;
  std::atomic<size_t> left{count}, failed{0};
  std::promise<void> all;
  for (const auto& o : *listed) {
    storage_->ReadAsync(storage_->Join(Uri("big/"), o.key),
                        [&, key = o.key, size = o.size](Result<Bytes> r) {
                          if (!r.ok() || static_cast<int64_t>(r->size()) != size) ++failed;
                          {
                            std::lock_guard<std::mutex> lock(mu);
                            done.insert(key);
                          }
                          if (--left == 0) all.set_value();
                        });
  }
  all.get_future().get();
  EXPECT_EQ(failed.load(), 0u);
  EXPECT_EQ(done.size(), count);
  EXPECT_EQ(std::set<std::string>(done.begin(), done.end()).size(), count);  // each once
  const auto s = storage_->dispatcher_stats();
  EXPECT_EQ(s.in_flight, 0);
  EXPECT_EQ(s.queued, 0);
  EXPECT_GT(s.latency_s, 0);
}

}  // namespace
}  // namespace stoker::storage::s3
