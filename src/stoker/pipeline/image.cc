#include "stoker/image.h"

#include <algorithm>
#include <cstring>

#include "stoker/decode/decode.h"
#include "stoker/pipeline/sample.h"

namespace stoker {

Result<Image> DecodeImage(std::span<const uint8_t> bytes, int64_t max_pixels) {
  decode::Decoder decoder(decode::DecodeOptions{max_pixels});
  auto view = decoder.DecodeFull(bytes);
  if (!view.ok()) return view.status();
  Image img;
  img.width = view->width;
  img.height = view->height;
  const size_t row = static_cast<size_t>(img.width) * 3;
  img.pixels.resize(row * static_cast<size_t>(img.height));
  for (int y = 0; y < img.height; ++y) {
    std::memcpy(img.pixels.data() + row * y, view->data + view->stride * y, row);
  }
  return img;
}

CropParams SampleCropParams(int width, int height, const TransformOptions& transform,
                            uint64_t seed, int64_t epoch, uint64_t position) {
  auto p = pipeline::ComputeSampleParams(width, height, transform, seed, epoch, position);
  return {p.crop.x, p.crop.y, p.crop.w, p.crop.h, p.flip, p.vflip, p.out_w, p.out_h};
}

std::vector<double> SampleUniforms(uint64_t seed, int64_t epoch, uint64_t position, int n) {
  transform::SampleRng rng(seed, epoch, static_cast<int64_t>(position));
  std::vector<double> out(static_cast<size_t>(std::max(n, 0)));
  for (double& v : out) v = rng.Uniform();
  return out;
}

Result<ImageShape> TransformShape(const TransformOptions& transform) {
  STOKER_ASSIGN_OR_RETURN(transform::OutputShape s, transform::ComposeOutputShape(transform));
  return ImageShape{s.channels, s.height, s.width, s.is_float};
}

Result<std::vector<uint8_t>> TransformMask(std::span<const uint8_t> png,
                                           const TransformOptions& transform, uint64_t seed,
                                           int64_t epoch, uint64_t position, int image_width,
                                           int image_height, int64_t max_pixels) {
  STOKER_RETURN_IF_ERROR(transform::ComposeOutputShape(transform).status());
  decode::Decoder decoder(decode::DecodeOptions{.max_pixels = max_pixels});
  transform::Scratch scratch;
  std::vector<uint8_t> out(pipeline::MaskBytes(transform));
  STOKER_RETURN_IF_ERROR(pipeline::ProcessMask(png, transform, seed, epoch, position, image_width,
                                               image_height, decoder, scratch, out.data()));
  return out;
}

Result<std::vector<uint8_t>> TransformImage(std::span<const uint8_t> bytes,
                                            const TransformOptions& transform, uint64_t seed,
                                            int64_t epoch, uint64_t position, int64_t max_pixels) {
  decode::Decoder decoder(
      decode::DecodeOptions{.max_pixels = max_pixels, .fast = transform.fast_decode});
  STOKER_RETURN_IF_ERROR(transform::ComposeOutputShape(transform).status());
  transform::Scratch scratch;
  std::vector<uint8_t> out(pipeline::SampleImageBytes(transform));
  STOKER_RETURN_IF_ERROR(
      pipeline::ProcessSample(bytes, transform, seed, epoch, position, decoder, scratch, out.data()));
  return out;
}

}  // namespace stoker
