// Image decoding: JPEG (libjpeg-turbo) and PNG (libspng) to RGB8.
//
// The hot path is DecodeRegion: it decodes only the rows and columns a crop
// needs, at the smallest DCT scale (1, 1/2, 1/4, 1/8) whose output still
// covers the requested output size, so most of the image is never expanded.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "stoker/status.h"

namespace stoker::decode {

// A rectangle in pixel coordinates (fractional: scaling may make the edges of
// a crop fall between pixels).
struct Rect {
  double x = 0, y = 0, w = 0, h = 0;
};

// Chooses the crop from the full source dimensions; called once the header
// has been read. Must return a rect inside [0, width] x [0, height].
using CropFn = std::function<Rect(int width, int height)>;

enum class Format { kUnknown, kJpeg, kPng };

// Detects the format from the leading bytes.
Format DetectFormat(std::span<const uint8_t> bytes);

// An RGB8 image, rows `stride` bytes apart, pixels interleaved R, G, B.
struct ImageView {
  const uint8_t* data = nullptr;
  int width = 0;
  int height = 0;
  size_t stride = 0;
};

class JpegRowIndex;
struct RowIndexRef;

struct Region {
  // The decoded pixels: covers `crop` (possibly with a margin).
  ImageView image;
  // The requested crop, in `image`'s coordinates (already scaled by the DCT
  // factor and shifted by the decoded area's origin).
  Rect crop;
  int source_width = 0;   // the full image, before any scaling
  int source_height = 0;
  int scale_denom = 1;    // DCT scale used: 1, 2, 4 or 8
};

struct DecodeOptions {
  // Refuse images with more pixels than this before allocating (0: no limit).
  int64_t max_pixels = 178956970;
  // DecodeRegion only: libjpeg's fast integer IDCT (JDCT_IFAST), as FFCV's
  // TJFLAG_FASTDCT. About 7% less CPU per training sample; 46 dB PSNR
  // against Pillow instead of 55 dB (docs/transforms.md). DecodeFull always
  // decodes exactly as Pillow.
  bool fast = false;
};

// Holds decompressor state and scratch buffers; reuse one per thread.
// Not thread-safe.
class Decoder {
 public:
  explicit Decoder(DecodeOptions options = {});
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Decodes the part of `bytes` selected by `crop`, at the smallest DCT scale
  // at which the crop still measures at least out_w x out_h pixels (JPEG; PNG
  // is decoded whole). The returned view points into this Decoder's buffers
  // and stays valid until the next call.
  // Errors: kCorrupt (truncated or invalid data, empty input), kUnsupported
  // (not a JPEG/PNG, or an unsupported variant), kResourceExhausted (larger
  // than max_pixels). Messages say the reason; callers add the URI.
  //
  // With `rows` (jpeg_rows.h), what the index knows of the file lets
  // libjpeg decode only the crop's MCU rows and columns of a baseline JPEG,
  // or at least start at the crop's MCU row; the pixels are the same.
  Result<Region> DecodeRegion(std::span<const uint8_t> bytes, const CropFn& crop, int out_w,
                              int out_h);
  Result<Region> DecodeRegion(std::span<const uint8_t> bytes, const CropFn& crop, int out_w,
                              int out_h, const RowIndexRef& rows);

  // Decodes the whole image at full scale (as Pillow would: ISLOW IDCT, fancy
  // upsampling). Same lifetime and errors as DecodeRegion.
  Result<ImageView> DecodeFull(std::span<const uint8_t> bytes);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stoker::decode
