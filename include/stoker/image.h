// Single-image entry points to the loader's per-sample path: for C++ users
// who decode outside a Loader, and for tests that compare stoker's pixels
// with a reference decoder.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "stoker/options.h"
#include "stoker/status.h"

namespace stoker {

struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;  // RGB8, height x width x 3
};

// Decodes a whole JPEG or PNG at full scale (libjpeg's default ISLOW IDCT and
// fancy upsampling, as Pillow does). Errors say why; callers add the URI.
Result<Image> DecodeImage(std::span<const uint8_t> bytes, int64_t max_pixels = 178956970);

// The crop (in source pixels) and flip a Loader with `transform` and `seed`
// takes for a width x height source at global `position` of `epoch`.
struct CropParams {
  double x = 0, y = 0, w = 0, h = 0;
  bool flip = false;
};
CropParams SampleCropParams(int width, int height, const TransformOptions& transform,
                            uint64_t seed, int64_t epoch, uint64_t position);

// Exactly what a Loader writes for one sample: 3 x size x size, uint8 or
// (normalize) float32, as raw bytes.
Result<std::vector<uint8_t>> TransformImage(std::span<const uint8_t> bytes,
                                            const TransformOptions& transform, uint64_t seed,
                                            int64_t epoch, uint64_t position,
                                            int64_t max_pixels = 178956970);

}  // namespace stoker
