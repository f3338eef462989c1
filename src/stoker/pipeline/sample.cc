#include "stoker/pipeline/sample.h"

namespace stoker::pipeline {

size_t SampleImageBytes(const TransformOptions& t) {
  return size_t{3} * static_cast<size_t>(t.size) * static_cast<size_t>(t.size) *
         (t.normalize ? sizeof(float) : sizeof(uint8_t));
}

Status ProcessSample(std::span<const uint8_t> bytes, const TransformOptions& t, uint64_t seed,
                     int64_t epoch, uint64_t position, decode::Decoder& decoder,
                     transform::Scratch& scratch, void* dst, const decode::RowIndexRef& rows) {
  bool flip = false;
  auto crop = [&](int w, int h) {
    SampleParams p = ComputeSampleParams(w, h, t, seed, epoch, position);
    flip = p.flip;
    return p.crop;
  };
  auto region = decoder.DecodeRegion(bytes, crop, t.size, t.size, rows);
  if (!region.ok()) return region.status();
  transform::OutputSpec spec;
  spec.size = t.size;
  spec.normalize = t.normalize;
  spec.mean = t.mean;
  spec.std = t.std;
  transform::ResizeToCHW(*region, spec, flip, dst, scratch);
  return Status::Ok();
}

}  // namespace stoker::pipeline
