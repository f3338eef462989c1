#include "stoker/pipeline/decoded_cache.h"

#include <cstring>
#include <mutex>

namespace stoker::pipeline {

DecodedCache::DecodedCache(size_t sample_bytes, int64_t budget_bytes)
    : sample_bytes_(sample_bytes), budget_(budget_bytes) {}

bool DecodedCache::Contains(int64_t index) const {
  std::shared_lock lock(mu_);
  return entries_.count(index) > 0;
}

bool DecodedCache::CopyTo(int64_t index, uint8_t* dst) const {
  std::shared_lock lock(mu_);
  auto it = entries_.find(index);
  if (it == entries_.end()) return false;
  std::memcpy(dst, it->second.get(), sample_bytes_);
  hits_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void DecodedCache::Keep(int64_t index, const uint8_t* src) {
  const auto size = static_cast<int64_t>(sample_bytes_);
  {
    std::shared_lock lock(mu_);
    if (used_ + size > budget_ || entries_.count(index)) return;
  }
  // Copied outside the lock; the room is checked again under it.
  std::unique_ptr<uint8_t[]> copy(new uint8_t[sample_bytes_]);
  std::memcpy(copy.get(), src, sample_bytes_);
  std::unique_lock lock(mu_);
  if (used_ + size > budget_ || entries_.count(index)) return;
  entries_.emplace(index, std::move(copy));
  used_ += size;
}

int64_t DecodedCache::samples() const {
  std::shared_lock lock(mu_);
  return static_cast<int64_t>(entries_.size());
}

int64_t DecodedCache::bytes() const {
  std::shared_lock lock(mu_);
  return used_;
}

std::string RandomTransformOp(const TransformOptions& t) {
  using K = TransformOptions::Kind;
  using T = TransformOp::Type;
  if (t.kind == K::kVal) return "";
  if (t.kind == K::kTrain) return "RandomResizedCrop";
  for (const TransformOp& op : t.ops) {
    switch (op.type) {
      case T::kResize:
      case T::kCenterCrop:
      case T::kPad:
      case T::kGrayscale:
      case T::kNormalize:
      case T::kToDtype:
        break;
      case T::kRandomResizedCrop: return "RandomResizedCrop";
      case T::kRandomCrop: return "RandomCrop";
      case T::kRandomHorizontalFlip:
        if (op.p > 0) return "RandomHorizontalFlip";
        break;
      case T::kRandomVerticalFlip:
        if (op.p > 0) return "RandomVerticalFlip";
        break;
      case T::kColorJitter: return "ColorJitter";
      case T::kRandomGrayscale:
        if (op.p > 0) return "RandomGrayscale";
        break;
      case T::kGaussianBlur:
        if (op.sigma[0] != op.sigma[1]) return "GaussianBlur";
        break;
    }
  }
  return "";
}

}  // namespace stoker::pipeline
