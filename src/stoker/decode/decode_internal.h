// Private to the decode module: the per-format decoders behind Decoder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "stoker/base/large_alloc.h"
#include "stoker/decode/decode.h"
#include "stoker/decode/jpeg_rows.h"
#include "stoker/status.h"

namespace stoker::decode::internal {

// A growable byte buffer that is reused across calls. It keeps its capacity
// (no allocation in the steady state) but gives memory back after one
// oversized image so that a rare huge sample does not pin memory in every
// thread for the rest of the run. Memory is not zeroed: a large block comes
// from mmap and only the pages actually written become resident, so a tiny
// hostile file that declares a big image and then ends costs address space,
// not RAM.
class ScratchBuffer {
 public:
  // Returns at least `n` writable bytes; previous contents are not kept.
  // Throws std::bad_alloc when memory is exhausted.
  uint8_t* Get(size_t n);
  size_t capacity() const { return data_.size(); }

 private:
  std::vector<uint8_t, LargeAllocator<uint8_t>> data_;
  int small_uses_ = 0;  // consecutive calls that needed far less than capacity
};

// What the caller wants decoded. `crop == nullptr` means the whole image at
// full scale (DecodeFull).
struct DecodeRequest {
  std::span<const uint8_t> bytes;
  const CropFn* crop = nullptr;
  int out_w = 0;
  int out_h = 0;
  int64_t max_pixels = 0;
  bool fast = false;  // JDCT_IFAST and plain upsampling (DecodeOptions::fast)
  RowIndexRef rows;   // where to remember and find MCU row starts (JPEG crops)
  // Set by the crop function of a CropPlanFn request: {out_w, out_h} that
  // replace out_w and out_h once the crop has been chosen.
  const int* planned_out = nullptr;
};

// Validates `r` against a width x height image: finite, non-empty, clamped
// into the image.
Result<Rect> ClampCrop(Rect r, int width, int height);

// Formats "WxH (N pixels) exceeds max_pixels (M)".
Status TooManyPixels(int64_t width, int64_t height, int64_t max_pixels);

// JPEG via libjpeg-turbo. A fresh jpeg_decompress_struct per image (a reused
// one would lend its tables to the next image); the output buffers are
// reused.
class JpegDecoder {
 public:
  JpegDecoder();
  ~JpegDecoder();
  JpegDecoder(const JpegDecoder&) = delete;
  JpegDecoder& operator=(const JpegDecoder&) = delete;

  Result<Region> Decode(const DecodeRequest& req);

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// PNG via libspng. A fresh spng context per image (spng contexts cannot be
// rewound); the output buffer is reused.
class PngDecoder {
 public:
  PngDecoder();
  ~PngDecoder();
  PngDecoder(const PngDecoder&) = delete;
  PngDecoder& operator=(const PngDecoder&) = delete;

  Result<Region> Decode(const DecodeRequest& req);
  // Decoder::DecodeMask.
  Result<MaskView> DecodeMask(std::span<const uint8_t> bytes, int64_t max_pixels);

 private:
  ScratchBuffer out_;
  ScratchBuffer tmp_;
};

}  // namespace stoker::decode::internal
