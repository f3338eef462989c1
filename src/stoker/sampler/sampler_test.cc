#include "stoker/sampler/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>
#include <string>
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

namespace stoker::sampler {
namespace {

// The resume contract, over the Sampler as the Loader drives it: rank r of W
// takes the positions start + r + kW (k < per_rank) of the epoch's global
// order, in batches of `bs`; drop_last keeps whole batches only. A state is
// saved after b batches on every rank, at global position start + b * bs * W
// (LoaderState::position), and a new pass at another world size W' starts
// there. The contract:
//  - the positions delivered before the save are exactly [0, position);
//  - the resumed pass delivers each position of [position, end) exactly once
//    and nothing else below N; end is N with drop_last=false, and with
//    drop_last=true the largest end such that end - position is a multiple of
//    W' * bs (fewer than W' * bs positions dropped, so every rank gets the same
//    number of whole batches);
//  - drop_last=false pads the last round with positions N, N + 1, ... (each
//    the dataset index of position g mod N: the first positions of the order
//    again), fewer than W' of them, so every rank gets ceil((N - position) / W');
//  - with the same world size the resumed pass is, rank by rank, exactly the
//    rest of the uninterrupted pass (same positions, same order), so with
//    drop_last=true too the epoch delivers exactly the uninterrupted epoch's
//    samples.
struct Pass {
  std::vector<std::vector<uint64_t>> ranks;  // global positions, in delivery order
  uint64_t batches = 0;                      // per rank
};

Pass RunPass(uint64_t n, uint64_t w, uint64_t bs, bool drop_last, uint64_t start) {
  Pass p;
  for (uint64_t r = 0; r < w; ++r) {
    Sampler s({.num_samples = n, .shuffle = true, .seed = 17, .drop_last = drop_last, .rank = r,
               .world_size = w});
    s.SetEpoch(6, start);
    const uint64_t per_rank = s.per_rank();
    const uint64_t batches = drop_last ? per_rank / bs : (per_rank + bs - 1) / bs;
    if (r == 0) p.batches = batches;
    EXPECT_EQ(p.batches, batches) << "ranks disagree on the number of batches";
    std::vector<uint64_t> got;
    for (uint64_t k = 0; k < std::min(per_rank, batches * bs); ++k) got.push_back(s.GlobalPosition(k));
    p.ranks.push_back(got);
  }
  return p;
}

std::string Where(uint64_t n, uint64_t bs, bool drop_last, const std::vector<uint64_t>& worlds,
                  const std::vector<uint64_t>& saves) {
  std::ostringstream w;
  w << "n=" << n << " bs=" << bs << " drop_last=" << drop_last << " worlds";
  for (uint64_t x : worlds) w << ' ' << x;
  w << " saved after batches";
  for (uint64_t x : saves) w << ' ' << x;
  return w.str();
}

// Checks one resumed pass against the contract; `delivered` counts, by global
// position, what the passes before it delivered ([0, start) exactly once).
void CheckResumed(uint64_t n, uint64_t w, uint64_t bs, bool drop_last, uint64_t start,
                  const Pass& resumed, const std::string& where) {
  std::map<uint64_t, int> count;
  for (const auto& rank : resumed.ranks)
    for (uint64_t g : rank) ++count[g];
  const uint64_t left = start < n ? n - start : 0;
  const uint64_t end = drop_last ? start + left / (w * bs) * (w * bs) : n;
  for (uint64_t g = start; g < end; ++g)
    ASSERT_EQ(count[g], 1) << where << ": position " << g << " of [" << start << ", " << end << ")";
  uint64_t padding = 0;
  for (const auto& [g, c] : count) {
    ASSERT_TRUE(g >= start && (g < end || (!drop_last && g >= n)))
        << where << ": position " << g << " outside [" << start << ", " << end << ")";
    ASSERT_EQ(c, 1) << where << ": position " << g << " twice";
    if (g >= n) ++padding;
  }
  if (drop_last) {
    ASSERT_EQ(padding, 0u) << where;
  } else {
    ASSERT_LT(padding, w) << where;
    ASSERT_EQ(left + padding, (left + w - 1) / w * w) << where;
    if (padding > 0) {  // the padding is the positions right after N, contiguous
      ASSERT_EQ(count.rbegin()->first, n + padding - 1) << where;
    }
  }
}

// Positions delivered by the first `b` batches of every rank of `p`.
std::vector<uint64_t> Head(const Pass& p, uint64_t b, uint64_t bs) {
  std::vector<uint64_t> out;
  for (const auto& rank : p.ranks)
    out.insert(out.end(), rank.begin(), rank.begin() + std::min<size_t>(rank.size(), b * bs));
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<uint64_t> Iota(uint64_t from, uint64_t to) {
  std::vector<uint64_t> v;
  for (uint64_t g = from; g < to; ++g) v.push_back(g);
  return v;
}

// Every save point of every pass (the padded last round's start included),
// world sizes 1..5 before and 1..6 after (1 -> 3, 4 -> 2, 2 -> 5 among them),
// batch sizes 1..3, N = 1..23, both drop_last settings.
TEST(SamplerResumeTest, EveryPositionEveryWorldSizeEachSampleOnce) {
  for (bool drop_last : {false, true}) {
    for (uint64_t n = 1; n <= 23; ++n) {
      for (uint64_t bs = 1; bs <= 3; ++bs) {
        for (uint64_t w0 = 1; w0 <= 5; ++w0) {
          const Pass full = RunPass(n, w0, bs, drop_last, 0);
          // A save after the last batch is a finished epoch (the next one, at
          // position 0), so the save points are 0 .. batches - 1.
          for (uint64_t b = 0; b < full.batches; ++b) {
            const uint64_t position = b * bs * w0;
            ASSERT_LT(position, n);
            ASSERT_EQ(Head(full, b, bs), Iota(0, position)) << Where(n, bs, drop_last, {w0}, {b});
            for (uint64_t w1 = 1; w1 <= 6; ++w1) {
              const std::string where = Where(n, bs, drop_last, {w0, w1}, {b});
              const Pass resumed = RunPass(n, w1, bs, drop_last, position);
              ASSERT_NO_FATAL_FAILURE(CheckResumed(n, w1, bs, drop_last, position, resumed, where));
              if (w1 == w0) {
                // Rank by rank, the rest of the uninterrupted pass.
                for (uint64_t r = 0; r < w0; ++r) {
                  std::vector<uint64_t> tail(full.ranks[r].begin() + b * bs, full.ranks[r].end());
                  ASSERT_EQ(resumed.ranks[r], tail) << where << " rank " << r;
                }
              }
            }
          }
        }
      }
    }
  }
}

// Saved, resumed at another world size, saved again and resumed at a third:
// still [0, position) before each save and each position once after.
TEST(SamplerResumeTest, ResumedTwiceAcrossThreeWorldSizes) {
  const uint64_t bs = 2;
  for (bool drop_last : {false, true}) {
    for (uint64_t n = 1; n <= 29; ++n) {
      for (uint64_t w0 = 1; w0 <= 4; ++w0) {
        const Pass first = RunPass(n, w0, bs, drop_last, 0);
        for (uint64_t b0 = 0; b0 < first.batches; ++b0) {
          const uint64_t s1 = b0 * bs * w0;
          for (uint64_t w1 = 1; w1 <= 5; ++w1) {
            const Pass second = RunPass(n, w1, bs, drop_last, s1);
            for (uint64_t b1 = 0; b1 < second.batches; ++b1) {
              const uint64_t s2 = s1 + b1 * bs * w1;
              const std::vector<uint64_t> head = Head(second, b1, bs);
              ASSERT_EQ(head, Iota(s1, s2)) << Where(n, bs, drop_last, {w0, w1}, {b0, b1});
              for (uint64_t w2 = 1; w2 <= 4; ++w2) {
                const Pass third = RunPass(n, w2, bs, drop_last, s2);
                ASSERT_NO_FATAL_FAILURE(CheckResumed(n, w2, bs, drop_last, s2, third,
                                                     Where(n, bs, drop_last, {w0, w1, w2}, {b0, b1})));
              }
            }
          }
        }
      }
    }
  }
}

// In dataset indices: the positions map through the epoch's permutation, so
// each sample is delivered once, and the padding repeats the order's first
// samples (g mod N), as DistributedSampler's does.
TEST(SamplerResumeTest, DatasetIndicesOnceAndPaddingRepeatsTheFirstOfTheOrder) {
  for (bool drop_last : {false, true}) {
    for (uint64_t n = 1; n <= 23; ++n) {
      for (uint64_t start = 0; start <= n; ++start) {  // any position, not only round starts
        for (uint64_t w = 1; w <= 6; ++w) {
          std::vector<int> count(n, 0);
          std::vector<uint64_t> padding;
          Sampler order({.num_samples = n, .shuffle = true, .seed = 17});
          order.SetEpoch(6);
          for (uint64_t g = 0; g < start; ++g) ++count[order.IndexAt(g)];
          uint64_t delivered = 0;
          for (uint64_t r = 0; r < w; ++r) {
            Sampler s({.num_samples = n, .shuffle = true, .seed = 17, .drop_last = drop_last,
                       .rank = r, .world_size = w});
            s.SetEpoch(6, start);
            for (uint64_t k = 0; k < s.per_rank(); ++k) {
              const uint64_t g = s.GlobalPosition(k);
              ASSERT_EQ(s.IndexAt(g), order.IndexAt(g % n));
              if (g >= n) {
                padding.push_back(g);
              } else {
                ++count[s.IndexAt(g)];
              }
              ++delivered;
            }
          }
          const uint64_t left = n - start;
          if (drop_last) {
            ASSERT_EQ(delivered, left / w * w);
            ASSERT_TRUE(padding.empty());
            for (uint64_t g = 0; g < start + delivered; ++g) ASSERT_EQ(count[order.IndexAt(g)], 1);
            for (uint64_t g = start + delivered; g < n; ++g) ASSERT_EQ(count[order.IndexAt(g)], 0);
          } else {
            ASSERT_EQ(delivered, (left + w - 1) / w * w) << "n=" << n << " start=" << start << " w=" << w;
            for (uint64_t i = 0; i < n; ++i) ASSERT_EQ(count[i], 1) << "n=" << n << " start=" << start;
            std::sort(padding.begin(), padding.end());
            ASSERT_EQ(padding, Iota(n, n + padding.size()));
          }
        }
      }
    }
  }
}

// A position at or past N (a finished epoch, or a state edited by hand) gives
// an empty pass, on every rank: nothing is delivered twice.
TEST(SamplerResumeTest, StartAtOrPastTheEndIsAnEmptyPass) {
  for (bool drop_last : {false, true}) {
    for (uint64_t w = 1; w <= 4; ++w) {
      for (uint64_t r = 0; r < w; ++r) {
        Sampler s({.num_samples = 10, .shuffle = true, .drop_last = drop_last, .rank = r,
                   .world_size = w});
        for (uint64_t start : {10u, 11u, 1000u}) {
          s.SetEpoch(2, start);
          EXPECT_EQ(s.per_rank(), 0u) << "start " << start;
        }
      }
    }
  }
}

}  // namespace
}  // namespace stoker::sampler
