#include "stoker/sampler/chunk_order.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "stoker/sampler/sampler.h"

namespace stoker::sampler {
namespace {

using Pages = std::vector<uint32_t>;

ChunkOrder Make(const Pages& pages, uint32_t window) {
  Result<ChunkOrder> order = ChunkOrder::Create(std::make_shared<const Pages>(pages), window);
  EXPECT_TRUE(order.ok()) << order.status().message();
  return std::move(order).value();
}

std::vector<uint64_t> Starts(const Pages& pages) {
  std::vector<uint64_t> starts(pages.size() + 1, 0);
  for (size_t p = 0; p < pages.size(); ++p) starts[p + 1] = starts[p] + pages[p];
  return starts;
}

// The storage-order page of each dataset index.
std::vector<size_t> PageOf(const Pages& pages) {
  std::vector<size_t> page;
  for (size_t p = 0; p < pages.size(); ++p) page.insert(page.end(), pages[p], p);
  return page;
}

std::vector<uint64_t> Order(const ChunkOrder& order) {
  std::vector<uint64_t> out(order.size());
  for (uint64_t g = 0; g < order.size(); ++g) out[g] = order.IndexAt(g);
  return out;
}

// Page layouts: even, uneven, with zero-size pages (first, middle, last,
// runs of them), a single page, all pages of one sample.
std::vector<Pages> Layouts() {
  std::vector<Pages> layouts = {
      {1},
      {7},
      {4, 4, 4, 4},
      {0, 3, 0, 0, 5, 1, 0},
      {1, 1, 1, 1, 1, 1, 1, 1, 1},
      {64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 17},
      {2, 9, 0, 33, 1, 5, 12, 0, 8},
  };
  std::mt19937 rng(12345);
  for (int i = 0; i < 6; ++i) {
    Pages pages(1 + rng() % 40);
    for (uint32_t& s : pages) s = rng() % 4 == 0 ? 0 : 1 + rng() % 30;
    layouts.push_back(pages);
  }
  return layouts;
}

TEST(ChunkOrder, RejectsBadArguments) {
  Result<ChunkOrder> none = ChunkOrder::Create(nullptr, 4);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(none.status().message().find("no page sizes"), std::string::npos);
  Result<ChunkOrder> zero = ChunkOrder::Create(std::make_shared<const Pages>(Pages{3, 4}), 0);
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(zero.status().message().find("window of 0 pages"), std::string::npos);
}

TEST(ChunkOrder, CountsSamplesAndNonEmptyPages) {
  ChunkOrder order = Make({0, 3, 0, 0, 5, 1, 0}, 2);
  EXPECT_EQ(order.size(), 9u);
  EXPECT_EQ(order.num_pages(), 3u);
  EXPECT_EQ(order.window(), 2u);
  ChunkOrder empty = Make({0, 0}, 3);
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_EQ(empty.num_pages(), 0u);
  empty.SetEpoch(1, 2);  // nothing to order, nothing read
}

TEST(ChunkOrder, IsABijectionForEveryLayoutWindowSeedAndEpoch) {
  for (const Pages& pages : Layouts()) {
    for (uint32_t window : {1u, 2u, 3u, 5u, 64u}) {
      ChunkOrder order = Make(pages, window);
      for (uint64_t seed : {0u, 9u}) {
        for (int64_t epoch : {0, 1, -3}) {
          order.SetEpoch(seed, epoch);
          std::vector<bool> seen(order.size(), false);
          for (uint64_t g = 0; g < order.size(); ++g) {
            const uint64_t i = order.IndexAt(g);
            ASSERT_LT(i, order.size());
            ASSERT_FALSE(seen[i]) << "duplicate " << i << " at " << g << " window " << window;
            seen[i] = true;
          }
        }
      }
    }
  }
}

TEST(ChunkOrder, VisitsEveryNonEmptyPageOnceInAKeyedOrder) {
  const Pages pages = {2, 9, 0, 33, 1, 5, 12, 0, 8};
  ChunkOrder order = Make(pages, 2);
  std::vector<std::vector<uint64_t>> orders;
  for (int64_t epoch = 0; epoch < 8; ++epoch) {
    order.SetEpoch(4, epoch);
    std::vector<uint64_t> seq;
    for (uint64_t q = 0; q < order.num_pages(); ++q) seq.push_back(order.PageAt(q));
    std::vector<uint64_t> sorted = seq;
    std::sort(sorted.begin(), sorted.end());
    // The zero-size pages 2 and 7 are skipped.
    EXPECT_EQ(sorted, (std::vector<uint64_t>{0, 1, 3, 4, 5, 6, 8}));
    orders.push_back(seq);
  }
  // Keyed: the 8 epochs do not all visit the pages in one order.
  std::sort(orders.begin(), orders.end());
  EXPECT_GT(std::unique(orders.begin(), orders.end()) - orders.begin(), 4);
}

// Positions [window_start, window_end) hold exactly the samples of the
// window's pages, the windows follow the page order, and each page's samples
// lie within its window's span: every page is opened once, at most `window`
// at a time.
TEST(ChunkOrder, EachWindowHoldsExactlyItsPagesSamples) {
  for (const Pages& pages : Layouts()) {
    const std::vector<uint64_t> starts = Starts(pages);
    const std::vector<size_t> page_of = PageOf(pages);
    for (uint32_t window : {1u, 2u, 3u, 5u, 64u}) {
      ChunkOrder order = Make(pages, window);
      order.SetEpoch(77, 3);
      const std::vector<uint64_t> seq = Order(order);
      uint64_t pos = 0;
      for (uint64_t q0 = 0; q0 < order.num_pages(); q0 += window) {
        std::vector<uint64_t> expected;
        for (uint64_t q = q0; q < std::min<uint64_t>(q0 + window, order.num_pages()); ++q) {
          const uint64_t p = order.PageAt(q);
          for (uint64_t i = starts[p]; i < starts[p + 1]; ++i) expected.push_back(i);
        }
        std::vector<uint64_t> got(seq.begin() + static_cast<std::ptrdiff_t>(pos),
                                  seq.begin() + static_cast<std::ptrdiff_t>(pos + expected.size()));
        std::sort(got.begin(), got.end());
        std::sort(expected.begin(), expected.end());
        ASSERT_EQ(got, expected) << "window at page " << q0 << " of window " << window;
        pos += expected.size();
      }
      EXPECT_EQ(pos, order.size());

      // Open pages: a page is open from its first sample's position to its
      // last's. Never more than `window` at once; each page one interval.
      std::vector<int64_t> first(pages.size(), -1), last(pages.size(), -1);
      for (uint64_t g = 0; g < seq.size(); ++g) {
        const size_t p = page_of[seq[g]];
        if (first[p] < 0) first[p] = static_cast<int64_t>(g);
        last[p] = static_cast<int64_t>(g);
      }
      for (uint64_t g = 0; g < seq.size(); ++g) {
        uint32_t open = 0;
        for (size_t p = 0; p < pages.size(); ++p) {
          open += first[p] >= 0 && first[p] <= static_cast<int64_t>(g) &&
                  static_cast<int64_t>(g) <= last[p];
        }
        ASSERT_LE(open, window) << "position " << g;
      }
    }
  }
}

TEST(ChunkOrder, WindowOfOneKeepsEachPageContiguous) {
  const Pages pages = {5, 0, 7, 3, 9};
  const std::vector<size_t> page_of = PageOf(pages);
  ChunkOrder order = Make(pages, 1);
  order.SetEpoch(1, 1);
  const std::vector<uint64_t> seq = Order(order);
  uint64_t q = 0, run = 0;
  for (uint64_t g = 0; g < seq.size(); ++g) {
    ASSERT_EQ(page_of[seq[g]], order.PageAt(q)) << "position " << g;
    if (++run == pages[order.PageAt(q)]) ++q, run = 0;
  }
  EXPECT_EQ(q, order.num_pages());
}

TEST(ChunkOrder, WindowOfAllPagesMixesAcrossPages) {
  // One window: the whole epoch is a single keyed permutation, so the first
  // 20 positions come from several pages, not just the first page visited.
  const Pages pages(10, 20);
  const std::vector<size_t> page_of = PageOf(pages);
  ChunkOrder order = Make(pages, 10);
  order.SetEpoch(3, 0);
  std::vector<bool> hit(pages.size(), false);
  for (uint64_t g = 0; g < 20; ++g) hit[page_of[order.IndexAt(g)]] = true;
  EXPECT_GE(std::count(hit.begin(), hit.end(), true), 5);
}

TEST(ChunkOrder, SameAnswerWhateverTheInstanceCallOrderOrThread) {
  const Pages pages = {64, 64, 0, 50, 64, 3, 64, 64, 64, 10, 64, 64};
  ChunkOrder a = Make(pages, 3);
  a.SetEpoch(11, 6);
  const std::vector<uint64_t> forward = Order(a);

  // Another instance reaching the epoch through others, read backwards.
  ChunkOrder b = Make(pages, 3);
  b.SetEpoch(11, 5);
  b.SetEpoch(2, 6);
  b.SetEpoch(11, 6);
  for (uint64_t g = b.size(); g-- > 0;) ASSERT_EQ(b.IndexAt(g), forward[g]) << g;

  // A copy set to another epoch leaves the original alone.
  ChunkOrder c = a;
  c.SetEpoch(11, 7);
  EXPECT_EQ(Order(a), forward);
  EXPECT_NE(Order(c), forward);

  // Concurrent readers of one instance, each at its own stride.
  std::vector<std::vector<uint64_t>> got(4, std::vector<uint64_t>(a.size()));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t g = static_cast<uint64_t>(t); g < a.size(); g += 4) got[t][g] = a.IndexAt(g);
    });
  }
  for (std::thread& th : threads) th.join();
  for (uint64_t g = 0; g < a.size(); ++g) ASSERT_EQ(got[g % 4][g], forward[g]) << g;
}

// Positions where two orders agree, of n.
uint64_t Agreeing(const std::vector<uint64_t>& x, const std::vector<uint64_t>& y) {
  uint64_t same = 0;
  for (size_t g = 0; g < x.size(); ++g) same += x[g] == y[g];
  return same;
}

TEST(ChunkOrder, EpochsAndSeedsGiveDifferentOrders) {
  const Pages pages(40, 25);  // N = 1000
  ChunkOrder order = Make(pages, 4);
  order.SetEpoch(1, 0);
  const std::vector<uint64_t> e0 = Order(order);
  order.SetEpoch(1, 1);
  const std::vector<uint64_t> e1 = Order(order);
  order.SetEpoch(2, 0);
  const std::vector<uint64_t> s2 = Order(order);
  // A random pair of orders agrees at ~1 position of 1000.
  EXPECT_LT(Agreeing(e0, e1), 20u);
  EXPECT_LT(Agreeing(e0, s2), 20u);
  EXPECT_LT(Agreeing(e1, s2), 20u);
}

// The order is a contract: a run resumed by a later build must continue the
// same order. These are the indexes of pages {3, 0, 5, 2, 4}, window 2, seed 7.
TEST(ChunkOrder, KnownOrder) {
  ChunkOrder order = Make({3, 0, 5, 2, 4}, 2);
  // Pages: 0 = [0, 3), 2 = [3, 8), 3 = [8, 10), 4 = [10, 14).
  order.SetEpoch(7, 0);  // windows: pages 3 and 2, then 4 and 0
  std::vector<uint64_t> page_order;
  for (uint64_t q = 0; q < order.num_pages(); ++q) page_order.push_back(order.PageAt(q));
  EXPECT_EQ(page_order, (std::vector<uint64_t>{3, 2, 4, 0}));
  EXPECT_EQ(Order(order), (std::vector<uint64_t>{5, 4, 7, 9, 3, 8, 6, 10, 11, 1, 13, 0, 12, 2}));
  order.SetEpoch(7, 1);  // windows: pages 4 and 3, then 2 and 0
  EXPECT_EQ(Order(order), (std::vector<uint64_t>{13, 12, 8, 11, 9, 10, 4, 7, 1, 6, 3, 2, 0, 5}));
}

TEST(ChunkOrder, SamplerCheckNamesBadPageSizes) {
  const auto pages = std::make_shared<const Pages>(Pages{4, 4, 4});
  EXPECT_TRUE(Sampler::Check({.num_samples = 12, .shuffle = true, .page_sizes = pages}).ok());
  const Status bad = Sampler::Check({.num_samples = 13, .shuffle = true, .page_sizes = pages});
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.message(), "sampler: the 3 page sizes sum to 12 samples, not 13");
  EXPECT_EQ(Sampler::Check({.num_samples = 12, .rank = 2, .world_size = 2}).message(),
            "sampler: rank 2 is not below world_size 2");
  EXPECT_EQ(Sampler::Check({.num_samples = 12, .world_size = 0}).message(),
            "sampler: world_size is 0");
  // Given anyway, a mismatched description is not used.
  Sampler s({.num_samples = 13, .shuffle = true, .page_sizes = pages});
  EXPECT_EQ(s.chunk_order(), nullptr);
}

TEST(ChunkOrder, SamplerUsesItOnlyWhenShufflingWithPages) {
  const Pages sizes = {30, 0, 30, 30, 10, 30, 30, 30, 30, 30};
  const auto pages = std::make_shared<const Pages>(sizes);
  const uint64_t n = 250;
  Sampler plain({.num_samples = n, .shuffle = false, .page_sizes = pages});
  EXPECT_EQ(plain.chunk_order(), nullptr);
  for (uint64_t g = 0; g < n; ++g) ASSERT_EQ(plain.IndexAt(g), g);

  Sampler s({.num_samples = n, .shuffle = true, .seed = 5, .page_sizes = pages, .window_pages = 3});
  ASSERT_NE(s.chunk_order(), nullptr);
  EXPECT_EQ(s.chunk_order()->window(), 3u);
  ChunkOrder order = Make(sizes, 3);
  for (int64_t epoch : {0, 4}) {
    s.SetEpoch(epoch);
    order.SetEpoch(5, epoch);
    for (uint64_t g = 0; g < 2 * n; ++g) ASSERT_EQ(s.IndexAt(g), order.IndexAt(g % n)) << g;
  }
  Sampler by_default({.num_samples = n, .shuffle = true, .page_sizes = pages});
  ASSERT_NE(by_default.chunk_order(), nullptr);
  EXPECT_EQ(by_default.chunk_order()->window(), kDefaultWindowPages);
}

TEST(ChunkOrder, SamplerRanksPartitionTheEpoch) {
  const Pages sizes = {64, 64, 20, 0, 64, 64, 64, 64, 64, 64, 64, 7, 64, 64};
  const auto pages = std::make_shared<const Pages>(sizes);
  const uint64_t n = Starts(sizes).back();
  Sampler whole({.num_samples = n, .shuffle = true, .seed = 8, .page_sizes = pages,
                 .window_pages = 4});
  whole.SetEpoch(2);
  for (uint64_t w = 1; w <= 5; ++w) {
    for (bool drop_last : {false, true}) {
      std::vector<int> count(n, 0);
      uint64_t total = 0;
      for (uint64_t r = 0; r < w; ++r) {
        Sampler s({.num_samples = n, .shuffle = true, .seed = 8, .drop_last = drop_last,
                   .rank = r, .world_size = w, .page_sizes = pages, .window_pages = 4});
        s.SetEpoch(2);
        for (uint64_t k = 0; k < s.per_rank(); ++k) {
          const uint64_t g = s.GlobalPosition(k);
          ASSERT_EQ(s.IndexAt(g), whole.IndexAt(g));  // one global order for every world size
          ++count[s.IndexAt(g)];
        }
        total += s.per_rank();
      }
      const uint64_t expected_total = drop_last ? n / w * w : (n + w - 1) / w * w;
      EXPECT_EQ(total, expected_total) << "w=" << w;
      uint64_t extra = 0, missing = 0;
      for (uint64_t i = 0; i < n; ++i) {
        if (count[i] == 0) ++missing;
        if (count[i] > 1) extra += static_cast<uint64_t>(count[i] - 1);
      }
      // drop_last drops the tail; padding repeats the head of the order.
      EXPECT_EQ(extra, drop_last ? 0 : expected_total - n) << "w=" << w;
      EXPECT_EQ(missing, drop_last ? n - expected_total : 0) << "w=" << w;
    }
  }
}

TEST(ChunkOrder, SamplerResumesMidEpochExactly) {
  const Pages sizes = {64, 64, 20, 0, 64, 64, 64, 64, 64, 64, 64, 7, 64, 64};
  const auto pages = std::make_shared<const Pages>(sizes);
  const uint64_t n = Starts(sizes).back();
  Sampler whole({.num_samples = n, .shuffle = true, .seed = 21, .page_sizes = pages,
                 .window_pages = 5});
  whole.SetEpoch(3);
  const uint64_t start = 301;  // mid-window, and not a multiple of any world size below
  for (uint64_t w : {1u, 2u, 3u, 4u, 5u}) {
    // Fresh processes of any world size resuming epoch 3 at `start` deliver,
    // between them, exactly the rest of the saved pass's order.
    std::vector<uint64_t> got(n, UINT64_MAX);
    for (uint64_t r = 0; r < w; ++r) {
      Sampler resumed({.num_samples = n, .shuffle = true, .seed = 21, .rank = r, .world_size = w,
                       .page_sizes = pages, .window_pages = 5});
      resumed.SetEpoch(3, start);
      for (uint64_t k = 0; k < resumed.per_rank(); ++k) {
        const uint64_t g = resumed.GlobalPosition(k);
        if (g >= n) continue;  // padding
        ASSERT_EQ(got[g], UINT64_MAX) << "position " << g << " twice";
        got[g] = resumed.IndexAt(g);
      }
    }
    for (uint64_t g = 0; g < n; ++g) {
      if (g < start) {
        EXPECT_EQ(got[g], UINT64_MAX) << g;
      } else {
        ASSERT_EQ(got[g], whole.IndexAt(g)) << "w=" << w << " position " << g;
      }
    }
  }
}

}  // namespace
}  // namespace stoker::sampler
