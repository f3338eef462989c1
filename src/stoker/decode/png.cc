// PNG decoding with libspng, always to RGB8 and always the whole image.
//
// Conversions (Pillow's Image.open(f).convert("RGB") is the reference):
// - gray 1/2/4/8-bit: replicated to R=G=B, low depths scaled to 0..255;
// - palette: looked up; tRNS ignored;
// - gray+alpha, RGBA: alpha dropped (not composited), tRNS ignored;
// - 16-bit RGB, RGBA, gray+alpha: the high byte of each sample, as Pillow's
//   "RGB;16B" / "RGBA;16B" / "LA;16B" unpackers do;
// - 16-bit gray: the high byte too. Here Pillow differs on purpose: it opens
//   the file as mode "I;16" and convert("RGB") clamps values above 255 to
//   255, so most 16-bit gray images come out white. We scale instead.
// - gAMA, sBIT, iCCP and cHRM are ignored (Pillow ignores them too).

#include <spng.h>

#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

#include "stoker/decode/decode_internal.h"

namespace stoker::decode::internal {
namespace {

// Caps on what ancillary chunks may make libspng allocate: a single chunk
// (also the inflated size of zTXt/iTXt/iCCP) and all stored chunks together.
// Image data (IDAT) is streamed and is bounded by max_pixels instead.
constexpr size_t kMaxChunkBytes = size_t{16} << 20;
constexpr size_t kMaxChunkCacheBytes = size_t{64} << 20;

struct CtxDeleter {
  void operator()(spng_ctx* ctx) const { spng_ctx_free(ctx); }
};

Status PngError(int code, const char* what) {
  std::string msg = std::string(what) + ": " + spng_strerror(code);
  switch (code) {
    case SPNG_EMEM:
    case SPNG_EUSER_WIDTH:
    case SPNG_EUSER_HEIGHT:
    case SPNG_ECHUNK_LIMITS:
    case SPNG_EOVERFLOW:
      return ResourceExhausted(std::move(msg));
    case SPNG_IO_EOF:  // the buffer ended (libspng says "end of stream")
    case SPNG_EOF:
    case SPNG_EIDAT_TOO_SHORT:
      return Corrupt("truncated PNG data (" + std::string(spng_strerror(code)) + ")");
    case SPNG_EINTERNAL:
    case SPNG_EFMT:
    case SPNG_EFLAGS:
    case SPNG_EBUFSIZ:
    case SPNG_EBADSTATE:
    case SPNG_EOPSTATE:
      return Internal(std::move(msg));
    default:
      return Corrupt(std::move(msg));
  }
}

}  // namespace

PngDecoder::PngDecoder() = default;
PngDecoder::~PngDecoder() = default;

Result<Region> PngDecoder::Decode(const DecodeRequest& req) {
  std::unique_ptr<spng_ctx, CtxDeleter> ctx(spng_ctx_new(0));
  if (!ctx) return ResourceExhausted("out of memory creating a PNG decoder");
  spng_ctx* c = ctx.get();

  // Per-dimension limit: no side may exceed max_pixels (libspng's own
  // ceiling is 2^31 - 1).
  uint32_t dim_limit = std::numeric_limits<int32_t>::max();
  if (req.max_pixels > 0 && req.max_pixels < int64_t{dim_limit}) {
    dim_limit = static_cast<uint32_t>(req.max_pixels);
  }
  int rc = spng_set_image_limits(c, dim_limit, dim_limit);
  if (rc == 0) rc = spng_set_chunk_limits(c, kMaxChunkBytes, kMaxChunkCacheBytes);
  if (rc == 0) rc = spng_set_png_buffer(c, req.bytes.data(), req.bytes.size());
  if (rc != 0) return PngError(rc, "PNG setup");

  spng_ihdr ihdr;
  rc = spng_get_ihdr(c, &ihdr);
  if (rc == SPNG_EUSER_WIDTH || rc == SPNG_EUSER_HEIGHT) {
    // A side longer than max_pixels: read the declared size for the message.
    if (req.bytes.size() >= 24) {
      auto be32 = [&](size_t at) {
        return (uint32_t{req.bytes[at]} << 24) | (uint32_t{req.bytes[at + 1]} << 16) |
               (uint32_t{req.bytes[at + 2]} << 8) | uint32_t{req.bytes[at + 3]};
      };
      return TooManyPixels(be32(16), be32(20), req.max_pixels);
    }
    return PngError(rc, "invalid PNG header");
  }
  if (rc != 0) return PngError(rc, "invalid PNG header");

  const int64_t width = ihdr.width, height = ihdr.height;
  if (req.max_pixels > 0 && width * height > req.max_pixels) {
    return TooManyPixels(width, height, req.max_pixels);
  }
  // Anything that passes the check above (or has no limit) still has to fit
  // ImageView's int dimensions and 3 * width * height bytes.
  if (width > std::numeric_limits<int>::max() || height > std::numeric_limits<int>::max()) {
    return TooManyPixels(width, height, std::numeric_limits<int>::max());
  }

  Rect crop{0, 0, static_cast<double>(width), static_cast<double>(height)};
  if (req.crop != nullptr) {
    STOKER_ASSIGN_OR_RETURN(
        crop, ClampCrop((*req.crop)(static_cast<int>(width), static_cast<int>(height)),
                        static_cast<int>(width), static_cast<int>(height)));
  }

  size_t size = 0;
  rc = spng_decoded_image_size(c, SPNG_FMT_RGB8, &size);
  if (rc != 0) return PngError(rc, "PNG");
  const size_t stride = static_cast<size_t>(width) * 3;
  if (size != stride * static_cast<size_t>(height)) {
    return Internal("unexpected decoded PNG size");
  }
  uint8_t* out = out_.Get(size);

  if (ihdr.bit_depth == 16 && ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE) {
    // libspng's RGB8 conversion of 16-bit gray is not documented; decode
    // the samples (host-endian with SPNG_FMT_PNG) and take the high byte.
    size_t raw_size = 0;
    rc = spng_decoded_image_size(c, SPNG_FMT_PNG, &raw_size);
    if (rc != 0) return PngError(rc, "PNG");
    uint8_t* raw = tmp_.Get(raw_size);
    rc = spng_decode_image(c, raw, raw_size, SPNG_FMT_PNG, 0);
    if (rc != 0) return PngError(rc, "invalid PNG data");
    const size_t n = static_cast<size_t>(width) * static_cast<size_t>(height);
    for (size_t i = 0; i < n; ++i) {
      uint16_t v;
      std::memcpy(&v, raw + 2 * i, 2);
      const auto b = static_cast<uint8_t>(v >> 8);
      out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = b;
    }
  } else {
    rc = spng_decode_image(c, out, size, SPNG_FMT_RGB8, 0);
    if (rc != 0) return PngError(rc, "invalid PNG data");
  }

  Region region;
  region.image = ImageView{out, static_cast<int>(width), static_cast<int>(height), stride};
  region.crop = crop;
  region.source_width = static_cast<int>(width);
  region.source_height = static_cast<int>(height);
  region.scale_denom = 1;
  return region;
}

Result<MaskView> PngDecoder::DecodeMask(std::span<const uint8_t> bytes, int64_t max_pixels) {
  std::unique_ptr<spng_ctx, CtxDeleter> ctx(spng_ctx_new(0));
  if (!ctx) return ResourceExhausted("out of memory creating a PNG decoder");
  spng_ctx* c = ctx.get();
  uint32_t dim_limit = std::numeric_limits<int32_t>::max();
  if (max_pixels > 0 && max_pixels < int64_t{dim_limit}) {
    dim_limit = static_cast<uint32_t>(max_pixels);
  }
  int rc = spng_set_image_limits(c, dim_limit, dim_limit);
  if (rc == 0) rc = spng_set_chunk_limits(c, kMaxChunkBytes, kMaxChunkCacheBytes);
  if (rc == 0) rc = spng_set_png_buffer(c, bytes.data(), bytes.size());
  if (rc != 0) return PngError(rc, "PNG setup");
  spng_ihdr ihdr;
  rc = spng_get_ihdr(c, &ihdr);
  if (rc != 0) return PngError(rc, "invalid PNG header");
  const int64_t width = ihdr.width, height = ihdr.height;
  if (max_pixels > 0 && width * height > max_pixels) {
    return TooManyPixels(width, height, max_pixels);
  }
  const bool palette = ihdr.color_type == SPNG_COLOR_TYPE_INDEXED;
  const bool gray = ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE;
  const int depth = ihdr.bit_depth;
  if (!(palette || gray) || depth > 8) {
    static const char* kTypes[] = {"grayscale", "?", "RGB", "palette", "grayscale+alpha", "?",
                                   "RGBA"};
    const char* type = ihdr.color_type <= 6 ? kTypes[ihdr.color_type] : "?";
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "mask PNG is %s with %d-bit samples; a mask must be a palette or grayscale PNG "
                  "of at most 8 bits (one value per pixel)",
                  type, depth);
    return Unsupported(buf);
  }
  size_t size = 0;
  rc = spng_decoded_image_size(c, SPNG_FMT_PNG, &size);
  if (rc != 0) return PngError(rc, "PNG");
  // SPNG_FMT_PNG: the samples as stored (palette indices, not colours;
  // gray values unscaled), rows packed below 8 bits.
  const size_t row_bytes = (static_cast<size_t>(width) * depth + 7) / 8;
  if (size != row_bytes * static_cast<size_t>(height)) {
    return Internal("unexpected decoded mask size");
  }
  const size_t pixels = static_cast<size_t>(width) * static_cast<size_t>(height);
  uint8_t* out = out_.Get(depth == 8 ? size : size + pixels);
  uint8_t* packed = depth == 8 ? out : out + pixels;
  rc = spng_decode_image(c, packed, size, SPNG_FMT_PNG, 0);
  if (rc != 0) return PngError(rc, "invalid PNG data");
  if (depth < 8) {
    // One value per byte, most significant bits first (PNG's order).
    const int per_byte = 8 / depth;
    const unsigned mask = (1u << depth) - 1;
    for (int64_t y = 0; y < height; ++y) {
      const uint8_t* src = packed + static_cast<size_t>(y) * row_bytes;
      uint8_t* dst = out + static_cast<size_t>(y) * static_cast<size_t>(width);
      for (int64_t x = 0; x < width; ++x) {
        const int shift = 8 - depth * (static_cast<int>(x % per_byte) + 1);
        dst[x] = static_cast<uint8_t>((src[x / per_byte] >> shift) & mask);
      }
    }
  }
  return MaskView{out, static_cast<int>(width), static_cast<int>(height),
                  static_cast<size_t>(width)};
}

}  // namespace stoker::decode::internal
