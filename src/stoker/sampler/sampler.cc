#include "stoker/sampler/sampler.h"

#include <bit>
#include <numeric>
#include <string>

namespace stoker::sampler {
namespace {

uint64_t Mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

constexpr int kRounds = 6;

}  // namespace

uint64_t HashCombine(uint64_t a, uint64_t b) { return Mix64(Mix64(a) ^ (b + 0x632be59bd9b4e019ULL)); }

Permutation::Permutation(uint64_t n, uint64_t key) : n_(n), key_(key) {
  // Balanced Feistel on 2 * half_bits bits: the domain is < 4n, so cycle
  // walking takes fewer than 4 steps on average.
  int bits = n <= 1 ? 2 : std::bit_width(n - 1);
  half_bits_ = (bits + 1) / 2;
  half_mask_ = (uint64_t{1} << half_bits_) - 1;
}

uint64_t Permutation::Encrypt(uint64_t x) const {
  uint64_t left = x >> half_bits_;
  uint64_t right = x & half_mask_;
  for (int r = 0; r < kRounds; ++r) {
    uint64_t f = HashCombine(key_ + static_cast<uint64_t>(r), right) & half_mask_;
    uint64_t next = left ^ f;
    left = right;
    right = next;
  }
  return (left << half_bits_) | right;
}

uint64_t Permutation::operator()(uint64_t i) const {
  if (n_ <= 1) return 0;
  // Cycle walking: re-encrypt until the value lands inside [0, n). Since the
  // cipher is a bijection on the larger domain, this is a bijection on [0, n).
  uint64_t x = Encrypt(i);
  while (x >= n_) x = Encrypt(x);
  return x;
}

Status Sampler::Check(const SamplerOptions& options) {
  if (options.world_size == 0) return InvalidArgument("sampler: world_size is 0");
  if (options.rank >= options.world_size) {
    return InvalidArgument("sampler: rank " + std::to_string(options.rank) +
                           " is not below world_size " + std::to_string(options.world_size));
  }
  if (options.page_sizes != nullptr) {
    const uint64_t total = std::accumulate(options.page_sizes->begin(), options.page_sizes->end(),
                                           uint64_t{0});
    if (total != options.num_samples) {
      return InvalidArgument("sampler: the " + std::to_string(options.page_sizes->size()) +
                             " page sizes sum to " + std::to_string(total) + " samples, not " +
                             std::to_string(options.num_samples));
    }
  }
  return Status::Ok();
}

Sampler::Sampler(const SamplerOptions& options)
    : options_(options), perm_(options.num_samples, 0) {
  if (options_.shuffle && options_.page_sizes != nullptr) {
    const uint32_t window = options_.window_pages > 0 ? options_.window_pages : kDefaultWindowPages;
    Result<ChunkOrder> order = ChunkOrder::Create(options_.page_sizes, window);
    if (order.ok() && order->size() == options_.num_samples) chunks_ = std::move(order).value();
  }
  SetEpoch(0);
}

void Sampler::SetEpoch(int64_t epoch, uint64_t start) {
  const uint64_t n = options_.num_samples, w = options_.world_size;
  const uint64_t left = start < n ? n - start : 0;
  per_rank_ = options_.drop_last ? left / w : (left + w - 1) / w;
  start_ = start;
  epoch_ = epoch;
  if (chunks_) {
    chunks_->SetEpoch(options_.seed, epoch);
  } else {
    perm_ = Permutation(options_.num_samples,
                        HashCombine(options_.seed, static_cast<uint64_t>(epoch)));
  }
}

uint64_t Sampler::IndexAt(uint64_t g) const {
  const uint64_t n = options_.num_samples;
  const uint64_t pos = g % n;
  if (!options_.shuffle) return pos;
  return chunks_ ? chunks_->IndexAt(pos) : perm_(pos);
}

}  // namespace stoker::sampler
