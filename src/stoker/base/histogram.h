// A histogram of non-negative integers (request latencies in microseconds,
// sizes in bytes) in fixed log-scale buckets, recorded with relaxed atomics:
// no lock, no allocation, safe from any thread. Percentiles come from a
// snapshot.
//
// Buckets: 0, 1, 2 and 3 have one each; above that every power of two
// [2^e, 2^(e+1)) is cut into four equal buckets, so a bucket's width is at
// most a quarter of its lower bound (a percentile is off by < 25%, always
// upwards: it names the largest value its bucket holds).
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstdint>

namespace stoker {

class HistogramSnapshot {
 public:
  static constexpr int kBuckets = 4 + 61 * 4;  // up to INT64_MAX (powers 2^2 .. 2^62)

  // The bucket that holds `v` (v < 0 counts as 0).
  static constexpr int BucketOf(int64_t v) {
    if (v < 4) return v < 0 ? 0 : static_cast<int>(v);
    const auto u = static_cast<uint64_t>(v);
    const int e = 63 - std::countl_zero(u);  // 2^e <= v < 2^(e+1), e >= 2
    const int sub = static_cast<int>((u >> (e - 2)) & 3);
    return 4 + (e - 2) * 4 + sub;
  }
  // The smallest and the largest value bucket `i` holds.
  static constexpr int64_t BucketLow(int i) {
    if (i < 4) return i;
    const int e = (i - 4) / 4 + 2;
    const int sub = (i - 4) % 4;
    return static_cast<int64_t>((uint64_t{4} + static_cast<uint64_t>(sub)) << (e - 2));
  }
  static constexpr int64_t BucketHigh(int i) {
    if (i < 4) return i;
    const int e = (i - 4) / 4 + 2;
    const int sub = (i - 4) % 4;
    const uint64_t next = (uint64_t{5} + static_cast<uint64_t>(sub)) << (e - 2);
    return static_cast<int64_t>(next - 1);
  }

  std::array<int64_t, kBuckets> counts{};
  int64_t count = 0;  // values recorded
  int64_t sum = 0;    // their total

  // The value at quantile q (0 < q <= 1): the largest value of the bucket
  // holding the ceil(q * count)-th smallest value recorded; 0 when empty.
  int64_t Percentile(double q) const {
    if (count <= 0) return 0;
    int64_t rank = static_cast<int64_t>(q * static_cast<double>(count));
    if (static_cast<double>(rank) < q * static_cast<double>(count)) ++rank;  // ceil
    if (rank < 1) rank = 1;
    if (rank > count) rank = count;
    int64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts[i];
      if (seen >= rank) return BucketHigh(i);
    }
    return BucketHigh(kBuckets - 1);
  }
  double Mean() const { return count > 0 ? static_cast<double>(sum) / static_cast<double>(count) : 0; }

  // Adds `other`'s values to these (merging the histograms of two sources).
  void Merge(const HistogramSnapshot& other) {
    for (int i = 0; i < kBuckets; ++i) counts[i] += other.counts[i];
    count += other.count;
    sum += other.sum;
  }
};

class Histogram {
 public:
  void Record(int64_t v) {
    buckets_[HistogramSnapshot::BucketOf(v)].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v < 0 ? 0 : v, std::memory_order_relaxed);
  }

  // The counts so far. Taken while others record, the buckets, count and sum
  // may disagree by the values recorded meanwhile; the count is the buckets'
  // total, so percentiles stay consistent.
  HistogramSnapshot Snapshot() const {
    HistogramSnapshot s;
    for (int i = 0; i < HistogramSnapshot::kBuckets; ++i) {
      s.counts[i] = buckets_[i].load(std::memory_order_relaxed);
      s.count += s.counts[i];
    }
    s.sum = sum_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  std::array<std::atomic<int64_t>, HistogramSnapshot::kBuckets> buckets_{};
  std::atomic<int64_t> sum_{0};
};

}  // namespace stoker
