#include "stoker/sampler/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <vector>

namespace stoker::sampler {
namespace {

TEST(PermutationTest, IsABijectionForSmallSizes) {
  for (uint64_t n = 1; n <= 300; ++n) {
    Permutation p(n, n * 7919);
    std::vector<bool> seen(n, false);
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t v = p(i);
      ASSERT_LT(v, n);
      ASSERT_FALSE(seen[v]) << "n=" << n << " duplicate " << v;
      seen[v] = true;
    }
  }
}

TEST(PermutationTest, KeysGiveDifferentOrders) {
  Permutation a(1000, 1), b(1000, 2);
  int same = 0;
  for (uint64_t i = 0; i < 1000; ++i) same += a(i) == b(i);
  EXPECT_LT(same, 20);
}

TEST(PermutationTest, HugeDomainSpotChecks) {
  const uint64_t n = 10'000'000'000ULL;
  Permutation p(n, 42);
  std::set<uint64_t> values;
  for (uint64_t i = 0; i < 100000; ++i) {
    uint64_t v = p(i * 99991);
    ASSERT_LT(v, n);
    values.insert(v);
  }
  EXPECT_EQ(values.size(), 100000u);
}

TEST(SamplerTest, UnshuffledIsIdentity) {
  Sampler s({.num_samples = 10});
  ASSERT_EQ(s.per_rank(), 10u);
  for (uint64_t k = 0; k < 10; ++k) EXPECT_EQ(s.IndexAt(s.GlobalPosition(k)), k);
}

TEST(SamplerTest, RanksCoverEachSampleOnceApartFromPadding) {
  for (uint64_t n = 1; n <= 40; ++n) {
    for (uint64_t w = 1; w <= 8; ++w) {
      for (bool drop_last : {false, true}) {
        std::vector<int> count(n, 0);
        uint64_t total = 0;
        for (uint64_t r = 0; r < w; ++r) {
          Sampler s({.num_samples = n, .shuffle = true, .seed = 3, .drop_last = drop_last,
                     .rank = r, .world_size = w});
          s.SetEpoch(5);
          for (uint64_t k = 0; k < s.per_rank(); ++k) ++count[s.IndexAt(s.GlobalPosition(k))];
          total += s.per_rank();
        }
        if (drop_last) {
          EXPECT_EQ(total, n / w * w);
          for (uint64_t i = 0; i < n; ++i) EXPECT_LE(count[i], 1);
        } else {
          EXPECT_EQ(total, (n + w - 1) / w * w);
          uint64_t padded = total - n;
          uint64_t twice = 0;
          for (uint64_t i = 0; i < n; ++i) {
            EXPECT_GE(count[i], 1) << "n=" << n << " w=" << w;
            twice += count[i] - 1;
          }
          EXPECT_EQ(twice, padded);
        }
      }
    }
  }
}

TEST(SamplerTest, EpochsDiffer) {
  Sampler s({.num_samples = 100, .shuffle = true, .seed = 0});
  std::vector<uint64_t> e0, e1;
  for (uint64_t k = 0; k < 100; ++k) e0.push_back(s.IndexAt(k));
  s.SetEpoch(1);
  for (uint64_t k = 0; k < 100; ++k) e1.push_back(s.IndexAt(k));
  EXPECT_NE(e0, e1);
  std::sort(e1.begin(), e1.end());
  for (uint64_t k = 0; k < 100; ++k) EXPECT_EQ(e1[k], k);
}

}  // namespace
}  // namespace stoker::sampler

namespace stoker::sampler {
namespace {

// A pass resumed at a global position covers exactly what the interrupted
// pass had not, for any new world size.
TEST(SamplerTest, ResumeCoversTheRestForAnyWorldSize) {
  for (uint64_t n : {1u, 7u, 64u, 101u}) {
    for (uint64_t w0 = 1; w0 <= 4; ++w0) {
      for (uint64_t w1 = 1; w1 <= 5; ++w1) {
        const uint64_t consumed_per_rank = n / w0 / 2;
        std::vector<int> count(n, 0);
        for (uint64_t r = 0; r < w0; ++r) {
          Sampler s({.num_samples = n, .shuffle = true, .seed = 9, .rank = r, .world_size = w0});
          s.SetEpoch(4);
          for (uint64_t k = 0; k < consumed_per_rank; ++k) ++count[s.IndexAt(s.GlobalPosition(k))];
        }
        const uint64_t start = consumed_per_rank * w0;
        for (uint64_t r = 0; r < w1; ++r) {
          Sampler s({.num_samples = n, .shuffle = true, .seed = 9, .rank = r, .world_size = w1});
          s.SetEpoch(4, start);
          for (uint64_t k = 0; k < s.per_rank(); ++k) {
            uint64_t g = s.GlobalPosition(k);
            if (g < n) ++count[s.IndexAt(g)];  // positions >= n are the padding
          }
        }
        for (uint64_t i = 0; i < n; ++i)
          ASSERT_EQ(count[i], 1) << "n=" << n << " w0=" << w0 << " w1=" << w1 << " i=" << i;
      }
    }
  }
}

}  // namespace
}  // namespace stoker::sampler
