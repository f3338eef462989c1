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
  bool vflip = false;  // a Compose's vertical flip
  int out_w = 0;       // the size the crop is resampled to
  int out_h = 0;
};
CropParams SampleCropParams(int width, int height, const TransformOptions& transform,
                            uint64_t seed, int64_t epoch, uint64_t position);

// Exactly what a Loader writes for one sample: 3 x size x size, uint8 or
// (normalize) float32, as raw bytes.
// The first n Uniform() draws of the sample (seed, epoch, position): every
// op's random parameters come from these, in op order (docs/transforms.md,
// Randomness), so a test can re-derive them.
std::vector<double> SampleUniforms(uint64_t seed, int64_t epoch, uint64_t position, int n);

// What every sample of `transform` comes out as (channels x height x width,
// float32 or uint8), or why the transform is refused (as Loader::Open).
struct ImageShape {
  int channels = 3;
  int height = 0;
  int width = 0;
  bool is_float = false;
};
Result<ImageShape> TransformShape(const TransformOptions& transform);

// A segmentation mask (palette or grayscale PNG, 1-8 bits) given the geometry
// the image of image_width x image_height got at (seed, epoch, position):
// uint8, height x width of TransformShape.
Result<std::vector<uint8_t>> TransformMask(std::span<const uint8_t> png,
                                           const TransformOptions& transform, uint64_t seed,
                                           int64_t epoch, uint64_t position, int image_width,
                                           int image_height, int64_t max_pixels = 178956970);

Result<std::vector<uint8_t>> TransformImage(std::span<const uint8_t> bytes,
                                            const TransformOptions& transform, uint64_t seed,
                                            int64_t epoch, uint64_t position,
                                            int64_t max_pixels = 178956970);

}  // namespace stoker
