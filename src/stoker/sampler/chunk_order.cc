#include "stoker/sampler/chunk_order.h"

#include <algorithm>
#include <utility>

#include "stoker/sampler/sampler.h"

namespace stoker::sampler {
namespace {

// Tags that keep the page order's key apart from the windows' keys (and both
// apart from the per-sample order's key, HashCombine(seed, epoch)).
constexpr uint64_t kPageTag = 0x70616765'6f726465ULL;    // "pageorde"
constexpr uint64_t kWindowTag = 0x77696e64'6f777321ULL;  // "windows!"

}  // namespace

Result<ChunkOrder> ChunkOrder::Create(std::shared_ptr<const std::vector<uint32_t>> page_sizes,
                                      uint32_t window) {
  if (page_sizes == nullptr) return InvalidArgument("chunk order: no page sizes given");
  if (window == 0) return InvalidArgument("chunk order: window of 0 pages (it must be at least 1)");
  auto layout = std::make_shared<Layout>();
  layout->window = window;
  uint64_t total = 0;
  for (size_t p = 0; p < page_sizes->size(); ++p) {
    const uint32_t size = (*page_sizes)[p];
    if (size == 0) continue;
    layout->pages.push_back(p);
    layout->starts.push_back(total);
    total += size;  // sizes < 2^32: 64 bits overflow only past 2^32 pages
  }
  layout->total = total;
  layout->page_sizes = std::move(page_sizes);
  return ChunkOrder(std::move(layout));
}

ChunkOrder::ChunkOrder(std::shared_ptr<const Layout> layout)
    : layout_(std::move(layout)), epoch_(MakeEpoch(*layout_, 0, 0)) {}

std::shared_ptr<const ChunkOrder::Epoch> ChunkOrder::MakeEpoch(const Layout& layout, uint64_t seed,
                                                               int64_t epoch) {
  auto e = std::make_shared<Epoch>();
  e->seed = seed;
  e->epoch = epoch;
  const uint64_t base = HashCombine(seed, static_cast<uint64_t>(epoch));
  e->window_key = HashCombine(base, kWindowTag);
  const uint64_t pages = layout.pages.size();
  const Permutation page_order(pages, HashCombine(base, kPageTag));
  const std::vector<uint32_t>& sizes = *layout.page_sizes;
  e->order.resize(pages);
  e->first.resize(pages + 1);
  e->window_first.reserve((pages + layout.window - 1) / layout.window + 1);
  uint64_t pos = 0;
  for (uint64_t q = 0; q < pages; ++q) {
    const uint64_t page = page_order(q);
    if (q % layout.window == 0) e->window_first.push_back(pos);
    e->order[q] = page;
    e->first[q] = pos;
    pos += sizes[layout.pages[page]];
  }
  e->first[pages] = pos;
  e->window_first.push_back(pos);
  return e;
}

void ChunkOrder::SetEpoch(uint64_t seed, int64_t epoch) {
  if (seed == epoch_->seed && epoch == epoch_->epoch) return;
  epoch_ = MakeEpoch(*layout_, seed, epoch);
}

uint64_t ChunkOrder::PageAt(uint64_t q) const { return layout_->pages[epoch_->order[q]]; }

uint64_t ChunkOrder::WindowAt(uint64_t g) const {
  const Epoch& e = *epoch_;
  return static_cast<uint64_t>(std::upper_bound(e.window_first.begin(), e.window_first.end(), g) -
                               e.window_first.begin()) -
         1;
}

uint64_t ChunkOrder::IndexAt(uint64_t g) const {
  const Epoch& e = *epoch_;
  // The window holding g: the last whose first position is <= g (window_first
  // ends with N > g, and starts with 0 <= g).
  const auto wit = std::upper_bound(e.window_first.begin(), e.window_first.end(), g) - 1;
  const uint64_t j = static_cast<uint64_t>(wit - e.window_first.begin());
  const uint64_t window_size = wit[1] - wit[0];
  // Where in the window g's sample comes from.
  const Permutation shuffle(window_size, HashCombine(e.window_key, j));
  const uint64_t from = wit[0] + shuffle(g - wit[0]);
  // The page of the window holding that position: pages [q0, q1).
  const uint64_t w = layout_->window;
  const uint64_t q0 = j * w;
  const uint64_t q1 = std::min<uint64_t>(q0 + w, e.order.size());
  const auto pit =
      std::upper_bound(e.first.begin() + static_cast<std::ptrdiff_t>(q0) + 1,
                       e.first.begin() + static_cast<std::ptrdiff_t>(q1), from) -
      1;
  const uint64_t q = static_cast<uint64_t>(pit - e.first.begin());
  return layout_->starts[e.order[q]] + (from - *pit);
}

}  // namespace stoker::sampler
