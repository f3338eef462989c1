// The chunk-aware order of an epoch: a keyed permutation of pages, a window
// of W pages open at a time, a keyed permutation of each window's samples.
//
// A page is a contiguous run of samples in storage order (page p holds
// dataset indexes [start_p, start_p + size_p), starts being the prefix sums of
// the sizes). Each (seed, epoch) visits the non-empty pages in a keyed order
// and cuts that order into windows of W consecutive pages (the last may hold
// fewer); the positions of window j are the samples of its pages, permuted by
// a keyed permutation of the window. So every page is opened exactly once per
// epoch, at most W pages are open at a time, and the order is a pure function
// of (page sizes, window, seed, epoch, position): any rank, thread or resumed
// process computes the same dataset index for the same position.
//
// Memory is O(pages) (the page starts, and per epoch the page order and its
// position prefix sums); nothing of size N is materialised. docs/order.md
// measures the order's shuffle quality against a full shuffle.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "stoker/status.h"

namespace stoker::sampler {

// The window SamplerOptions uses when it names none. With pages of ~64
// samples and batches of 256, a batch needs 4 pages; 16 open pages spread
// each batch over 4x that many (docs/order.md has the figures).
inline constexpr uint32_t kDefaultWindowPages = 16;

class ChunkOrder {
 public:
  // An order over the pages `page_sizes` (sizes in storage order; zero-size
  // pages allowed and skipped) with `window` pages open at a time. Errors:
  // InvalidArgument when page_sizes is null or window is 0. Starts at epoch
  // 0 of seed 0.
  static Result<ChunkOrder> Create(std::shared_ptr<const std::vector<uint32_t>> page_sizes,
                                   uint32_t window);

  // Number of samples: the sum of the page sizes.
  uint64_t size() const { return layout_->total; }
  // Number of non-empty pages.
  uint64_t num_pages() const { return layout_->starts.size(); }
  uint32_t window() const { return layout_->window; }

  // Selects the order of (seed, epoch). O(pages) time and memory; a no-op
  // when (seed, epoch) is the current one. Not safe against concurrent
  // IndexAt on the same object; copies are independent (they share only
  // immutable tables), so set the epoch on a copy while others read.
  void SetEpoch(uint64_t seed, int64_t epoch);
  uint64_t seed() const { return epoch_->seed; }
  int64_t epoch() const { return epoch_->epoch; }

  // The dataset index at position `g` (< size()) of the current epoch's
  // order. O(log pages) time, no state changed: safe for concurrent callers.
  uint64_t IndexAt(uint64_t g) const;

  // The storage-order number (into page_sizes) of the page at position `q`
  // (< num_pages()) of the epoch's page order; window j holds the pages at
  // positions [j * window, (j + 1) * window).
  uint64_t PageAt(uint64_t q) const;

  // The window holding position `g` (< size()), and the number of windows
  // of the epoch. O(log pages).
  uint64_t WindowAt(uint64_t g) const;
  uint64_t num_windows() const { return epoch_->window_first.size() - 1; }

 private:
  struct Layout {
    std::shared_ptr<const std::vector<uint32_t>> page_sizes;
    uint32_t window = 1;
    uint64_t total = 0;
    std::vector<uint64_t> pages;   // storage-order numbers of the non-empty pages
    std::vector<uint64_t> starts;  // their first dataset index
  };
  struct Epoch {
    uint64_t seed = 0;
    int64_t epoch = 0;
    uint64_t window_key = 0;
    std::vector<uint64_t> order;          // order[q]: non-empty page (into Layout::pages) at q
    std::vector<uint64_t> first;          // first[q]: position of page q's first sample; [P] = N
    std::vector<uint64_t> window_first;   // first position of each window; [windows] = N
  };

  explicit ChunkOrder(std::shared_ptr<const Layout> layout);
  static std::shared_ptr<const Epoch> MakeEpoch(const Layout& layout, uint64_t seed, int64_t epoch);

  std::shared_ptr<const Layout> layout_;
  std::shared_ptr<const Epoch> epoch_;
};

}  // namespace stoker::sampler
