#include "stoker/decode/decode.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include "stoker/decode/decode_internal.h"

namespace stoker::decode {
namespace {

constexpr uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};

std::string HexPrefix(std::span<const uint8_t> bytes) {
  std::string s;
  const size_t n = bytes.size() < 8 ? bytes.size() : 8;
  for (size_t i = 0; i < n; ++i) {
    char buf[4];
    std::snprintf(buf, sizeof buf, i ? " %02x" : "%02x", bytes[i]);
    s += buf;
  }
  return s;
}

}  // namespace

Format DetectFormat(std::span<const uint8_t> bytes) {
  // JPEG: SOI (FF D8). Pillow also wants the next marker's FF, but a file cut
  // right after SOI is a truncated JPEG, not an unknown format.
  if (bytes.size() >= 2 && bytes[0] == 0xFF && bytes[1] == 0xD8 &&
      (bytes.size() == 2 || bytes[2] == 0xFF)) {
    return Format::kJpeg;
  }
  // PNG: the 8-byte signature; a file cut inside the signature (at least 4
  // bytes of it) is still a (truncated) PNG.
  if (bytes.size() >= 4) {
    const size_t n = bytes.size() < 8 ? bytes.size() : 8;
    if (std::memcmp(bytes.data(), kPngSignature, n) == 0) return Format::kPng;
  }
  return Format::kUnknown;
}

namespace internal {

uint8_t* ScratchBuffer::Get(size_t n) {
  if (n == 0) n = 1;
  constexpr size_t kShrinkAbove = size_t{32} << 20;  // 32 MiB
  constexpr int kShrinkAfter = 16;                   // consecutive small uses
  const size_t capacity = data_.size();
  bool reallocate = n > capacity;
  if (!reallocate && capacity > kShrinkAbove && n < capacity / 4) {
    reallocate = ++small_uses_ >= kShrinkAfter;
  } else {
    small_uses_ = 0;
  }
  if (reallocate) {
    // Free first: never hold the old and the new block at once.
    std::vector<uint8_t, LargeAllocator<uint8_t>>().swap(data_);
    data_.resize(n);  // default-initialised: not zeroed
    small_uses_ = 0;
  }
  return data_.data();
}

Result<Rect> ClampCrop(Rect r, int width, int height) {
  if (!std::isfinite(r.x) || !std::isfinite(r.y) || !std::isfinite(r.w) ||
      !std::isfinite(r.h)) {
    return InvalidArgument("crop rectangle is not finite");
  }
  double x0 = std::fmax(0.0, r.x), y0 = std::fmax(0.0, r.y);
  double x1 = std::fmin(static_cast<double>(width), r.x + r.w);
  double y1 = std::fmin(static_cast<double>(height), r.y + r.h);
  if (!(x1 > x0) || !(y1 > y0)) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "crop (x=%g y=%g w=%g h=%g) is empty or outside the %dx%d image",
                  r.x, r.y, r.w, r.h, width, height);
    return InvalidArgument(buf);
  }
  return Rect{x0, y0, x1 - x0, y1 - y0};
}

Status TooManyPixels(int64_t width, int64_t height, int64_t max_pixels) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "image is %lldx%lld (%lld pixels), more than max_pixels (%lld)",
                static_cast<long long>(width), static_cast<long long>(height),
                static_cast<long long>(width * height), static_cast<long long>(max_pixels));
  return ResourceExhausted(buf);
}

}  // namespace internal

struct Decoder::Impl {
  DecodeOptions options;
  std::unique_ptr<internal::JpegDecoder> jpeg;  // created on first JPEG
  std::unique_ptr<internal::PngDecoder> png;    // created on first PNG

  Result<Region> Decode(const internal::DecodeRequest& req) {
    if (req.bytes.empty()) return Corrupt("empty file");
    try {
      switch (DetectFormat(req.bytes)) {
        case Format::kJpeg:
          if (!jpeg) jpeg = std::make_unique<internal::JpegDecoder>();
          return jpeg->Decode(req);
        case Format::kPng:
          if (!png) png = std::make_unique<internal::PngDecoder>();
          return png->Decode(req);
        case Format::kUnknown:
          break;
      }
    } catch (const std::bad_alloc&) {
      return ResourceExhausted("out of memory while decoding the image");
    }
    return Unsupported("not a JPEG or PNG image (starts with " + HexPrefix(req.bytes) + ")");
  }
};

Decoder::Decoder(DecodeOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
}

Decoder::~Decoder() = default;

Result<Region> Decoder::DecodeRegion(std::span<const uint8_t> bytes, const CropFn& crop, int out_w,
                                     int out_h) {
  return DecodeRegion(bytes, crop, out_w, out_h, RowIndexRef{});
}

Result<Region> Decoder::DecodeRegion(std::span<const uint8_t> bytes, const CropFn& crop, int out_w,
                                     int out_h, const RowIndexRef& rows) {
  if (!crop) return InvalidArgument("DecodeRegion: no crop function");
  if (out_w <= 0 || out_h <= 0) {
    return InvalidArgument("DecodeRegion: output size must be positive, got " +
                           std::to_string(out_w) + "x" + std::to_string(out_h));
  }
  internal::DecodeRequest req;
  req.bytes = bytes;
  req.crop = &crop;
  req.out_w = out_w;
  req.out_h = out_h;
  req.max_pixels = impl_->options.max_pixels;
  req.fast = impl_->options.fast;
  req.rows = rows;
  return impl_->Decode(req);
}

Result<Region> Decoder::DecodeRegion(std::span<const uint8_t> bytes, const CropPlanFn& plan,
                                     const RowIndexRef& rows) {
  if (!plan) return InvalidArgument("DecodeRegion: no crop plan function");
  int planned[2] = {1, 1};
  int asked[2] = {1, 1};
  bool bad_size = false;
  CropFn crop = [&](int w, int h) {
    CropPlan p = plan(w, h);
    planned[0] = p.out_w;
    planned[1] = p.out_h;
    if (p.out_w <= 0 || p.out_h <= 0) {
      bad_size = true;
      asked[0] = p.out_w;
      asked[1] = p.out_h;
      planned[0] = planned[1] = 1;
    }
    return p.crop;
  };
  internal::DecodeRequest req;
  req.bytes = bytes;
  req.crop = &crop;
  req.out_w = 1;
  req.out_h = 1;
  req.planned_out = planned;
  req.max_pixels = impl_->options.max_pixels;
  req.fast = impl_->options.fast;
  req.rows = rows;
  auto region = impl_->Decode(req);
  if (region.ok() && bad_size) {
    return InvalidArgument("DecodeRegion: output size must be positive, got " +
                           std::to_string(asked[0]) + "x" + std::to_string(asked[1]));
  }
  return region;
}

Result<MaskView> Decoder::DecodeMask(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return Corrupt("empty file");
  if (DetectFormat(bytes) != Format::kPng) {
    return Unsupported("a mask must be a PNG (palette or 8-bit grayscale); this file starts with " +
                       HexPrefix(bytes));
  }
  try {
    if (!impl_->png) impl_->png = std::make_unique<internal::PngDecoder>();
    return impl_->png->DecodeMask(bytes, impl_->options.max_pixels);
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("out of memory while decoding the mask");
  }
}

Result<ImageView> Decoder::DecodeFull(std::span<const uint8_t> bytes) {
  internal::DecodeRequest req;
  req.bytes = bytes;
  req.max_pixels = impl_->options.max_pixels;
  STOKER_ASSIGN_OR_RETURN(Region region, impl_->Decode(req));
  return region.image;
}

}  // namespace stoker::decode
