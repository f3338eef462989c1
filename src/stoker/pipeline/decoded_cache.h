// Samples as the transform left them, kept in memory by dataset index for
// the epochs after the first (tf.data's cache() after map), for transforms
// with no randomness (imagenet_val; Resize, CenterCrop, Pad, Grayscale,
// Normalize, ToDtype): every epoch would decode the same pixels, so a kept
// sample is copied into its batch instead of being read and decoded.
//
// As the encoded cache (storage/cache), a sample is kept while the budget
// has room and never evicted: with a fresh shuffle each epoch, each epoch
// then finds exactly the kept share.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "stoker/options.h"

namespace stoker::pipeline {

class DecodedCache {
 public:
  // `sample_bytes`: one sample's output; `budget_bytes` > 0.
  DecodedCache(size_t sample_bytes, int64_t budget_bytes);

  bool Contains(int64_t index) const;
  // Copies sample `index` into dst (sample_bytes); false when it is not kept.
  bool CopyTo(int64_t index, uint8_t* dst) const;
  // Keeps a copy of src's sample_bytes as sample `index`, if the budget has
  // room and it is not kept yet.
  void Keep(int64_t index, const uint8_t* src);

  int64_t samples() const;
  int64_t bytes() const;
  int64_t hits() const { return hits_.load(std::memory_order_relaxed); }

 private:
  const size_t sample_bytes_;
  const int64_t budget_;
  mutable std::shared_mutex mu_;
  std::unordered_map<int64_t, std::unique_ptr<uint8_t[]>> entries_;
  int64_t used_ = 0;
  mutable std::atomic<int64_t> hits_{0};
};

// Why `t` is not the same for every epoch (a random op, by name), or "" when
// it is: only then may its output be cached.
std::string RandomTransformOp(const TransformOptions& t);

}  // namespace stoker::pipeline
