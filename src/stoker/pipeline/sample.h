// The per-sample path: encoded bytes -> decoded crop -> resized, flipped,
// CHW (normalised) pixels written straight into a batch slot.
#pragma once

#include <cstdint>
#include <span>

#include "stoker/decode/decode.h"
#include "stoker/decode/jpeg_rows.h"
#include "stoker/options.h"
#include "stoker/transform/sample_params.h"
#include "stoker/transform/transform.h"

namespace stoker::pipeline {

// Bytes one sample occupies in a batch's image buffer.
size_t SampleImageBytes(const TransformOptions& t);

// The crop (in source pixels) and flip the transform takes for a source of
// width x height at global position `position` of `epoch`: the random-draw
// contract, stoker/transform/sample_params.h.
using transform::ComputeSampleParams;
using transform::SampleParams;

// Decodes and transforms one sample into `dst` (SampleImageBytes(t) bytes).
// A pure function of (bytes, t, seed, epoch, position).
Status ProcessSample(std::span<const uint8_t> bytes, const TransformOptions& t, uint64_t seed,
                     int64_t epoch, uint64_t position, decode::Decoder& decoder,
                     transform::Scratch& scratch, void* dst,
                     const decode::RowIndexRef& rows = {});

}  // namespace stoker::pipeline
