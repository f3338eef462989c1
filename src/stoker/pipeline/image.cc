#include "stoker/image.h"

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
  return {p.crop.x, p.crop.y, p.crop.w, p.crop.h, p.flip};
}

Result<std::vector<uint8_t>> TransformImage(std::span<const uint8_t> bytes,
                                            const TransformOptions& transform, uint64_t seed,
                                            int64_t epoch, uint64_t position, int64_t max_pixels) {
  decode::Decoder decoder(
      decode::DecodeOptions{.max_pixels = max_pixels, .fast = transform.fast_decode});
  transform::Scratch scratch;
  std::vector<uint8_t> out(pipeline::SampleImageBytes(transform));
  STOKER_RETURN_IF_ERROR(
      pipeline::ProcessSample(bytes, transform, seed, epoch, position, decoder, scratch, out.data()));
  return out;
}

}  // namespace stoker
