// Private to the transform module: the separable resampler behind
// ResizeToCHW, exposed for tests and benchmarks.
#pragma once

#include <cstdint>
#include <vector>

#include "stoker/image/geometry.h"
#include "stoker/transform/transform.h"

namespace stoker::transform::internal {

// Filter taps along one axis: output i reads `taps` consecutive source
// pixels from start[i] with weights w[i * taps + k] (zero-padded so every
// output has the same count). Every start[i] + taps <= hi.
struct AxisTaps {
  int taps = 0;
  int lo = 0;  // the source pixels the filter may read: [lo, hi)
  int hi = 0;
  int32_t* start = nullptr;
  float* w = nullptr;
};

// Pillow's BILINEAR resampling of the source interval [b0, b1) (fractional,
// in pixels) of an axis `limit` pixels long onto `out` pixels: a triangle
// filter whose support widens by the scale factor when shrinking, sampled at
// the source pixel centres and normalised. Pixels outside the ones the box
// touches are not read (as if the box had been cropped first, torchvision's
// crop-then-resize). `reverse` mirrors the output order (horizontal flip).
// Storage comes from `start` and `w`, grown as needed.
AxisTaps ComputeAxisTaps(double b0, double b1, int limit, int out, bool reverse,
                         std::vector<int32_t>& start, std::vector<float>& w);

enum class Kernel {
  kAuto,      // the fastest this CPU supports
  kPortable,  // plain C++ (what non-x86 builds use)
  kAvx2,      // x86-64 with AVX2 and FMA
};

// Whether `k` can run on this CPU.
bool KernelSupported(Kernel k);

// ResizeToCHW with a chosen kernel (kAuto: what ResizeToCHW uses).
void ResizeToCHWWith(Kernel kernel, const image::Region& region, const OutputSpec& spec,
                     bool flip, void* dst, Scratch& scratch);

}  // namespace stoker::transform::internal
