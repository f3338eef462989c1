// Transforms by composition (TransformOptions::Kind::kCompose): torchvision
// v2's ops, validated once (ComposeOutputShape) and run per sample.
//
// A sample runs in three parts:
//   1. the fused prefix (PlanFusedPrefix): the leading crops, at most one
//      resize and the flips, folded into one source rectangle, one output
//      size and two flips. The decoder decodes only that rectangle (at the
//      smallest DCT scale that still covers the output size) and ResizeToCHW
//      resamples it once. A crop that needs padding, a second resize, or any
//      other op ends the prefix.
//   2. the other ops, in order, on a planar uint8 image (Planar) in the
//      thread's Scratch (ApplyOps).
//   3. the write into the batch slot: uint8, or float32 (ToDtype, Normalize).
// When nothing but ToDtype/Normalize follows the prefix, parts 2 and 3 are
// the resampler writing the batch slot directly (the presets' path).
//
// Randomness: every op draws from the sample's SampleRng in op order
// (docs/transforms.md, Randomness); a mask replays the same draws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "stoker/image/geometry.h"
#include "stoker/options.h"
#include "stoker/status.h"
#include "stoker/transform/sample_params.h"
#include "stoker/transform/transform.h"

namespace stoker::transform {

// torchvision's class name of an op ("RandomResizedCrop").
const char* OpName(TransformOp::Type type);

// The ops `t` runs: t.ops for kCompose; for the presets their equivalent
// Compose (kTrain: RandomResizedCrop, RandomHorizontalFlip; kVal:
// Resize(round(size / center_fraction)), CenterCrop(size); with normalize,
// ToDtype(float32, scale=True), Normalize(mean, std)).
std::vector<TransformOp> ExpandOps(const TransformOptions& t);

// What every sample of a transform comes out as.
struct OutputShape {
  int channels = 3;
  int height = 0;
  int width = 0;
  bool is_float = false;  // float32, else uint8
  size_t bytes() const {
    return static_cast<size_t>(channels) * height * width * (is_float ? 4 : 1);
  }
};

// Validates the ops' arguments (kInvalidArgument naming the op, its index
// and the argument) and that every sample has the same shape (a batch is one
// tensor): a Compose whose output size depends on the image (Resize(int)
// with no crop after it) is refused, suggesting a crop or Resize((h, w)).
Result<OutputShape> ComposeOutputShape(const TransformOptions& t);
// The same for an op list (no allocation unless it fails).
Result<OutputShape> OpsOutputShape(std::span<const TransformOp> ops);

// The ops of `t` without allocating in the steady state: a Compose's own
// list, or the preset's, built once in the thread's scratch.
std::span<const TransformOp> OpsOf(const TransformOptions& t, Scratch& scratch);

// The fused prefix of `ops` for a width x height source: the rectangle of
// the source (in source pixels, fractional after a resize) resampled to
// out_w x out_h, then mirrored; ops [0, next_op) are done. Draws the
// prefix's random numbers from `rng` in op order.
struct FusedPrefix {
  image::Rect crop;
  int out_w = 0;
  int out_h = 0;
  bool hflip = false;
  bool vflip = false;
  size_t next_op = 0;
};
FusedPrefix PlanFusedPrefix(std::span<const TransformOp> ops, int width, int height,
                            SampleRng& rng);

// An image between ops: `channels` planes of height x width bytes.
struct Planar {
  uint8_t* data = nullptr;
  int channels = 0;
  int height = 0;
  int width = 0;
  size_t plane() const { return static_cast<size_t>(height) * width; }
};

// Runs ops [first, ops.size()) but ToDtype and Normalize on `img` (which
// points into scratch.planes[0] or [1]; the result may be in either).
// mask: geometry only, nearest-neighbour resampling, padding with 0; the
// colour ops still draw their numbers (so an image and its mask stay in
// step) but change nothing. Errors (kInvalidArgument) name the op: a crop
// larger than the image without padding, reflect padding wider than the
// image.
Status ApplyOps(std::span<const TransformOp> ops, size_t first, Planar& img, SampleRng& rng,
                bool mask, Scratch& scratch);

// A mask's geometry for the fused prefix: nearest neighbour (the source
// pixel under each output pixel's centre) of `box`, then the flips.
void ResizeMaskNearest(Planar& img, const image::Rect& box, int out_w, int out_h, bool hflip,
                       bool vflip, Scratch& scratch);

// The output format the trailing ToDtype/Normalize give: whether float32,
// and the OutputSpec's scale_values/mean/std for up to 3 channels.
struct OutputFormat {
  bool is_float = false;
  bool scale_values = true;
  std::array<float, 3> mean = {0, 0, 0};
  std::array<float, 3> std = {1, 1, 1};
};
OutputFormat OutputFormatOf(std::span<const TransformOp> ops);

// True when ops [first, end) are only ToDtype and Normalize (the prefix's
// resampler can write the batch slot itself).
bool OnlyOutputOps(std::span<const TransformOp> ops, size_t first);

// Writes `img` to dst as uint8 CHW or float32 CHW (q * s - mean) / std.
void WriteOutput(const Planar& img, const OutputFormat& f, void* dst);

}  // namespace stoker::transform
