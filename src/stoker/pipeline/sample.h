// The per-sample path: encoded bytes -> decoded crop -> resized, flipped,
// CHW (normalised) pixels written straight into a batch slot; and a
// segmentation mask given the same geometry.
#pragma once

#include <cstdint>
#include <span>

#include "stoker/decode/decode.h"
#include "stoker/decode/jpeg_rows.h"
#include "stoker/options.h"
#include "stoker/transform/compose.h"
#include "stoker/transform/sample_params.h"
#include "stoker/transform/transform.h"

namespace stoker::pipeline {

// Bytes one sample occupies in a batch's image buffer (0 for a transform
// that ComposeOutputShape refuses; Loader::Open refuses it first).
size_t SampleImageBytes(const TransformOptions& t);

// The crop (in source pixels) and flip the transform takes for a source of
// width x height at global position `position` of `epoch`: the random-draw
// contract, stoker/transform/sample_params.h.
using transform::ComputeSampleParams;
using transform::SampleParams;

// What ProcessSample decoded: the source image's size (before any crop).
struct SourceInfo {
  int width = 0;
  int height = 0;
};

// Decodes and transforms one sample into `dst` (SampleImageBytes(t) bytes).
// A pure function of (bytes, t, seed, epoch, position). `source`, when
// given, receives the decoded image's size (to check a mask against it).
// Errors: the decoder's, and an op's (kInvalidArgument naming the op) when
// the image has a shape it cannot take.
Status ProcessSample(std::span<const uint8_t> bytes, const TransformOptions& t, uint64_t seed,
                     int64_t epoch, uint64_t position, decode::Decoder& decoder,
                     transform::Scratch& scratch, void* dst,
                     const decode::RowIndexRef& rows = {}, SourceInfo* source = nullptr);

// Bytes one mask occupies: 1 x H x W uint8, the image's output H x W.
size_t MaskBytes(const TransformOptions& t);

// Decodes a segmentation mask PNG (palette indices or 8-bit gray values,
// Decoder::DecodeMask) and gives it the geometry the image at (seed, epoch,
// position) got: the same crops, resizes (nearest neighbour), flips and
// padding (with 0), the same random draws; no colour ops. Writes uint8
// 1 x H x W (MaskBytes(t)) to dst. image_width x image_height is the image's
// source size (ProcessSample's SourceInfo): a mask of another size is
// kInvalidArgument "mask is WxH, image is W'xH'".
Status ProcessMask(std::span<const uint8_t> png_bytes, const TransformOptions& t, uint64_t seed,
                   int64_t epoch, uint64_t position, int image_width, int image_height,
                   decode::Decoder& decoder, transform::Scratch& scratch, void* dst);

}  // namespace stoker::pipeline
