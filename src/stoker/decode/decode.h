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

#include "stoker/image/geometry.h"
#include "stoker/status.h"

namespace stoker::decode {

// The geometry types (stoker/image/geometry.h), under the names the
// decoder's API has always used.
using image::ImageView;
using image::Rect;
using image::Region;

// Chooses the crop from the full source dimensions; called once the header
// has been read. Must return a rect inside [0, width] x [0, height].
using CropFn = std::function<Rect(int width, int height)>;

// A crop and the size it will be resampled to, both chosen from the full
// source dimensions (a Compose's output size may depend on them).
struct CropPlan {
  Rect crop;
  int out_w = 0;
  int out_h = 0;
};
using CropPlanFn = std::function<CropPlan(int width, int height)>;

// A single-channel 8-bit image (a segmentation mask's raw values).
struct MaskView {
  const uint8_t* data = nullptr;
  int width = 0;
  int height = 0;
  size_t stride = 0;
};

enum class Format { kUnknown, kJpeg, kPng };

// Detects the format from the leading bytes.
Format DetectFormat(std::span<const uint8_t> bytes);

class JpegRowIndex;
struct RowIndexRef;

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

  // DecodeRegion with the output size chosen with the crop (CropPlan).
  // Errors as DecodeRegion; a plan with a non-positive output size is
  // kInvalidArgument.
  Result<Region> DecodeRegion(std::span<const uint8_t> bytes, const CropPlanFn& plan,
                              const RowIndexRef& rows);

  // Decodes a segmentation mask PNG as its raw values, one byte a pixel:
  // palette indices of a palette PNG (the palette is not applied), the
  // values of a grayscale PNG (unscaled), of 1 to 8 bits. Anything else
  // (other formats, 16-bit samples, colour types) is kUnsupported naming what it is; corrupt or
  // truncated data kCorrupt; more than max_pixels kResourceExhausted. The
  // view stays valid until the next call.
  Result<MaskView> DecodeMask(std::span<const uint8_t> bytes);

  // Decodes the whole image at full scale (as Pillow would: ISLOW IDCT, fancy
  // upsampling). Same lifetime and errors as DecodeRegion.
  Result<ImageView> DecodeFull(std::span<const uint8_t> bytes);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stoker::decode
