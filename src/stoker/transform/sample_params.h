// The random-draw contract: which crop and flip a sample gets, as a pure
// function of (seed, epoch, position in the global order) and the image's
// size. Everything that draws lives here (docs/transforms.md, Randomness):
//
//   SampleRng(seed, epoch, position)      the sample's random numbers
//   RandomResizedCropRect(..., rng)       per try: area fraction, then log
//                                         aspect ratio; on success: row
//                                         offset, then column offset
//   ComputeSampleParams                   kTrain: the crop's draws, then the
//                                         flip (the next Uniform() < p);
//                                         kVal: CenterCropRect, no draws
//
// Batches are identical for any thread count, rank or resume point because
// nothing else feeds these draws. Changing the order or number of draws
// changes every training crop: the tests pin them.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "stoker/image/geometry.h"
#include "stoker/options.h"

namespace stoker::transform {

// Random numbers for one sample, a pure function of (seed, epoch, position in
// the global order): the crops of an epoch never depend on thread count or
// on what was delivered before. xoshiro256** seeded by SplitMix64 from a
// mix of the three values; the same on every platform and compiler (the
// tests pin its first outputs).
class SampleRng {
 public:
  SampleRng(uint64_t seed, int64_t epoch, int64_t position);
  uint64_t NextU64();
  // Uniform in [0, 1): the top 53 bits of one NextU64().
  double Uniform();
  // Uniform in [lo, hi).
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }

 private:
  uint64_t s_[4];
};

// Python's round() (ties to even) followed by int(): torchvision's rounding.
// Spelled out rather than std::nearbyint, which follows the floating-point
// environment's rounding mode.
inline int RoundHalfEven(double v) {
  const double f = std::floor(v);
  const double d = v - f;
  const bool up = d > 0.5 || (d == 0.5 && std::fmod(f, 2.0) != 0.0);
  return static_cast<int>(up ? f + 1.0 : f);
}

// Uniform integer in [0, n), one draw. The bias of floor(U * n) is below
// n / 2^53: invisible for image sizes.
inline int UniformInt(SampleRng& rng, int n) {
  int v = static_cast<int>(rng.Uniform() * n);
  return std::min(v, n - 1);
}

// torchvision.transforms.RandomResizedCrop.get_params: up to 10 tries of a
// random area fraction in `scale` and log-uniform aspect ratio in `ratio`,
// else a centre crop clamped to `ratio`. Integer rect in source pixels,
// always inside the image. Same algorithm and rounding (Python's round, half
// to even), our random source: the same distribution, not torch's draws.
// Draws, one Uniform() each: per try the area fraction then the log ratio;
// on success the row then the column offset. A caller's flip is the next
// Uniform() after these (ComputeSampleParams).
image::Rect RandomResizedCropRect(int width, int height, std::array<double, 2> scale,
                                  std::array<double, 2> ratio, SampleRng& rng);

// torchvision Resize(round(size / center_fraction)) then CenterCrop(size),
// expressed as the source rect that ends up in the output: fractional,
// (left, top, size, size) of the resized image times source / resized.
// Resampling that rect straight to size x size uses the same filter scale
// and sample positions as resizing the whole image and cropping. (Where
// torchvision would pad, center_fraction > 1, the rect is clamped.)
image::Rect CenterCropRect(int width, int height, int size, double center_fraction);

// The crop (in source pixels) and flip the transform takes for a source of
// width x height at global position `position` of `epoch`.
// For a Compose, the fused prefix's (compose.h): the source rect, the size it
// is resampled to, its flips, and how many leading ops it covers.
struct SampleParams {
  image::Rect crop;
  bool flip = false;
  bool vflip = false;
  int out_w = 0;
  int out_h = 0;
  size_t fused_ops = 0;
};
SampleParams ComputeSampleParams(int width, int height, const TransformOptions& t, uint64_t seed,
                                 int64_t epoch, uint64_t position);

}  // namespace stoker::transform
