// Pure image kernels for the sample path: the fused resize + flip +
// HWC->CHW (+ normalise) that writes straight into a batch. Which crop and
// flip a sample gets (the random draws and crop geometry) is
// sample_params.h, included here for the callers of both.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "stoker/base/large_alloc.h"
#include "stoker/image/geometry.h"
#include "stoker/transform/sample_params.h"

namespace stoker::transform {

struct OutputSpec {
  int size = 224;          // output is size x size, unless width and height are set
  int width = 0;           // > 0: output columns (instead of size)
  int height = 0;          // > 0: output rows (instead of size)
  bool vflip = false;      // mirror the output vertically
  bool normalize = false;  // false: uint8; true: float32 (x/255 - mean) / std
  bool scale_values = true;  // normalize: x/255 (true) or x (false) before mean/std
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
  // Compose (compose.h): images between ops, an interleaved copy for the
  // resampler, float rows for blur and colour ops, a preset's op list.
  std::vector<uint8_t, LargeAllocator<uint8_t>> planes[2];
  std::vector<uint8_t, LargeAllocator<uint8_t>> hwc;
  std::vector<float> floats;
  std::vector<TransformOp> ops;  // a preset's ops (OpsOf), for ops_key
  TransformOptions ops_key;
  bool ops_valid = false;
};

// Resizes `region.crop` of `region.image` to spec.size x spec.size (or
// spec.width x spec.height) with
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
void ResizeToCHW(const image::Region& region, const OutputSpec& spec, bool flip, void* dst,
                 Scratch& scratch);

}  // namespace stoker::transform
