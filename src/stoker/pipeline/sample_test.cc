// ProcessSample with Compose lists and ProcessMask: the presets as explicit
// Compose lists give the presets' bytes; unfused ops agree with a direct
// reference; a mask gets its image's crop box and flips. Images are made
// here with libjpeg and libspng.
#include "stoker/pipeline/sample.h"

#include "stoker/decode/testing/test_jpeg.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <jpeglib.h>
#include <spng.h>

namespace stoker::pipeline {
namespace {

using Bytes = std::vector<uint8_t>;
using Op = TransformOp;
using Type = TransformOp::Type;

Bytes EncodePng(const std::vector<uint8_t>& data, int w, int h, uint8_t color_type,
                uint8_t bit_depth = 8, const spng_plte* plte = nullptr) {
  spng_ctx* ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
  spng_ihdr ihdr{};
  ihdr.width = static_cast<uint32_t>(w);
  ihdr.height = static_cast<uint32_t>(h);
  ihdr.bit_depth = bit_depth;
  ihdr.color_type = color_type;
  EXPECT_EQ(spng_set_ihdr(ctx, &ihdr), 0);
  if (plte) {
    EXPECT_EQ(spng_set_plte(ctx, const_cast<spng_plte*>(plte)), 0);
  }
  EXPECT_EQ(spng_encode_image(ctx, data.data(), data.size(), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE),
            0);
  size_t len = 0;
  int err = 0;
  auto* buf = static_cast<uint8_t*>(spng_get_png_buffer(ctx, &len, &err));
  Bytes out(buf, buf + len);
  free(buf);
  spng_ctx_free(ctx);
  return out;
}

Bytes EncodeJpeg(const std::vector<uint8_t>& rgb, int w, int h) {
  const std::vector<uint8_t> jpeg = decode::testing::EncodeRgbJpeg(rgb.data(), w, h, 90);
  return Bytes(jpeg.begin(), jpeg.end());
}

std::vector<uint8_t> Pattern(int w, int h) {
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        rgb[(static_cast<size_t>(y) * w + x) * 3 + c] =
            static_cast<uint8_t>(128 + 100 * std::sin((x * (c + 1) + y * (3 - c)) * 0.05));
  return rgb;
}

Op MakeOp(Type type) {
  Op op;
  op.type = type;
  return op;
}
Op Sized(Type type, int h, int w) {
  Op op = MakeOp(type);
  op.size = {h, w};
  return op;
}
TransformOptions Compose(std::vector<Op> ops) {
  TransformOptions t;
  t.kind = TransformOptions::Kind::kCompose;
  t.ops = std::move(ops);
  return t;
}

Bytes RunSample(const Bytes& img, const TransformOptions& t, uint64_t pos, Status* st = nullptr) {
  decode::Decoder decoder;
  transform::Scratch scratch;
  Bytes out(SampleImageBytes(t));
  Status s = ProcessSample(img, t, 11, 2, pos, decoder, scratch, out.data());
  if (st != nullptr) {
    *st = s;
  } else {
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  return out;
}

TEST(ComposeSampleTest, PresetsWrittenAsComposeGiveThePresetsBytes) {
  const Bytes jpeg = EncodeJpeg(Pattern(301, 217), 301, 217);
  const Bytes png = EncodePng(Pattern(120, 90), 120, 90, SPNG_COLOR_TYPE_TRUECOLOR);
  for (bool normalize : {false, true}) {
    TransformOptions train;
    train.kind = TransformOptions::Kind::kTrain;
    train.size = 64;
    train.normalize = normalize;
    TransformOptions val;
    val.size = 64;
    val.normalize = normalize;
    for (const TransformOptions* preset : {&train, &val}) {
      const TransformOptions explicit_ops = Compose(transform::ExpandOps(*preset));
      for (uint64_t pos = 0; pos < 12; ++pos) {
        for (const Bytes* img : {&jpeg, &png}) {
          EXPECT_EQ(RunSample(*img, *preset, pos), RunSample(*img, explicit_ops, pos))
              << "normalize " << normalize << " pos " << pos;
        }
      }
    }
  }
}

TEST(ComposeSampleTest, UnfusedPadCropAndFlipsAreExact) {
  // RandomCrop with padding is not fused: the whole PNG is decoded at full
  // scale (an exact copy), padded, cropped, flipped.
  const int w = 20, h = 14;
  const std::vector<uint8_t> rgb = Pattern(w, h);
  const Bytes png = EncodePng(rgb, w, h, SPNG_COLOR_TYPE_TRUECOLOR);
  Op crop = Sized(Type::kRandomCrop, 16, 18);
  crop.padding = {3, 2, 3, 2};
  crop.fill = {7, 8, 9};
  Op flip = MakeOp(Type::kRandomVerticalFlip);
  flip.p = 1.0;
  const TransformOptions t = Compose({crop, flip});
  for (uint64_t pos = 0; pos < 6; ++pos) {
    const Bytes out = RunSample(png, t, pos);
    transform::SampleRng rng(11, 2, static_cast<int64_t>(pos));
    const int top = static_cast<int>(rng.Uniform() * (h + 4 - 16 + 1));
    const int left = static_cast<int>(rng.Uniform() * (w + 6 - 18 + 1));
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 16; ++y)
        for (int x = 0; x < 18; ++x) {
          const int sy = top + (15 - y) - 2, sx = left + x - 3;
          const int want = (sy < 0 || sy >= h || sx < 0 || sx >= w)
                               ? 7 + c
                               : rgb[(static_cast<size_t>(sy) * w + sx) * 3 + c];
          ASSERT_EQ(out[(static_cast<size_t>(c) * 16 + y) * 18 + x], want)
              << pos << " " << c << " " << y << " " << x;
        }
  }
}

TEST(ComposeSampleTest, UnfusedResizesGiveTheFusedPixels) {
  // Pad(0) changes nothing but ends the fused prefix: the resize then runs
  // on the decoded image (ResizePlanar) instead of inside the decode, with
  // the same draws, box and filter, so the pixels are the same.
  const Bytes png = EncodePng(Pattern(97, 61), 97, 61, SPNG_COLOR_TYPE_TRUECOLOR);
  Op nothing = MakeOp(Type::kPad);
  Op flip = MakeOp(Type::kRandomHorizontalFlip);
  const std::vector<std::vector<Op>> fused = {
      {Sized(Type::kResize, 20, 30)},
      {Sized(Type::kRandomResizedCrop, 24, 16), flip},
  };
  for (const auto& ops : fused) {
    std::vector<Op> unfused = {nothing};
    unfused.insert(unfused.end(), ops.begin(), ops.end());
    for (uint64_t pos = 0; pos < 6; ++pos) {
      EXPECT_EQ(RunSample(png, Compose(ops), pos), RunSample(png, Compose(unfused), pos))
          << transform::OpName(ops[0].type) << " " << pos;
    }
  }
}

TEST(ComposeSampleTest, GrayscaleOutputHasOneChannelAndFloatOutput) {
  const Bytes png = EncodePng(Pattern(40, 30), 40, 30, SPNG_COLOR_TYPE_TRUECOLOR);
  Op gray = MakeOp(Type::kGrayscale);
  Op norm = MakeOp(Type::kNormalize);
  norm.mean = {0.5f};
  norm.std = {0.25f};
  const TransformOptions t =
      Compose({Sized(Type::kCenterCrop, 10, 12), gray, MakeOp(Type::kToDtype), norm});
  EXPECT_EQ(SampleImageBytes(t), 10u * 12 * 4);
  const Bytes out = RunSample(png, t, 0);
  const TransformOptions u8 = Compose({Sized(Type::kCenterCrop, 10, 12), gray});
  const Bytes ref = RunSample(png, u8, 0);
  ASSERT_EQ(ref.size(), 120u);
  for (size_t i = 0; i < 120; ++i) {
    float v;
    std::memcpy(&v, out.data() + 4 * i, 4);
    EXPECT_NEAR(v, (ref[i] / 255.0f - 0.5f) / 0.25f, 1e-6);  // q * s + b: rounded twice
  }
}

TEST(ComposeSampleTest, AShapeTheOpCannotTakeIsAnErrorNamingTheOp) {
  const Bytes png = EncodePng(Pattern(40, 30), 40, 30, SPNG_COLOR_TYPE_TRUECOLOR);
  Status st;
  RunSample(png, Compose({Sized(Type::kRandomCrop, 32, 32)}), 0, &st);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("RandomCrop (op 0): crop (h=32, w=32) is larger than the image "
                              "(h=30, w=40)"),
            std::string::npos)
      << st.message();
}

// ---- masks -------------------------------------------------------------------

TEST(MaskTest, TheMaskGetsTheImagesCropBoxAndFlips) {
  // Image: R = x, G = y (ramps); masks: value x, value y. After the same
  // geometry, the mask (nearest) and the image (bilinear) show the same
  // source coordinates, to within the resampling's rounding.
  const int w = 200, h = 150;
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3), mx(static_cast<size_t>(w) * h),
      my(mx.size());
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const size_t i = static_cast<size_t>(y) * w + x;
      rgb[3 * i] = static_cast<uint8_t>(x);
      rgb[3 * i + 1] = static_cast<uint8_t>(y);
      rgb[3 * i + 2] = 0;
      mx[i] = static_cast<uint8_t>(x);
      my[i] = static_cast<uint8_t>(y);
    }
  const Bytes png = EncodePng(rgb, w, h, SPNG_COLOR_TYPE_TRUECOLOR);
  const Bytes mask_x = EncodePng(mx, w, h, SPNG_COLOR_TYPE_GRAYSCALE);
  const Bytes mask_y = EncodePng(my, w, h, SPNG_COLOR_TYPE_GRAYSCALE);
  Op rrc = Sized(Type::kRandomResizedCrop, 48, 64);
  rrc.scale = {0.3, 1.0};
  Op hflip = MakeOp(Type::kRandomHorizontalFlip);
  Op vflip = MakeOp(Type::kRandomVerticalFlip);
  Op jitter = MakeOp(Type::kColorJitter);
  // Draws all its numbers; a contrast factor within 1e-9 of 1 keeps the
  // ramps (to a level) so the comparison below still holds.
  jitter.contrast = {1, 1 + 1e-9};
  jitter.hue = {0, 1e-12};
  Op pad = MakeOp(Type::kPad);
  pad.padding = {2, 3, 4, 5};
  pad.padding_mode = Op::PaddingMode::kEdge;
  Op crop = Sized(Type::kRandomCrop, 40, 50);
  const std::vector<TransformOptions> transforms = {
      Compose({rrc, hflip, vflip}),                       // all fused
      Compose({hflip, jitter, pad, crop, vflip}),         // colour op, then unfused geometry
      Compose({Sized(Type::kResize, 100, 0), crop, hflip}),  // resize then crop: fused
  };
  int flips_seen = 0;
  for (const TransformOptions& t : transforms) {
    const auto shape = transform::ComposeOutputShape(t);
    ASSERT_TRUE(shape.ok()) << shape.status().ToString();
    const int ow = shape->width, oh = shape->height;
    ASSERT_EQ(MaskBytes(t), static_cast<size_t>(ow) * oh);
    for (uint64_t pos = 0; pos < 20; ++pos) {
      decode::Decoder decoder;
      transform::Scratch scratch;
      Bytes img(SampleImageBytes(t)), gotx(MaskBytes(t)), goty(MaskBytes(t));
      SourceInfo src;
      ASSERT_TRUE(ProcessSample(png, t, 5, 1, pos, decoder, scratch, img.data(), {}, &src).ok());
      EXPECT_EQ(src.width, w);
      EXPECT_EQ(src.height, h);
      ASSERT_TRUE(ProcessMask(mask_x, t, 5, 1, pos, w, h, decoder, scratch, gotx.data()).ok());
      ASSERT_TRUE(ProcessMask(mask_y, t, 5, 1, pos, w, h, decoder, scratch, goty.data()).ok());
      // Bilinear of a unit ramp is the centre's coordinate - 0.5; nearest
      // is its floor; the antialiasing filter shifts edge pixels a little.
      const double tol = t.ops[0].type == Type::kResize ? 1.5 : 2.5;
      int worst = 0;
      for (int y = 0; y < oh; ++y)
        for (int x = 0; x < ow; ++x) {
          const size_t i = static_cast<size_t>(y) * ow + x;
          worst = std::max(worst, std::abs(img[i] - gotx[i]));
          worst = std::max(worst, std::abs(img[static_cast<size_t>(ow) * oh + i] - goty[i]));
        }
      EXPECT_LE(worst, tol) << "transform " << &t - transforms.data() << " pos " << pos;
      if (gotx[0] > gotx[ow - 1]) ++flips_seen;
    }
  }
  EXPECT_GT(flips_seen, 5);  // the flips were exercised
}

// Palettes of 2-16 colours are often stored with 1, 2 or 4 bits a pixel
// (Pillow does so): each value comes out in a byte of its own, any width.
TEST(MaskTest, PackedPaletteAndGrayMasksAreUnpacked) {
  decode::Decoder decoder;
  for (int depth : {1, 2, 4}) {
    for (uint8_t type : {SPNG_COLOR_TYPE_INDEXED, SPNG_COLOR_TYPE_GRAYSCALE}) {
      const int w = 13, h = 5;
      const int per_byte = 8 / depth;
      const size_t row = static_cast<size_t>((w * depth + 7) / 8);
      std::vector<uint8_t> values(static_cast<size_t>(w) * h), packed(row * h, 0);
      for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) {
          const uint8_t v = static_cast<uint8_t>((x * 3 + y) % (1 << depth));
          values[static_cast<size_t>(y) * w + x] = v;
          packed[y * row + x / per_byte] |=
              static_cast<uint8_t>(v << (8 - depth * (x % per_byte + 1)));
        }
      }
      spng_plte plte{};
      plte.n_entries = 1u << depth;
      for (uint32_t i = 0; i < plte.n_entries; ++i) plte.entries[i] = {static_cast<uint8_t>(i), 9, 9, 255};
      const Bytes png = EncodePng(packed, w, h, type, static_cast<uint8_t>(depth),
                                  type == SPNG_COLOR_TYPE_INDEXED ? &plte : nullptr);
      auto m = decoder.DecodeMask(png);
      ASSERT_TRUE(m.ok()) << depth << "-bit: " << m.status().ToString();
      ASSERT_EQ(m->width, w);
      ASSERT_EQ(m->height, h);
      for (int y = 0; y < h; ++y) {
        EXPECT_EQ(std::vector<uint8_t>(m->data + y * m->stride, m->data + y * m->stride + w),
                  std::vector<uint8_t>(values.begin() + y * w, values.begin() + (y + 1) * w))
            << depth << "-bit, type " << int(type) << ", row " << y;
      }
    }
  }
}

TEST(MaskTest, PaletteIndicesAreKeptAndBadMasksAreRefused) {
  spng_plte plte{};
  plte.n_entries = 4;
  for (int i = 0; i < 4; ++i) plte.entries[i] = {static_cast<uint8_t>(60 * i), 0, 0, 255};
  std::vector<uint8_t> idx(16 * 12);
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<uint8_t>(i % 4);
  const Bytes palette = EncodePng(idx, 16, 12, SPNG_COLOR_TYPE_INDEXED, 8, &plte);
  decode::Decoder decoder;
  auto m = decoder.DecodeMask(palette);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->width, 16);
  EXPECT_EQ(m->height, 12);
  EXPECT_EQ(std::vector<uint8_t>(m->data, m->data + idx.size()), idx);

  const Bytes rgb = EncodePng(Pattern(16, 12), 16, 12, SPNG_COLOR_TYPE_TRUECOLOR);
  auto r = decoder.DecodeMask(rgb);
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("mask PNG is RGB with 8-bit samples"), std::string::npos)
      << r.status().message();
  std::vector<uint8_t> g16(16 * 12 * 2, 1);
  auto d16 = decoder.DecodeMask(EncodePng(g16, 16, 12, SPNG_COLOR_TYPE_GRAYSCALE, 16));
  EXPECT_EQ(d16.status().code(), StatusCode::kUnsupported);
  auto jpeg = decoder.DecodeMask(EncodeJpeg(Pattern(16, 12), 16, 12));
  EXPECT_EQ(jpeg.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(jpeg.status().message().find("a mask must be a PNG"), std::string::npos);
  Bytes cut(palette.begin(), palette.begin() + palette.size() / 2);
  EXPECT_EQ(decoder.DecodeMask(cut).status().code(), StatusCode::kCorrupt);
  EXPECT_EQ(decoder.DecodeMask(Bytes{}).status().code(), StatusCode::kCorrupt);

  // A mask whose size differs from its image's.
  transform::Scratch scratch;
  const TransformOptions t = Compose({Sized(Type::kCenterCrop, 8, 8)});
  Bytes out(MaskBytes(t));
  Status st = ProcessMask(palette, t, 0, 0, 0, 17, 12, decoder, scratch, out.data());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "mask is 16x12, image is 17x12");
  ASSERT_TRUE(ProcessMask(palette, t, 0, 0, 0, 16, 12, decoder, scratch, out.data()).ok());
  // CenterCrop 8x8 of 16x12: top 2, left 4.
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x) EXPECT_EQ(out[y * 8 + x], idx[(y + 2) * 16 + x + 4]);
}

}  // namespace
}  // namespace stoker::pipeline
