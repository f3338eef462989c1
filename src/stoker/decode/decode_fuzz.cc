// libFuzzer target: the image decode entry (JPEG and PNG), as DecodeImage
// and as the Loader's per-sample path (crop + DCT-scaled region decode,
// then resize/flip/normalise).
//
// Input: 4 control bytes, then the encoded image (tools/fuzz_seeds.py
// writes seeds in this layout).
//   byte 0: bit 0 fast_decode, bit 1 train (else val), bit 2 normalize,
//           bits 3-4 output size (8, 16, 32, 64)
//   bytes 1-3: the region crop's x, y and size as fractions of the image
//
// Checked beyond "no crash": every error has a code other than kInternal
// (which means a stoker bug) and a message; a decoded image has positive
// dimensions within kMaxPixels and exactly width * height * 3 bytes; a
// region lies inside its image; an image that decodes whole also decodes
// as a region and through the transform; a region decoded through a JPEG
// row index (a walk of the entropy-coded data, then a jump to a remembered
// row) is the region decoded from the top, pixel for pixel, or the same
// error; a JPEG rewritten for shards (RewriteWithRestarts) decodes to the
// original's pixels, whole and as the region (through the restart cut).

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>

#include "stoker/decode/decode.h"
#include "stoker/decode/jpeg_restart.h"
#include "stoker/decode/jpeg_rows.h"
#include "stoker/image.h"
#include "stoker/pipeline/sample.h"

namespace {

// Small enough that a hostile header cannot make one run take seconds;
// the limit is what is fuzzed, not its value.
constexpr int64_t kMaxPixels = int64_t{1} << 20;

[[noreturn]] void Fail(const char* what, const stoker::Status* st = nullptr) {
  std::fprintf(stderr, "decode_fuzz invariant broken: %s%s%s\n", what, st ? ": " : "",
               st ? st->ToString().c_str() : "");
  std::abort();
}

void CheckError(const stoker::Status& st) {
  if (st.ok()) Fail("error path returned OK");
  if (st.code() == stoker::StatusCode::kInternal) Fail("internal error", &st);
  if (st.message().empty()) Fail("error without a message", &st);
}

// Reads every byte of the view so that ASan sees any out-of-bounds row.
uint32_t Touch(const stoker::decode::ImageView& v) {
  uint32_t sum = 0;
  for (int y = 0; y < v.height; ++y) {
    const uint8_t* row = v.data + v.stride * static_cast<size_t>(y);
    for (size_t x = 0; x < static_cast<size_t>(v.width) * 3; ++x) sum += row[x];
  }
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const uint8_t flags = data[0];
  const double fx = data[1] / 255.0, fy = data[2] / 255.0, fs = (data[3] + 1) / 256.0;
  const std::span<const uint8_t> bytes(data + 4, size - 4);
  const bool fast = flags & 1;
  const int out_size = 8 << ((flags >> 3) & 3);

  // 1. The public full decode.
  auto full = stoker::DecodeImage(bytes, kMaxPixels);
  if (full.ok()) {
    if (full->width <= 0 || full->height <= 0) Fail("empty image decoded");
    if (int64_t{full->width} * full->height > kMaxPixels) Fail("image over max_pixels decoded");
    if (full->pixels.size() != size_t{3} * full->width * full->height) Fail("wrong pixel count");
  } else {
    CheckError(full.status());
  }

  // 2. The region decode a Loader thread does, with a reused Decoder (as
  // each decode thread reuses its own).
  static stoker::decode::Decoder exact({.max_pixels = kMaxPixels, .fast = false});
  static stoker::decode::Decoder quick({.max_pixels = kMaxPixels, .fast = true});
  stoker::decode::Decoder& decoder = fast ? quick : exact;
  auto crop = [&](int w, int h) {
    const double side = fs * std::fmin(w, h);
    return stoker::decode::Rect{fx * (w - side), fy * (h - side), side, side};
  };
  auto region = decoder.DecodeRegion(bytes, crop, out_size, out_size);
  if (region.ok()) {
    const auto& r = *region;
    if (r.image.width <= 0 || r.image.height <= 0 || r.image.data == nullptr) Fail("empty region");
    if (r.image.stride < size_t{3} * r.image.width) Fail("stride shorter than a row");
    if (int64_t{r.source_width} * r.source_height > kMaxPixels) Fail("region over max_pixels");
    if (r.scale_denom != 1 && r.scale_denom != 2 && r.scale_denom != 4 && r.scale_denom != 8) {
      Fail("bad DCT scale");
    }
    constexpr double kEps = 1e-6;
    if (r.crop.x < -kEps || r.crop.y < -kEps || r.crop.w <= 0 || r.crop.h <= 0 ||
        r.crop.x + r.crop.w > r.image.width + kEps || r.crop.y + r.crop.h > r.image.height + kEps) {
      Fail("crop outside the decoded region");
    }
    if (full.ok() && (r.source_width != full->width || r.source_height != full->height)) {
      Fail("region and full decode disagree on the size");
    }
    volatile uint32_t sink = Touch(r.image);
    (void)sink;
  } else {
    CheckError(region.status());
    if (full.ok()) Fail("decodes whole but not as a region", &region.status());
  }

  // 2b. The same region through a row index, twice: the first decode walks
  // the rows above the crop, the second jumps to a remembered one.
  {
    static stoker::decode::Decoder jumping({.max_pixels = kMaxPixels, .fast = false});
    static stoker::decode::Decoder jumping_fast({.max_pixels = kMaxPixels, .fast = true});
    stoker::decode::Decoder& jd = fast ? jumping_fast : jumping;
    stoker::decode::JpegRowIndex index(1);
    for (int pass = 0; pass < 2; ++pass) {
      auto jr = jd.DecodeRegion(bytes, crop, out_size, out_size,
                                stoker::decode::RowIndexRef{&index, 0});
      if (jr.ok() != region.ok()) Fail("a row jump changed whether the region decodes");
      if (!jr.ok()) {
        CheckError(jr.status());
        if (jr.status().code() != region.status().code()) Fail("a row jump changed the error");
        continue;
      }
      const auto& a = region->image;
      const auto& b = jr->image;
      if (a.width != b.width || a.height != b.height || jr->scale_denom != region->scale_denom ||
          std::fabs(jr->crop.y - region->crop.y) > 1e-9) {
        Fail("a row jump changed the region's geometry");
      }
      for (int y = 0; y < a.height; ++y) {
        if (std::memcmp(a.data + a.stride * static_cast<size_t>(y),
                        b.data + b.stride * static_cast<size_t>(y), size_t{3} * a.width) != 0) {
          Fail("a row jump changed the pixels");
        }
      }
    }
  }

  // 2c. Rewritten for shards (a restart marker after every MCU, a row
  // table): the same pixels whole, and the same region through the cut.
  auto rewritten = stoker::decode::RewriteWithRestarts(bytes, kMaxPixels);
  if (rewritten.ok()) {
    const std::span<const uint8_t> rb(rewritten->bytes);
    auto rfull = stoker::DecodeImage(rb, kMaxPixels);
    if (!full.ok()) Fail("a JPEG that does not decode was rewritten", &full.status());
    if (!rfull.ok()) Fail("a rewritten JPEG does not decode", &rfull.status());
    if (rfull->width != full->width || rfull->height != full->height ||
        rfull->pixels != full->pixels) {
      Fail("a rewrite changed the pixels");
    }
    static stoker::decode::Decoder cutting({.max_pixels = kMaxPixels, .fast = false});
    static stoker::decode::Decoder cutting_fast({.max_pixels = kMaxPixels, .fast = true});
    auto cr = (fast ? cutting_fast : cutting).DecodeRegion(rb, crop, out_size, out_size);
    if (!cr.ok() || !region.ok()) Fail("a rewritten JPEG's region does not decode");
    const auto& a = region->image;
    const auto& b = cr->image;
    if (a.width != b.width || a.height != b.height || cr->scale_denom != region->scale_denom) {
      Fail("a restart cut changed the region's geometry");
    }
    for (int y = 0; y < a.height; ++y) {
      if (std::memcmp(a.data + a.stride * static_cast<size_t>(y),
                      b.data + b.stride * static_cast<size_t>(y), size_t{3} * a.width) != 0) {
        Fail("a restart cut changed the pixels");
      }
    }
  } else {
    CheckError(rewritten.status());
  }

  // 3. What a Loader writes for the sample.
  stoker::TransformOptions t;
  t.kind = (flags & 2) ? stoker::TransformOptions::Kind::kTrain : stoker::TransformOptions::Kind::kVal;
  t.size = out_size;
  t.normalize = flags & 4;
  t.fast_decode = fast;
  auto out = stoker::TransformImage(bytes, t, /*seed=*/flags, /*epoch=*/0, /*position=*/data[1],
                                    kMaxPixels);
  if (out.ok()) {
    if (out->size() != stoker::pipeline::SampleImageBytes(t)) Fail("wrong sample size");
    if (t.normalize) {
      const size_t n = out->size() / sizeof(float);
      for (size_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, out->data() + i * sizeof(float), sizeof v);
        if (!std::isfinite(v)) Fail("non-finite normalised pixel");
      }
    }
  } else {
    CheckError(out.status());
    if (full.ok()) Fail("decodes whole but not through the transform", &out.status());
  }

  // 4. The same bytes as a segmentation mask (raw PNG values), given a
  // Compose's geometry with padding and a vertical flip.
  static stoker::decode::Decoder masks({.max_pixels = kMaxPixels});
  auto mask = masks.DecodeMask(bytes);
  if (mask.ok()) {
    if (mask->width <= 0 || mask->height <= 0) Fail("empty mask decoded");
    stoker::TransformOptions c;
    c.kind = stoker::TransformOptions::Kind::kCompose;
    stoker::TransformOp crop;
    crop.type = stoker::TransformOp::Type::kRandomCrop;
    crop.size = {out_size, out_size};
    crop.pad_if_needed = true;
    stoker::TransformOp flip;
    flip.type = stoker::TransformOp::Type::kRandomVerticalFlip;
    c.ops = {crop, flip};
    auto m = stoker::TransformMask(bytes, c, flags, 0, data[1], mask->width, mask->height,
                                   kMaxPixels);
    if (!m.ok()) Fail("a decodable mask failed its transform", &m.status());
    if (m->size() != static_cast<size_t>(out_size) * out_size) Fail("wrong mask size");
  } else {
    CheckError(mask.status());
  }
  return 0;
}
