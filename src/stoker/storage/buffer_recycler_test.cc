#include "stoker/storage/buffer_recycler.h"

#include <gtest/gtest.h>

#include <deque>
#include <random>

namespace stoker::storage {
namespace {

TEST(BufferRecyclerTest, SizeClassesAreAtMostAnEighthLarger) {
  EXPECT_EQ(BufferRecycler::SizeClass(0), 4096u);
  EXPECT_EQ(BufferRecycler::SizeClass(4096), 4096u);
  EXPECT_EQ(BufferRecycler::SizeClass(4097), 8192u);
  EXPECT_EQ(BufferRecycler::SizeClass(100000), 106496u);  // 65536 / 8 = 8192 steps
  EXPECT_EQ(BufferRecycler::SizeClass(131072), 131072u);
  for (size_t n = 1; n < (size_t{1} << 26); n = n * 3 / 2 + 7) {
    const size_t c = BufferRecycler::SizeClass(n);
    EXPECT_GE(c, n);
    EXPECT_LE(c, n < 32768 ? n + 4096 : n + n / 8) << n;
    EXPECT_EQ(BufferRecycler::SizeClass(c), c) << n;  // a class is its own class
  }
}

TEST(BufferRecyclerTest, TakesTheBestFitAndNeverAMuchLargerBuffer) {
  BufferRecycler r;
  for (size_t cap : {50000u, 120000u, 300000u}) {
    BufferRecycler::Bytes b;
    b.reserve(cap);
    b.resize(10);  // contents do not matter: a taken buffer comes back empty
    r.Put(std::move(b));
  }
  ASSERT_EQ(r.kept(), 3u);
  BufferRecycler::Bytes b = r.Take(110000);  // the 120,000 one, not the 300,000 one
  EXPECT_EQ(b.capacity(), 120000u);
  EXPECT_TRUE(b.empty());
  // Nothing kept fits 30,000 closely (50,000 is more than 1.25x its class):
  // a new buffer of its class.
  BufferRecycler::Bytes c = r.Take(30000);
  EXPECT_EQ(c.capacity(), BufferRecycler::SizeClass(30000));
  EXPECT_EQ(r.kept(), 2u);
  BufferRecycler::Bytes d = r.Take(290000);
  EXPECT_EQ(d.capacity(), 300000u);
  EXPECT_EQ(r.kept(), 1u);
}

TEST(BufferRecyclerTest, KeepsAtMostMaxKept) {
  BufferRecycler r(2);
  for (int i = 0; i < 5; ++i) r.Put(r.Take(1000 + static_cast<size_t>(i)));  // one at a time
  EXPECT_EQ(r.kept(), 1u);
  std::vector<BufferRecycler::Bytes> held;
  for (int i = 0; i < 5; ++i) held.push_back(r.Take(5000));
  for (auto& b : held) r.Put(std::move(b));
  EXPECT_EQ(r.kept(), 2u);
  // Past max_kept the one kept longest goes: here the two 5,000s, not the
  // 300,000 and 200,000 put last.
  for (size_t cap : {300000u, 200000u}) {
    BufferRecycler::Bytes b;
    b.reserve(cap);
    r.Put(std::move(b));
  }
  EXPECT_EQ(r.kept_bytes(), 500000u);
}

// The reason for best fit: with hundreds of reads in flight and sizes from
// a spread-out distribution, the memory behind the buffers (kept plus in
// flight) settles near what the files need instead of ratcheting up to
// the largest file's size for every buffer.
TEST(BufferRecyclerTest, MemoryStaysShapedLikeTheSizesOverManyEpochs) {
  BufferRecycler r;
  std::mt19937 rng(7);
  std::lognormal_distribution<double> size(std::log(117000.0), 0.35);
  constexpr size_t kInFlight = 256;
  std::deque<BufferRecycler::Bytes> in_flight;
  double needed = 0;  // bytes the in-flight files hold, summed over reads
  double held = 0;    // capacity behind them
  size_t total_after_2 = 0;
  for (int epoch = 0; epoch < 10; ++epoch) {
    for (int i = 0; i < 2000; ++i) {
      const size_t n = static_cast<size_t>(size(rng));
      BufferRecycler::Bytes b = r.Take(n);
      ASSERT_GE(b.capacity(), n);
      b.resize(n);
      needed += static_cast<double>(n);
      held += static_cast<double>(b.capacity());
      in_flight.push_back(std::move(b));
      if (in_flight.size() > kInFlight) {
        r.Put(std::move(in_flight.front()));
        in_flight.pop_front();
      }
    }
    size_t total = r.kept_bytes();
    for (const auto& b : in_flight) total += b.capacity();
    if (epoch == 1) total_after_2 = total;
    if (epoch == 9) {
      // Within 5% of epoch 2; the old recycler (any buffer, grown when too
      // small) grew 25% here.
      EXPECT_LE(static_cast<double>(total), 1.05 * static_cast<double>(total_after_2));
    }
  }
  EXPECT_LE(held / needed, 1.25);  // each buffer fits its file closely
}

// What FileStorage relies on: resize() within the capacity does not zero
// the bytes the read is about to overwrite, for small and mapped buffers.
TEST(LargeAllocatorTest, ResizeDoesNotZeroAndMappedBuffersWork) {
  // 64 KiB is where mapping starts (everything is malloc'd under ASan).
  for (size_t n : {size_t{1000}, size_t{64} << 10, size_t{3} << 20}) {
    BufferRecycler::Bytes b(n, 7);
    b.clear();
    b.resize(n);
    EXPECT_EQ(b.front(), 7) << n;
    EXPECT_EQ(b.back(), 7) << n;
    b.resize(2 * n);  // grows into a new block: the old bytes come along
    EXPECT_EQ(b[n - 1], 7) << n;
  }
}

}  // namespace
}  // namespace stoker::storage
