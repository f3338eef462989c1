// Buffers for sample bytes, handed back after decoding and kept for the
// next read, so that steady reading allocates and faults in nothing.
#pragma once

#include <cstddef>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "stoker/base/large_alloc.h"

namespace stoker::storage {

// Buffers are kept by capacity and handed out best fit: a read of n bytes
// gets the smallest kept buffer that holds n, if that one is not much larger
// (at most kSlackEighths/8 over n's size class), or else a new one whose
// capacity is n rounded up to its size class (an eighth of a power of two).
//
// At most max_kept buffers are kept; past that, the one kept longest unused
// is freed, so the kept set follows the sizes being read lately.
//
// Why not any kept buffer, grown when too small: capacities then only ever
// ratchet up. After a few epochs every buffer in flight has the capacity of
// the largest files, not of the average one; with hundreds of reads in
// flight the loader's resident memory grew by ~10 MB over epochs 2 to 10,
// still growing. Best fit within a class keeps the capacities shaped like
// the file sizes. (Simulated with 256 reads in flight and lognormal sizes
// around 117 KB: ratchet 56 -> 71 MB from epoch 2 to 10; best fit keeping
// 512: 46 -> 50 MB; keeping the 64 most recent: 43.5 -> 42.7 MB, with 1.2%
// of reads allocating after the second epoch.)
class BufferRecycler {
 public:
  using Bytes = std::vector<uint8_t, LargeAllocator<uint8_t>>;

  explicit BufferRecycler(size_t max_kept = 64) : max_kept_(max_kept) {}

  // n rounded up to a multiple of an eighth of its power of two (at least
  // 4 KiB): 100,000 -> 106,496; at most 1/8 larger than n.
  static size_t SizeClass(size_t n) {
    if (n <= 4096) return 4096;
    size_t p = 1;
    while (p <= n / 2) p <<= 1;  // largest power of two <= n
    const size_t step = p / 8 < 4096 ? 4096 : p / 8;
    return (n + step - 1) / step * step;
  }

  // An empty buffer with capacity >= n (n > 0): a kept one that fits, or a
  // new one of n's size class. May throw std::bad_alloc.
  Bytes Take(size_t n) {
    const size_t want = SizeClass(n);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++takes_;
      taken_.notify_all();  // a futex call only when a test waits
      auto it = kept_.lower_bound(n);
      if (it != kept_.end() && it->first <= want + want / 8 * kSlackEighths) {
        Bytes b = std::move(it->second.bytes);
        kept_.erase(it);
        b.clear();
        return b;
      }
    }
    Bytes b;
    b.reserve(want);
    return b;
  }

  void Put(Bytes b) {
    if (b.capacity() == 0 || max_kept_ == 0) return;
    Bytes evicted;  // freed outside the lock
    std::lock_guard<std::mutex> lock(mu_);
    if (kept_.size() >= max_kept_) {
      auto oldest = kept_.begin();
      for (auto it = kept_.begin(); it != kept_.end(); ++it) {
        if (it->second.stamp < oldest->second.stamp) oldest = it;
      }
      evicted = std::move(oldest->second.bytes);
      kept_.erase(oldest);
    }
    const size_t capacity = b.capacity();  // read before b is moved from
    kept_.emplace(capacity, Kept{std::move(b), ++clock_});
  }

  // Buffers kept, and their capacities in bytes; for tests.
  size_t kept() const {
    std::lock_guard<std::mutex> lock(mu_);
    return kept_.size();
  }
  // Buffers handed out so far, and a wait until there have been `n` (a test
  // knows a transfer has its body buffer).
  size_t takes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return takes_;
  }
  void WaitForTakes(size_t n) const {
    std::unique_lock<std::mutex> lock(mu_);
    taken_.wait(lock, [&] { return takes_ >= n; });
  }
  size_t kept_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    size_t total = 0;
    for (const auto& [capacity, b] : kept_) total += capacity;
    return total;
  }

 private:
  struct Kept {
    Bytes bytes;
    uint64_t stamp;  // when it was put: the smallest is evicted first
  };
  static constexpr size_t kSlackEighths = 2;
  const size_t max_kept_;
  mutable std::mutex mu_;
  mutable std::condition_variable taken_;
  size_t takes_ = 0;                  // guarded by mu_
  std::multimap<size_t, Kept> kept_;  // by capacity
  uint64_t clock_ = 0;
};

}  // namespace stoker::storage
