// Pure image kernels for the sample path: crop geometry (torchvision's), a
// deterministic per-sample random generator, and the fused
// resize + flip + HWC->CHW (+ normalise) that writes straight into a batch.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "stoker/base/large_alloc.h"
#include "stoker/decode/decode.h"

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

// torchvision.transforms.RandomResizedCrop.get_params: up to 10 tries of a
// random area fraction in `scale` and log-uniform aspect ratio in `ratio`,
// else a centre crop clamped to `ratio`. Integer rect in source pixels,
// always inside the image. Same algorithm and rounding (Python's round, half
// to even), our random source: the same distribution, not torch's draws.
// Draws, one Uniform() each: per try the area fraction then the log ratio;
// on success the row then the column offset. A caller's flip is the next
// Uniform() after these (pipeline::ComputeSampleParams).
decode::Rect RandomResizedCropRect(int width, int height, std::array<double, 2> scale,
                                   std::array<double, 2> ratio, SampleRng& rng);

// torchvision Resize(round(size / center_fraction)) then CenterCrop(size),
// expressed as the source rect that ends up in the output: fractional,
// (left, top, size, size) of the resized image times source / resized.
// Resampling that rect straight to size x size uses the same filter scale
// and sample positions as resizing the whole image and cropping. (Where
// torchvision would pad, center_fraction > 1, the rect is clamped.)
decode::Rect CenterCropRect(int width, int height, int size, double center_fraction);

struct OutputSpec {
  int size = 224;          // output is size x size
  bool normalize = false;  // false: uint8; true: float32 (x/255 - mean) / std
  std::array<float, 3> mean = {0.485f, 0.456f, 0.406f};
  std::array<float, 3> std = {0.229f, 0.224f, 0.225f};
};

// Scratch buffers reused across calls; one per thread. They grow to the
// largest crop seen and are never shrunk: ResizeToCHW allocates nothing in
// the steady state.
struct Scratch {
  // Intermediate rows: large-buffer memory (stoker/base/large_alloc.h).
  std::vector<float, LargeAllocator<float>> rows;        // portable kernel
  std::vector<int16_t, LargeAllocator<int16_t>> fixed;   // AVX2 kernel, rows and taps
  std::vector<float> weights;   // filter taps, both axes
  std::vector<int32_t> starts;  // first source pixel of each output, both axes
};

// Resizes `region.crop` of `region.image` to spec.size x spec.size with
// bilinear interpolation (antialiased when shrinking), mirrors it
// horizontally if `flip`, and writes 3 planes (CHW) to `dst`: uint8 or
// float32 as spec says. `dst` holds 3 * size * size elements.
// The filter is Pillow's BILINEAR (a triangle widened by the scale factor
// when shrinking, as torchvision on PIL images), applied to the fractional
// box; it reads only the pixels the box touches (crop-then-resize, like
// RandomResizedCrop). Values round half up; float32 output is the uint8
// value normalised. An empty or non-finite crop writes zeros. Allocates
// nothing once `scratch` has grown to the largest crop; thread-compatible
// (one Scratch per thread).
void ResizeToCHW(const decode::Region& region, const OutputSpec& spec, bool flip, void* dst,
                 Scratch& scratch);

}  // namespace stoker::transform
