// The global order of an epoch and each rank's slice of it.
//
// Each (seed, epoch) defines one permutation of [0, N), independent of world
// size and thread count. Rank r of W takes global positions r, r + W, ...
// Nothing of size N is ever materialised: the permutation is a keyed Feistel
// network with cycle walking, O(1) time and memory per lookup. A dataset
// stored in pages may instead use the chunk-aware order (chunk_order.h), which
// opens each page once per epoch; docs/order.md compares the two.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "stoker/sampler/chunk_order.h"
#include "stoker/status.h"

namespace stoker::sampler {

// A keyed bijection on [0, n).
class Permutation {
 public:
  Permutation(uint64_t n, uint64_t key);
  uint64_t size() const { return n_; }
  // The element at position `i` (< n).
  uint64_t operator()(uint64_t i) const;

 private:
  uint64_t Encrypt(uint64_t x) const;

  uint64_t n_;
  uint64_t key_;
  int half_bits_;
  uint64_t half_mask_;
};

struct SamplerOptions {
  uint64_t num_samples = 0;
  bool shuffle = false;
  uint64_t seed = 0;
  bool drop_last = false;  // drop the tail that does not divide evenly
  uint64_t rank = 0;
  uint64_t world_size = 1;
  // The chunk-aware order (used only with shuffle): the dataset's pages,
  // sizes in storage order summing to num_samples (see ChunkOrder), and the
  // pages open at a time (0: kDefaultWindowPages). Null: the per-sample order.
  std::shared_ptr<const std::vector<uint32_t>> page_sizes;
  uint32_t window_pages = 0;
};

class Sampler {
 public:
  // Whether `options` describe a sampler: InvalidArgument when world_size is
  // 0, rank >= world_size, or page_sizes (when set) do not sum to num_samples.
  static Status Check(const SamplerOptions& options);

  // Expects options that pass Check. A page description that fails it is not
  // used (the shuffled order is then the per-sample one); chunk_order()
  // tells which order is in use.
  explicit Sampler(const SamplerOptions& options);

  // Selects the epoch and the global position the pass starts from (0 for a
  // whole epoch; a resumed pass starts where the saved one stopped).
  void SetEpoch(int64_t epoch, uint64_t start = 0);
  int64_t epoch() const { return epoch_; }
  uint64_t start() const { return start_; }

  // Positions of the global order this rank takes in the pass: of the
  // R = max(0, N - start) positions left, drop_last=false pads by wrapping
  // around to the start of the order so every rank gets ceil(R / W);
  // drop_last=true gives floor(R / W).
  uint64_t per_rank() const { return per_rank_; }
  // Global position of the k-th sample of this rank (k < per_rank()).
  uint64_t GlobalPosition(uint64_t k) const {
    return start_ + options_.rank + k * options_.world_size;
  }
  uint64_t world_size() const { return options_.world_size; }
  // Dataset index at global position `g` (wraps past N for the padding).
  // Const and stateless: safe for concurrent callers.
  uint64_t IndexAt(uint64_t g) const;
  // The chunk-aware order in use (shuffle with page sizes), else null.
  const ChunkOrder* chunk_order() const { return chunks_ ? &*chunks_ : nullptr; }

 private:
  SamplerOptions options_;
  int64_t epoch_ = 0;
  uint64_t start_ = 0;
  uint64_t per_rank_ = 0;
  Permutation perm_;
  std::optional<ChunkOrder> chunks_;
};

// A 64-bit mix of the arguments (SplitMix64 finaliser chained).
uint64_t HashCombine(uint64_t a, uint64_t b);

}  // namespace stoker::sampler
