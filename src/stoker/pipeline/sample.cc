#include "stoker/pipeline/sample.h"

#include <cstring>
#include <string>

namespace stoker::pipeline {
namespace {

Status ShapeMismatch(const transform::Planar& img, const transform::OutputShape& want) {
  return Internal("transform produced " + std::to_string(img.channels) + "x" +
                  std::to_string(img.height) + "x" + std::to_string(img.width) + ", expected " +
                  std::to_string(want.channels) + "x" + std::to_string(want.height) + "x" +
                  std::to_string(want.width));
}

}  // namespace

size_t SampleImageBytes(const TransformOptions& t) {
  auto shape = transform::ComposeOutputShape(t);
  return shape.ok() ? shape->bytes() : 0;
}

size_t MaskBytes(const TransformOptions& t) {
  auto shape = transform::ComposeOutputShape(t);
  return shape.ok() ? static_cast<size_t>(shape->height) * shape->width : 0;
}

Status ProcessSample(std::span<const uint8_t> bytes, const TransformOptions& t, uint64_t seed,
                     int64_t epoch, uint64_t position, decode::Decoder& decoder,
                     transform::Scratch& scratch, void* dst, const decode::RowIndexRef& rows,
                     SourceInfo* source) {
  const std::span<const TransformOp> ops = transform::OpsOf(t, scratch);
  transform::SampleRng rng(seed, epoch, static_cast<int64_t>(position));
  transform::FusedPrefix prefix;
  auto plan = [&](int w, int h) {
    prefix = transform::PlanFusedPrefix(ops, w, h, rng);
    return decode::CropPlan{prefix.crop, prefix.out_w, prefix.out_h};
  };
  auto region = decoder.DecodeRegion(bytes, decode::CropPlanFn(plan), rows);
  if (!region.ok()) return region.status();
  if (source != nullptr) *source = SourceInfo{region->source_width, region->source_height};
  const transform::OutputFormat format = transform::OutputFormatOf(ops);
  transform::OutputSpec spec;
  spec.width = prefix.out_w;
  spec.height = prefix.out_h;
  spec.vflip = prefix.vflip;
  if (transform::OnlyOutputOps(ops, prefix.next_op)) {
    // The resampler writes the batch slot (the presets' path).
    spec.normalize = format.is_float;
    spec.scale_values = format.scale_values;
    spec.mean = format.mean;
    spec.std = format.std;
    transform::ResizeToCHW(*region, spec, prefix.hflip, dst, scratch);
    return Status::Ok();
  }
  const size_t plane = static_cast<size_t>(prefix.out_w) * prefix.out_h;
  if (scratch.planes[0].size() < 3 * plane) scratch.planes[0].resize(3 * plane);
  transform::ResizeToCHW(*region, spec, prefix.hflip, scratch.planes[0].data(), scratch);
  transform::Planar img{scratch.planes[0].data(), 3, prefix.out_h, prefix.out_w};
  STOKER_RETURN_IF_ERROR(transform::ApplyOps(ops, prefix.next_op, img, rng, false, scratch));
  auto want = transform::OpsOutputShape(ops);
  if (!want.ok()) return want.status();
  if (img.channels != want->channels || img.height != want->height ||
      img.width != want->width) {
    return ShapeMismatch(img, *want);
  }
  transform::WriteOutput(img, format, dst);
  return Status::Ok();
}

Status ProcessMask(std::span<const uint8_t> png_bytes, const TransformOptions& t, uint64_t seed,
                   int64_t epoch, uint64_t position, int image_width, int image_height,
                   decode::Decoder& decoder, transform::Scratch& scratch, void* dst) {
  STOKER_ASSIGN_OR_RETURN(decode::MaskView mask, decoder.DecodeMask(png_bytes));
  if (mask.width != image_width || mask.height != image_height) {
    return InvalidArgument("mask is " + std::to_string(mask.width) + "x" +
                           std::to_string(mask.height) + ", image is " +
                           std::to_string(image_width) + "x" + std::to_string(image_height));
  }
  const std::span<const TransformOp> ops = transform::OpsOf(t, scratch);
  transform::SampleRng rng(seed, epoch, static_cast<int64_t>(position));
  const transform::FusedPrefix prefix =
      transform::PlanFusedPrefix(ops, image_width, image_height, rng);
  // The whole mask as one plane, then the prefix's box by nearest neighbour
  // and its flips, then the other ops' geometry.
  const size_t n = static_cast<size_t>(mask.width) * mask.height;
  if (scratch.planes[0].size() < n) scratch.planes[0].resize(n);
  for (int y = 0; y < mask.height; ++y) {
    std::memcpy(scratch.planes[0].data() + static_cast<size_t>(y) * mask.width,
                mask.data + static_cast<size_t>(y) * mask.stride, mask.width);
  }
  transform::Planar img{scratch.planes[0].data(), 1, mask.height, mask.width};
  transform::ResizeMaskNearest(img, prefix.crop, prefix.out_w, prefix.out_h,
                                         prefix.hflip, prefix.vflip, scratch);
  STOKER_RETURN_IF_ERROR(transform::ApplyOps(ops, prefix.next_op, img, rng, true, scratch));
  auto want = transform::OpsOutputShape(ops);
  if (!want.ok()) return want.status();
  if (img.height != want->height || img.width != want->width) {
    return ShapeMismatch(img, transform::OutputShape{1, want->height, want->width, false});
  }
  std::memcpy(dst, img.data, static_cast<size_t>(img.height) * img.width);
  return Status::Ok();
}

}  // namespace stoker::pipeline
