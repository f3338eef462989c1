// The global order of an epoch and each rank's slice of it.
//
// Each (seed, epoch) defines one permutation of [0, N), independent of world
// size and thread count. Rank r of W takes global positions r, r + W, ...
// Nothing of size N is ever materialised: the permutation is a keyed Feistel
// network with cycle walking, O(1) time and memory per lookup.
#pragma once

#include <cstdint>

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
};

class Sampler {
 public:
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
  uint64_t IndexAt(uint64_t g) const;

 private:
  SamplerOptions options_;
  int64_t epoch_ = 0;
  uint64_t start_ = 0;
  uint64_t per_rank_ = 0;
  Permutation perm_;
};

// A 64-bit mix of the arguments (SplitMix64 finaliser chained).
uint64_t HashCombine(uint64_t a, uint64_t b);

}  // namespace stoker::sampler
