// The random-draw contract (sample_params.h): per-sample randomness, crop
// geometry, and the order of the draws. The resampling kernel lives in
// resize.cc.
#include "stoker/transform/sample_params.h"

#include <algorithm>
#include <cmath>

#include "stoker/transform/compose.h"

namespace stoker::transform {
namespace {

// SplitMix64's output function (Stafford's variant 13): a bijection on 64
// bits with full avalanche, so nearby inputs give unrelated outputs.
inline uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

inline uint64_t SplitMix64Next(uint64_t& state) {
  state += 0x9E3779B97F4A7C15ULL;
  return Mix64(state);
}

inline uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

SampleRng::SampleRng(uint64_t seed, int64_t epoch, int64_t position) {
  // Absorb the three inputs one at a time through a bijective mixer, each
  // with its own additive constant, so (seed, epoch, position) triples that
  // differ in any field (or that are permutations of each other) give
  // unrelated keys. Then expand the key with SplitMix64, as xoshiro's authors
  // recommend for seeding.
  uint64_t h = Mix64(seed + 0x243F6A8885A308D3ULL);
  h = Mix64(h ^ Mix64(static_cast<uint64_t>(epoch) + 0x13198A2E03707344ULL));
  h = Mix64(h ^ Mix64(static_cast<uint64_t>(position) + 0xA4093822299F31D0ULL));
  for (uint64_t& s : s_) s = SplitMix64Next(h);
  // xoshiro's only bad state; SplitMix64 cannot produce four zero words in a
  // row, but keep the guarantee local.
  if ((s_[0] | s_[1] | s_[2] | s_[3]) == 0) s_[0] = 1;
}

// xoshiro256** 1.0 (Blackman and Vigna).
uint64_t SampleRng::NextU64() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

double SampleRng::Uniform() {
  // The top 53 bits: every double in [0, 1) that is a multiple of 2^-53.
  return static_cast<double>(NextU64() >> 11) * 0x1.0p-53;
}

image::Rect RandomResizedCropRect(int width, int height, std::array<double, 2> scale,
                                   std::array<double, 2> ratio, SampleRng& rng) {
  // Draw order (one NextU64 each), which callers may rely on: per try, the
  // area fraction then the log aspect ratio; on success, the row offset then
  // the column offset. The fallback draws nothing. The caller's flip is the
  // next Uniform() after these.
  // The draws are bit-identical everywhere; the rect also goes through
  // log/exp/sqrt, so two libms could disagree on a crop only if a side
  // lands within an ulp of a rounding boundary.
  const double area = static_cast<double>(width) * static_cast<double>(height);
  const double log_r0 = std::log(ratio[0]);
  const double log_r1 = std::log(ratio[1]);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * rng.Uniform(scale[0], scale[1]);
    const double aspect = std::exp(rng.Uniform(log_r0, log_r1));
    const int w = RoundHalfEven(std::sqrt(target_area * aspect));
    const int h = RoundHalfEven(std::sqrt(target_area / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const int i = UniformInt(rng, height - h + 1);
      const int j = UniformInt(rng, width - w + 1);
      return image::Rect{static_cast<double>(j), static_cast<double>(i), static_cast<double>(w),
                          static_cast<double>(h)};
    }
  }
  // Fallback: the largest centred crop whose aspect ratio is within bounds.
  const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
  const double min_ratio = std::min(ratio[0], ratio[1]);
  const double max_ratio = std::max(ratio[0], ratio[1]);
  int w = width;
  int h = height;
  if (in_ratio < min_ratio) {
    h = RoundHalfEven(w / min_ratio);
  } else if (in_ratio > max_ratio) {
    w = RoundHalfEven(h * max_ratio);
  }
  // Degenerate ratios (0 or inf) cannot push the rect outside the image.
  w = std::clamp(w, 1, width);
  h = std::clamp(h, 1, height);
  return image::Rect{static_cast<double>((width - w) / 2), static_cast<double>((height - h) / 2),
                      static_cast<double>(w), static_cast<double>(h)};
}

image::Rect CenterCropRect(int width, int height, int size, double center_fraction) {
  // torchvision.transforms.Resize(int) sets the shorter side to `resize` and
  // the longer to int(resize * long / short) (truncated).
  const int resize = RoundHalfEven(size / center_fraction);
  const bool w_short = width <= height;
  const int short_side = w_short ? width : height;
  const int long_side = w_short ? height : width;
  const int new_long =
      static_cast<int>(static_cast<double>(resize) * long_side / static_cast<double>(short_side));
  const int new_w = w_short ? resize : new_long;
  const int new_h = w_short ? new_long : resize;
  // CenterCrop(size) then takes an integer window at round((new - size) / 2)
  // (torchvision pads instead when the image is smaller; we clamp).
  const int crop_w = std::min(size, new_w);
  const int crop_h = std::min(size, new_h);
  const int left = RoundHalfEven((new_w - crop_w) / 2.0);
  const int top = RoundHalfEven((new_h - crop_h) / 2.0);
  // Pillow's resize maps output pixel edge u to source x = u * width / new_w,
  // so the crop of the resized image is this source rectangle, and resizing
  // it alone to size x size uses the same filter scale and sample centres.
  const double sx = static_cast<double>(width) / new_w;
  const double sy = static_cast<double>(height) / new_h;
  return image::Rect{left * sx, top * sy, crop_w * sx, crop_h * sy};
}

SampleParams ComputeSampleParams(int width, int height, const TransformOptions& t, uint64_t seed,
                                 int64_t epoch, uint64_t position) {
  SampleParams p;
  if (t.kind == TransformOptions::Kind::kCompose) {
    SampleRng rng(seed, epoch, static_cast<int64_t>(position));
    const FusedPrefix f = PlanFusedPrefix(t.ops, width, height, rng);
    p.crop = f.crop;
    p.flip = f.hflip;
    p.vflip = f.vflip;
    p.out_w = f.out_w;
    p.out_h = f.out_h;
    p.fused_ops = f.next_op;
    return p;
  }
  p.out_w = p.out_h = t.size;
  if (t.kind == TransformOptions::Kind::kTrain) {
    SampleRng rng(seed, epoch, static_cast<int64_t>(position));
    p.crop = RandomResizedCropRect(width, height, t.scale, t.ratio, rng);
    // The flip is the draw after the crop's.
    p.flip = rng.Uniform() < t.flip_probability;
  } else {
    p.crop = CenterCropRect(width, height, t.size, t.center_fraction);
  }
  return p;
}

}  // namespace stoker::transform
