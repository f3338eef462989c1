#include "stoker/base/histogram.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <thread>
#include <vector>

namespace stoker {
namespace {

TEST(Histogram, BucketsTileEveryValueWithoutGaps) {
  using H = HistogramSnapshot;
  EXPECT_EQ(H::BucketLow(0), 0);
  for (int i = 0; i + 1 < H::kBuckets; ++i) {
    ASSERT_EQ(H::BucketHigh(i) + 1, H::BucketLow(i + 1)) << i;
    ASSERT_EQ(H::BucketOf(H::BucketLow(i)), i) << i;
    ASSERT_EQ(H::BucketOf(H::BucketHigh(i)), i) << i;
  }
  EXPECT_EQ(H::BucketHigh(H::kBuckets - 1), INT64_MAX);
  EXPECT_EQ(H::BucketOf(INT64_MAX), H::kBuckets - 1);
  EXPECT_EQ(H::BucketOf(-5), 0);
  // Width at most a quarter of the lower bound.
  for (int i = 4; i < H::kBuckets; ++i) {
    ASSERT_LE(H::BucketHigh(i) - H::BucketLow(i) + 1, H::BucketLow(i) / 4) << i;
  }
}

TEST(Histogram, PercentilesOfOneToHundred) {
  Histogram h;
  for (int v = 1; v <= 100; ++v) h.Record(v);
  const HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, 100);
  EXPECT_EQ(s.sum, 5050);
  EXPECT_DOUBLE_EQ(s.Mean(), 50.5);
  // The 50th value (50) is in [48, 55], the 90th (90) in [80, 95], the 99th
  // and 100th (99, 100) in [96, 111]; a percentile names its bucket's top.
  EXPECT_EQ(s.Percentile(0.50), 55);
  EXPECT_EQ(s.Percentile(0.90), 95);
  EXPECT_EQ(s.Percentile(0.99), 111);
  EXPECT_EQ(s.Percentile(1.0), 111);
  EXPECT_EQ(s.Percentile(0.01), 1);  // the 1st value, 1: a bucket of its own
  EXPECT_EQ(s.Percentile(0.03), 3);
  EXPECT_EQ(s.Percentile(0.04), 4);  // [4, 4]
  EXPECT_EQ(s.Percentile(0.05), 5);  // [5, 5]
}

TEST(Histogram, PercentilesOfASkewedSet) {
  Histogram h;
  for (int i = 0; i < 900; ++i) h.Record(1000);   // [896, 1023]
  for (int i = 0; i < 90; ++i) h.Record(20000);   // [16384, 20479]
  for (int i = 0; i < 10; ++i) h.Record(500000);  // [458752, 524287]
  const HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.Percentile(0.5), 1023);
  EXPECT_EQ(s.Percentile(0.9), 1023);    // the 900th value is still 1000
  EXPECT_EQ(s.Percentile(0.901), 20479);
  EXPECT_EQ(s.Percentile(0.99), 20479);  // the 990th
  EXPECT_EQ(s.Percentile(0.991), 524287);
  HistogramSnapshot both = s;
  both.Merge(s);
  EXPECT_EQ(both.count, 2000);
  EXPECT_EQ(both.Percentile(0.99), 20479);
  EXPECT_EQ(HistogramSnapshot{}.Percentile(0.5), 0);
}

TEST(Histogram, ConcurrentRecordsAreAllCounted) {
  Histogram h;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&h, t] {
      for (int i = 0; i < 10000; ++i) h.Record(t * 1000 + i % 7);
    });
  }
  for (auto& t : threads) t.join();
  const HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, 40000);
  int64_t want_sum = 0;
  for (int t = 0; t < 4; ++t) {
    for (int i = 0; i < 10000; ++i) want_sum += t * 1000 + i % 7;
  }
  EXPECT_EQ(s.sum, want_sum);
}

}  // namespace
}  // namespace stoker
