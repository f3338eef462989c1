// Pure image kernels for the sample path: crop geometry (torchvision's), a
// deterministic per-sample random generator, and the fused
// resize + flip + HWC->CHW (+ normalise) that writes straight into a batch.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "stoker/decode/decode.h"

namespace stoker::transform {

// Random numbers for one sample, a pure function of (seed, epoch, position in
// the global order): the crops of an epoch never depend on thread count or
// on what was delivered before.
class SampleRng {
 public:
  SampleRng(uint64_t seed, int64_t epoch, int64_t position);
  uint64_t NextU64();
  // Uniform in [0, 1).
  double Uniform();
  // Uniform in [lo, hi).
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }

 private:
  uint64_t s_[4];
};

// torchvision.transforms.RandomResizedCrop.get_params: up to 10 tries of a
// random area fraction in `scale` and log-uniform aspect ratio in `ratio`,
// else a centre crop clamped to `ratio`. Integer rect in source pixels.
decode::Rect RandomResizedCropRect(int width, int height, std::array<double, 2> scale,
                                   std::array<double, 2> ratio, SampleRng& rng);

// torchvision Resize(round(size / center_fraction)) then CenterCrop(size),
// expressed as the source rect that ends up in the output.
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
  std::vector<float> rows;      // intermediate rows of the separable resize
  std::vector<float> weights;   // filter taps, both axes
  std::vector<int32_t> starts;  // first source pixel of each output, both axes
};

// Resizes `region.crop` of `region.image` to spec.size x spec.size with
// bilinear interpolation (antialiased when shrinking), mirrors it
// horizontally if `flip`, and writes 3 planes (CHW) to `dst`: uint8 or
// float32 as spec says. `dst` holds 3 * size * size elements.
void ResizeToCHW(const decode::Region& region, const OutputSpec& spec, bool flip, void* dst,
                 Scratch& scratch);

}  // namespace stoker::transform
