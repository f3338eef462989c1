// Tests for the decode module. All images are generated here with libjpeg's
// compressor and libspng's encoder; there are no binary fixtures.
//
// Reference for JPEG pixels: a plain libjpeg decompression with default
// settings (ISLOW IDCT, fancy upsampling) of the whole image at the same
// scale. Region decodes must match the corresponding area of it exactly, at
// every scale and sampling, so no tolerance is used anywhere below. That
// holds because the decoder avoids the two places where libjpeg-turbo 2.1's
// scanline crop differs from a full decode: the edge columns of a cropped
// region get replicated chroma when chroma is upsampled (it asks for one
// column of margin on each side), and with some samplings (4x2 luma at 1/2
// and 1/4) the crop miscomputes the chroma row width (it decodes full rows
// there). Skipping rows (jpeg_skip_scanlines) is exact. Disabling either
// workaround makes MatchesFullDecode* fail.

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <jpeglib.h>
#include <spng.h>

#include "stoker/decode/decode.h"
#include "stoker/decode/jpeg_restart.h"
#include "stoker/decode/jpeg_rows.h"

namespace stoker::decode {
namespace {

using Bytes = std::vector<uint8_t>;

// ---------------------------------------------------------------------------
// Test images.

struct Pixels {
  int w = 0, h = 0, c = 0;
  std::vector<uint8_t> px;
  const uint8_t* at(int x, int y) const { return &px[(static_cast<size_t>(y) * w + x) * c]; }
};

// Smooth gradients, a diagonal wave and per-pixel noise: strong, varied chroma
// so that any misplaced chroma sample shows up.
Pixels Pattern(int w, int h, int c, uint32_t seed = 1) {
  Pixels p{w, h, c, std::vector<uint8_t>(static_cast<size_t>(w) * h * c)};
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> noise(-24, 24);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int k = 0; k < c; ++k) {
        double v;
        switch (k) {
          case 0: v = 255.0 * x / std::max(1, w - 1); break;
          case 1: v = 255.0 * y / std::max(1, h - 1); break;
          case 2: v = 128 + 100 * std::sin((x + 2 * y) * 0.11); break;
          default: v = 128 + 90 * std::cos((3 * x - y) * 0.07); break;
        }
        v += noise(rng);
        p.px[(static_cast<size_t>(y) * w + x) * c + k] =
            static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
    }
  }
  return p;
}

enum class Kind { kYcc, kGray, kCmyk, kYcck };

struct JpegSpec {
  Kind kind = Kind::kYcc;
  int h_samp = 2, v_samp = 2;  // luma sampling factors; chroma is 1x1
  int cr_h_samp = 1, cr_v_samp = 1;  // Cr's factors, if it differs from Cb
  int quality = 90;
  bool progressive = false;
  bool arith = false;
  int restart_rows = 0;
  int restart_mcus = 0;  // a restart marker every this many MCUs
  bool optimize = false;  // optimal Huffman tables instead of the standard ones
  const std::vector<jpeg_scan_info>* scans = nullptr;  // custom progression
};

Bytes EncodeJpeg(const Pixels& p, const JpegSpec& spec) {
  jpeg_compress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&cinfo);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buf, &size);
  cinfo.image_width = static_cast<JDIMENSION>(p.w);
  cinfo.image_height = static_cast<JDIMENSION>(p.h);
  cinfo.input_components = p.c;
  switch (spec.kind) {
    case Kind::kYcc: cinfo.in_color_space = JCS_RGB; break;
    case Kind::kGray: cinfo.in_color_space = JCS_GRAYSCALE; break;
    case Kind::kCmyk:
    case Kind::kYcck: cinfo.in_color_space = JCS_CMYK; break;
  }
  jpeg_set_defaults(&cinfo);
  if (spec.kind == Kind::kCmyk) jpeg_set_colorspace(&cinfo, JCS_CMYK);  // Adobe marker
  if (spec.kind == Kind::kYcck) jpeg_set_colorspace(&cinfo, JCS_YCCK);
  jpeg_set_quality(&cinfo, spec.quality, TRUE);
  if (spec.kind == Kind::kYcc || spec.kind == Kind::kYcck) {
    cinfo.comp_info[0].h_samp_factor = spec.h_samp;
    cinfo.comp_info[0].v_samp_factor = spec.v_samp;
    for (int i = 1; i < cinfo.num_components; ++i) {
      cinfo.comp_info[i].h_samp_factor = 1;
      cinfo.comp_info[i].v_samp_factor = 1;
    }
    cinfo.comp_info[2].h_samp_factor = spec.cr_h_samp;
    cinfo.comp_info[2].v_samp_factor = spec.cr_v_samp;
  }
  if (spec.progressive) jpeg_simple_progression(&cinfo);
  if (spec.scans != nullptr) {
    cinfo.scan_info = spec.scans->data();
    cinfo.num_scans = static_cast<int>(spec.scans->size());
  }
  cinfo.arith_code = spec.arith ? TRUE : FALSE;
  cinfo.restart_in_rows = spec.restart_rows;
  if (spec.restart_mcus > 0) cinfo.restart_interval = static_cast<unsigned>(spec.restart_mcus);
  cinfo.optimize_coding = spec.optimize ? TRUE : FALSE;
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(p.at(0, static_cast<int>(cinfo.next_scanline)));
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  Bytes out(buf, buf + size);
  jpeg_destroy_compress(&cinfo);
  free(buf);
  return out;
}

Bytes EncodeJpeg(int w, int h, const JpegSpec& spec = {}) {
  const int c = spec.kind == Kind::kGray ? 1 : (spec.kind == Kind::kYcc ? 3 : 4);
  return EncodeJpeg(Pattern(w, h, c), spec);
}

// Plain libjpeg decode of the whole image at 1/denom with default settings.
Pixels RefDecode(const Bytes& jpeg, int denom, J_COLOR_SPACE space = JCS_RGB,
                 bool fast = false) {
  jpeg_decompress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, jpeg.data(), static_cast<unsigned long>(jpeg.size()));
  jpeg_read_header(&cinfo, TRUE);
  cinfo.scale_num = 1;
  cinfo.scale_denom = static_cast<unsigned>(denom);
  cinfo.out_color_space = space;
  if (fast) cinfo.dct_method = JDCT_IFAST;
  jpeg_start_decompress(&cinfo);
  Pixels p{static_cast<int>(cinfo.output_width), static_cast<int>(cinfo.output_height),
           cinfo.output_components, {}};
  p.px.resize(static_cast<size_t>(p.w) * p.h * p.c);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = &p.px[static_cast<size_t>(cinfo.output_scanline) * p.w * p.c];
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return p;
}

// Pillow: a 4-component JPEG is read as inverted CMYK ("CMYK;I"), then
// convert("RGB") does nk = 255 - K, X = nk - MULDIV255(C, nk). Written
// independently of the decoder's version.
Pixels PillowCmykToRgb(const Pixels& raw) {
  Pixels out{raw.w, raw.h, 3, std::vector<uint8_t>(static_cast<size_t>(raw.w) * raw.h * 3)};
  auto muldiv255 = [](int a, int b) {
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
  };
  for (size_t i = 0; i < static_cast<size_t>(raw.w) * raw.h; ++i) {
    int cmyk[4];
    for (int k = 0; k < 4; ++k) cmyk[k] = 255 - raw.px[i * 4 + k];  // "CMYK;I"
    const int nk = 255 - cmyk[3];
    for (int k = 0; k < 3; ++k) {
      out.px[i * 3 + k] = static_cast<uint8_t>(std::clamp(nk - muldiv255(cmyk[k], nk), 0, 255));
    }
  }
  return out;
}

// The decoded view's pixels equal ref's, with the view's (0,0) at (x0, y0).
::testing::AssertionResult SameArea(const ImageView& v, const Pixels& ref, int x0, int y0) {
  if (ref.c != 3) return ::testing::AssertionFailure() << "reference is not RGB";
  if (x0 < 0 || y0 < 0 || x0 + v.width > ref.w || y0 + v.height > ref.h) {
    return ::testing::AssertionFailure() << "view " << v.width << "x" << v.height << " at ("
                                         << x0 << "," << y0 << ") outside " << ref.w << "x"
                                         << ref.h;
  }
  int bad = 0, max_diff = 0, fx = -1, fy = -1;
  for (int y = 0; y < v.height; ++y) {
    const uint8_t* row = v.data + static_cast<size_t>(y) * v.stride;
    for (int x = 0; x < v.width; ++x) {
      for (int k = 0; k < 3; ++k) {
        const int d = std::abs(int{row[x * 3 + k]} - int{ref.at(x0 + x, y0 + y)[k]});
        if (d != 0) {
          if (bad == 0) fx = x, fy = y;
          ++bad;
          max_diff = std::max(max_diff, d);
        }
      }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " samples differ (max " << max_diff
                                       << "), first at view (" << fx << "," << fy << ") of "
                                       << v.width << "x" << v.height << " at (" << x0 << ","
                                       << y0 << ")";
}

std::span<const uint8_t> S(const Bytes& b) { return {b.data(), b.size()}; }

CropFn Fixed(Rect r) {
  return [r](int, int) { return r; };
}

// Decodes `crop` forcing scale `denom` and checks it against the reference
// decode at that scale.
void CheckRegion(Decoder& dec, const Bytes& jpeg, const Pixels& ref, int denom, Rect crop,
                 const std::string& what) {
  SCOPED_TRACE(what + " denom=" + std::to_string(denom) + " crop=(" + std::to_string(crop.x) +
               "," + std::to_string(crop.y) + "," + std::to_string(crop.w) + "," +
               std::to_string(crop.h) + ")");
  const int out_w = static_cast<int>(std::floor(crop.w / denom));
  const int out_h = static_cast<int>(std::floor(crop.h / denom));
  ASSERT_GE(out_w, 1);
  ASSERT_GE(out_h, 1);
  auto r = dec.DecodeRegion(S(jpeg), Fixed(crop), out_w, out_h);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->scale_denom, denom);
  // The crop, scaled, in view coordinates; the view covers it.
  const Rect& c = r->crop;
  EXPECT_NEAR(c.w, crop.w / denom, 1e-9);
  EXPECT_NEAR(c.h, crop.h / denom, 1e-9);
  EXPECT_GE(c.x, 0.0);
  EXPECT_GE(c.y, 0.0);
  EXPECT_LT(c.x, 1.0);  // tight: the view starts at the crop's first pixel
  EXPECT_LT(c.y, 1.0);
  EXPECT_LE(c.x + c.w, r->image.width + 1e-9);
  EXPECT_LE(c.y + c.h, r->image.height + 1e-9);
  const double fx0 = crop.x / denom - c.x, fy0 = crop.y / denom - c.y;
  const int x0 = static_cast<int>(std::lround(fx0)), y0 = static_cast<int>(std::lround(fy0));
  EXPECT_NEAR(fx0, x0, 1e-9);
  EXPECT_NEAR(fy0, y0, 1e-9);
  EXPECT_TRUE(SameArea(r->image, ref, x0, y0));
}

// Random crops (fractional, like RandomResizedCrop's after scaling) plus the
// corners, edges and whole image, at every scale.
void CheckRegionsAtAllScales(const Bytes& jpeg, int w, int h, const std::string& what,
                             int random_crops = 25, bool fast = false) {
  DecodeOptions options;
  options.fast = fast;
  Decoder dec(options);
  std::mt19937 rng(7);
  for (int denom : {1, 2, 4, 8}) {
    const Pixels ref = RefDecode(jpeg, denom, JCS_RGB, fast);
    std::vector<Rect> crops = {
        {0, 0, double(w), double(h)},
        {0, 0, double(denom), double(denom)},
        {double(w - denom), double(h - denom), double(denom), double(denom)},
        {w * 0.5, 0, w * 0.5, h * 0.25},
        {0, h * 0.5, w * 0.3, h * 0.5},
        {17.0, 9.0, w - 17.0, h - 9.0},
        {double(w) - 33.5, double(h) - 21.25, 33.5, 21.25},
    };
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (int i = 0; i < random_crops; ++i) {
      double cw = denom + u(rng) * (w - denom), ch = denom + u(rng) * (h - denom);
      crops.push_back({u(rng) * (w - cw), u(rng) * (h - ch), cw, ch});
      // Integer crops too (torchvision's are integers before scaling).
      double iw = std::floor(cw), ih = std::floor(ch);
      crops.push_back({std::floor(u(rng) * (w - iw)), std::floor(u(rng) * (h - ih)), iw, ih});
    }
    for (const Rect& c : crops) {
      if (c.w < denom || c.h < denom || c.x < 0 || c.y < 0) continue;
      CheckRegion(dec, jpeg, ref, denom, c, what);
      if (::testing::Test::HasFailure()) return;
    }
  }
}

// ---------------------------------------------------------------------------
// PNG encoding with libspng.

Bytes EncodePng(const std::vector<uint8_t>& data, int w, int h, uint8_t color_type,
                uint8_t bit_depth, bool interlace = false, const spng_plte* plte = nullptr,
                const spng_trns* trns = nullptr) {
  spng_ctx* ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
  spng_ihdr ihdr{};
  ihdr.width = static_cast<uint32_t>(w);
  ihdr.height = static_cast<uint32_t>(h);
  ihdr.bit_depth = bit_depth;
  ihdr.color_type = color_type;
  ihdr.interlace_method = interlace ? 1 : 0;
  EXPECT_EQ(spng_set_ihdr(ctx, &ihdr), 0);
  if (plte) {
    EXPECT_EQ(spng_set_plte(ctx, const_cast<spng_plte*>(plte)), 0);
  }
  if (trns) {
    EXPECT_EQ(spng_set_trns(ctx, const_cast<spng_trns*>(trns)), 0);
  }
  int rc = spng_encode_image(ctx, data.data(), data.size(), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
  EXPECT_EQ(rc, 0) << spng_strerror(rc);
  size_t len = 0;
  int err = 0;
  auto* buf = static_cast<uint8_t*>(spng_get_png_buffer(ctx, &len, &err));
  EXPECT_EQ(err, 0);
  Bytes out(buf, buf + len);
  free(buf);
  spng_ctx_free(ctx);
  return out;
}

uint32_t Crc32(const uint8_t* p, size_t n) {
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

void PutBe32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v >> 24), p[1] = uint8_t(v >> 16), p[2] = uint8_t(v >> 8), p[3] = uint8_t(v);
}

// Checks a full PNG decode against expected RGB.
void ExpectPng(Decoder& dec, const Bytes& png, const Pixels& expected) {
  auto r = dec.DecodeFull(S(png));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->width, expected.w);
  ASSERT_EQ(r->height, expected.h);
  EXPECT_TRUE(SameArea(*r, expected, 0, 0));
}

Pixels Rgb(int w, int h) { return {w, h, 3, std::vector<uint8_t>(size_t(w) * h * 3)}; }

// ---------------------------------------------------------------------------
// Format detection and trivial errors.

TEST(DecodeFormat, DetectsByMagic) {
  const Bytes jpeg = EncodeJpeg(8, 8);
  const Bytes png = EncodePng(std::vector<uint8_t>(8 * 8 * 3, 7), 8, 8, 2, 8);
  EXPECT_EQ(DetectFormat(S(jpeg)), Format::kJpeg);
  EXPECT_EQ(DetectFormat(S(png)), Format::kPng);
  EXPECT_EQ(DetectFormat({}), Format::kUnknown);
  const Bytes gif = {'G', 'I', 'F', '8', '9', 'a', 0, 0};
  EXPECT_EQ(DetectFormat(S(gif)), Format::kUnknown);
  EXPECT_EQ(DetectFormat(S(Bytes{0xFF, 0xD8})), Format::kJpeg);  // truncated after SOI
  EXPECT_EQ(DetectFormat(S(Bytes{0xFF, 0xD8, 0x00})), Format::kUnknown);
  EXPECT_EQ(DetectFormat(S(Bytes{0x89, 'P', 'N', 'G'})), Format::kPng);  // truncated signature
}

TEST(DecodeErrors, EmptyInput) {
  Decoder dec;
  auto r = dec.DecodeFull({});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
  EXPECT_EQ(r.status().message(), "empty file");
  auto r2 = dec.DecodeRegion({}, Fixed({0, 0, 1, 1}), 1, 1);
  EXPECT_EQ(r2.status().code(), StatusCode::kCorrupt);
}

TEST(DecodeErrors, RandomBytesAreUnsupported) {
  Decoder dec;
  std::mt19937 rng(3);
  Bytes b(1000);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  b[0] = 0x47;  // not FF / 89
  auto r = dec.DecodeFull(S(b));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("not a JPEG or PNG image"), std::string::npos);
  EXPECT_NE(r.status().message().find("47"), std::string::npos) << r.status().message();
  const Bytes text = {'<', 'h', 't', 'm', 'l', '>'};
  EXPECT_EQ(dec.DecodeFull(S(text)).status().code(), StatusCode::kUnsupported);
}

TEST(DecodeErrors, RandomBytesAfterJpegMagicAreCorrupt) {
  Decoder dec;
  std::mt19937 rng(4);
  for (int trial = 0; trial < 20; ++trial) {
    Bytes b(200 + trial * 50);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    b[0] = 0xFF, b[1] = 0xD8, b[2] = 0xFF;
    auto r = dec.DecodeFull(S(b));
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(r.status().code() == StatusCode::kCorrupt ||
                r.status().code() == StatusCode::kUnsupported)
        << r.status().ToString();
    // The message says it is a JPEG and what is wrong, not just libjpeg's
    // "Unsupported marker type 0xf1".
    const std::string& m = r.status().message();
    EXPECT_TRUE(m.rfind("invalid JPEG data: ", 0) == 0 ||
                m.rfind("unsupported JPEG variant: ", 0) == 0 ||
                m.rfind("truncated JPEG data", 0) == 0)
        << m;
  }
}

TEST(DecodeErrors, InvalidRequests) {
  Decoder dec;
  const Bytes jpeg = EncodeJpeg(32, 32);
  EXPECT_EQ(dec.DecodeRegion(S(jpeg), Fixed({0, 0, 8, 8}), 0, 8).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(dec.DecodeRegion(S(jpeg), CropFn(), 8, 8).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(dec.DecodeRegion(S(jpeg), Fixed({40, 0, 8, 8}), 8, 8).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(dec.DecodeRegion(S(jpeg), Fixed({0, 0, 0, 8}), 8, 8).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(dec.DecodeRegion(S(jpeg), Fixed({NAN, 0, 8, 8}), 8, 8).status().code(),
            StatusCode::kInvalidArgument);
  // A rect that pokes out of the image is clamped to it.
  auto r = dec.DecodeRegion(S(jpeg), Fixed({-4, 20, 100, 100}), 1, 1);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->scale_denom, 8);
  EXPECT_NEAR(r->crop.w, 32.0 / 8, 1e-12);
  EXPECT_NEAR(r->crop.h, 12.0 / 8, 1e-12);
}

// ---------------------------------------------------------------------------
// JPEG: full decodes.

TEST(DecodeJpeg, FullMatchesLibjpegDefaults) {
  Decoder dec;
  for (auto [hs, vs] : std::vector<std::pair<int, int>>{{1, 1}, {2, 1}, {2, 2}, {1, 2}}) {
    for (auto [w, h] : std::vector<std::pair<int, int>>{{1, 1}, {2, 3}, {17, 13}, {333, 251}}) {
      SCOPED_TRACE(std::to_string(hs) + "x" + std::to_string(vs) + " " + std::to_string(w) +
                   "x" + std::to_string(h));
      JpegSpec spec;
      spec.h_samp = hs, spec.v_samp = vs;
      const Bytes jpeg = EncodeJpeg(w, h, spec);
      auto r = dec.DecodeFull(S(jpeg));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(r->width, w);
      EXPECT_EQ(r->height, h);
      EXPECT_GE(r->stride, size_t(w) * 3);
      EXPECT_TRUE(SameArea(*r, RefDecode(jpeg, 1), 0, 0));
    }
  }
}

TEST(DecodeJpeg, GrayBecomesRgb) {
  Decoder dec;
  JpegSpec spec;
  spec.kind = Kind::kGray;
  const Bytes jpeg = EncodeJpeg(45, 31, spec);
  const Pixels gray = RefDecode(jpeg, 1, JCS_GRAYSCALE);
  ASSERT_EQ(gray.c, 1);
  auto r = dec.DecodeFull(S(jpeg));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Pixels expected = Rgb(45, 31);
  for (size_t i = 0; i < gray.px.size(); ++i) {
    for (int k = 0; k < 3; ++k) expected.px[i * 3 + k] = gray.px[i];
  }
  EXPECT_TRUE(SameArea(*r, expected, 0, 0));
  CheckRegionsAtAllScales(jpeg, 45, 31, "gray", 5);
  const Bytes big = EncodeJpeg(301, 203, spec);
  CheckRegionsAtAllScales(big, 301, 203, "gray");
}

TEST(DecodeJpeg, CmykAndYcckConvertLikePillow) {
  Decoder dec;
  for (Kind kind : {Kind::kCmyk, Kind::kYcck}) {
    SCOPED_TRACE(kind == Kind::kCmyk ? "CMYK" : "YCCK");
    JpegSpec spec;
    spec.kind = kind;
    const Bytes jpeg = EncodeJpeg(61, 47, spec);
    const Pixels raw = RefDecode(jpeg, 1, JCS_CMYK);
    ASSERT_EQ(raw.c, 4);
    const Pixels expected = PillowCmykToRgb(raw);
    auto r = dec.DecodeFull(S(jpeg));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(SameArea(*r, expected, 0, 0));
    // Region at 1/2 scale.
    const Pixels half = PillowCmykToRgb(RefDecode(jpeg, 2, JCS_CMYK));
    auto rr = dec.DecodeRegion(S(jpeg), Fixed({20, 10, 30, 30}), 15, 15);
    ASSERT_TRUE(rr.ok()) << rr.status().ToString();
    EXPECT_EQ(rr->scale_denom, 2);
    EXPECT_TRUE(SameArea(rr->image, half, 10, 5));
  }
}

TEST(DecodeJpeg, ProgressiveArithmeticAndRestarts) {
  struct Case {
    const char* name;
    JpegSpec spec;
  };
  std::vector<Case> cases;
  cases.push_back({"progressive 4:2:0", {}});
  cases.back().spec.progressive = true;
  cases.push_back({"progressive 4:4:4", {}});
  cases.back().spec.progressive = true;
  cases.back().spec.h_samp = cases.back().spec.v_samp = 1;
  cases.push_back({"arithmetic 4:2:0", {}});
  cases.back().spec.arith = true;
  cases.push_back({"arithmetic progressive 4:2:2", {}});
  cases.back().spec.arith = true;
  cases.back().spec.progressive = true;
  cases.back().spec.v_samp = 1;
  cases.push_back({"restart markers 4:2:0", {}});
  cases.back().spec.restart_rows = 1;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const Bytes jpeg = EncodeJpeg(213, 157, c.spec);
    Decoder dec;
    auto r = dec.DecodeFull(S(jpeg));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(SameArea(*r, RefDecode(jpeg, 1), 0, 0));
    CheckRegionsAtAllScales(jpeg, 213, 157, c.name, 10);
  }
}

TEST(DecodeJpeg, ExifOrientationIsIgnored) {
  // An APP1 Exif segment (big-endian TIFF, one IFD entry: Orientation = 6,
  // "rotate 90 clockwise to display") right after SOI. stoker, like
  // torchvision's Image.open loader, returns the pixels as stored.
  const Bytes plain = EncodeJpeg(48, 24);
  const uint8_t tiff[] = {'M', 'M', 0, 42, 0, 0, 0, 8,          // header, IFD at 8
                          0, 1,                                 // one entry
                          0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0,  // Orientation SHORT 6
                          0, 0, 0, 0};                          // no next IFD
  Bytes app1 = {0xFF, 0xE1, 0, 0, 'E', 'x', 'i', 'f', 0, 0};
  app1.insert(app1.end(), std::begin(tiff), std::end(tiff));
  const size_t len = app1.size() - 2;
  app1[2] = static_cast<uint8_t>(len >> 8);
  app1[3] = static_cast<uint8_t>(len & 0xFF);
  Bytes rotated(plain.begin(), plain.begin() + 2);
  rotated.insert(rotated.end(), app1.begin(), app1.end());
  rotated.insert(rotated.end(), plain.begin() + 2, plain.end());
  Decoder dec;
  auto r = dec.DecodeFull(S(rotated));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->width, 48);
  EXPECT_EQ(r->height, 24);
  EXPECT_TRUE(SameArea(*r, RefDecode(plain, 1), 0, 0));
}

// ---------------------------------------------------------------------------
// JPEG: region decodes.

TEST(DecodeRegion, MatchesFullDecodeAtEachScale) {
  for (auto [hs, vs] : std::vector<std::pair<int, int>>{{1, 1}, {2, 1}, {2, 2}, {1, 2}}) {
    for (auto [w, h] : std::vector<std::pair<int, int>>{{333, 251}, {512, 384}, {97, 203}}) {
      JpegSpec spec;
      spec.h_samp = hs, spec.v_samp = vs;
      const std::string what = "sampling " + std::to_string(hs) + "x" + std::to_string(vs) +
                               " image " + std::to_string(w) + "x" + std::to_string(h);
      CheckRegionsAtAllScales(EncodeJpeg(w, h, spec), w, h, what);
    }
  }
}

// Fast mode (IFAST IDCT): a region still equals the same area of a
// whole-image decode with the same settings.
TEST(DecodeRegion, FastModeMatchesFastFullDecode) {
  for (auto [hs, vs] : std::vector<std::pair<int, int>>{{1, 1}, {2, 1}, {2, 2}, {1, 2}}) {
    for (auto [w, h] : std::vector<std::pair<int, int>>{{333, 251}, {97, 203}}) {
      JpegSpec spec;
      spec.h_samp = hs, spec.v_samp = vs;
      CheckRegionsAtAllScales(EncodeJpeg(w, h, spec), w, h,
                              "fast, sampling " + std::to_string(hs) + "x" + std::to_string(vs),
                              15, /*fast=*/true);
    }
  }
}

// Reused decoders on two threads agree with fresh ones, in both modes. With
// plain upsampling (libjpeg-turbo 2.1's merged upsampler) jpeg_skip_scanlines
// on reused decompressors gave wrong pixels about once per 100 passes of
// tests/python/test_resume.py and crashed a two-thread stress run on
// ImageFolder data; these synthetic images did not show it, so the decoder
// simply never uses that upsampler.
TEST(DecodeRegion, ReusedDecodersOnTwoThreadsAgreeWithFreshOnes) {
  std::vector<Bytes> jpegs;
  for (auto [hs, vs, w, h] : std::vector<std::array<int, 4>>{
           {2, 2, 257, 181}, {2, 1, 200, 300}, {2, 2, 96, 64}, {1, 1, 150, 150}}) {
    JpegSpec spec;
    spec.h_samp = hs, spec.v_samp = vs;
    jpegs.push_back(EncodeJpeg(w, h, spec));
  }
  for (bool fast : {false, true}) {
    DecodeOptions options;
    options.fast = fast;
    auto crop_for = [](int i) {
      return [i](int w, int h) {
        std::mt19937 r(static_cast<unsigned>(i));
        std::uniform_real_distribution<double> u(0.0, 1.0);
        double cw = 8 + u(r) * (w - 8), ch = 8 + u(r) * (h - 8);
        return Rect{std::floor(u(r) * (w - cw)), std::floor(u(r) * (h - ch)), std::floor(cw),
                    std::floor(ch)};
      };
    };
    auto decode_copy = [&](Decoder& dec, int i) {
      auto r = dec.DecodeRegion(S(jpegs[i % jpegs.size()]), crop_for(i), 24, 24);
      std::vector<uint8_t> v;
      if (!r.ok()) return v;
      for (int y = 0; y < r->image.height; ++y) {
        const uint8_t* row = r->image.data + y * r->image.stride;
        v.insert(v.end(), row, row + r->image.width * 3);
      }
      return v;
    };
    constexpr int kCases = 200;
    std::vector<std::vector<uint8_t>> expected(kCases);
    for (int i = 0; i < kCases; ++i) {
      Decoder fresh(options);
      expected[i] = decode_copy(fresh, i);
      ASSERT_FALSE(expected[i].empty());
    }
    std::vector<int> mismatches(2, 0);
    auto work = [&](int t) {
      Decoder reused(options);
      std::mt19937 order(static_cast<unsigned>(t + 1));
      for (int n = 0; n < 1500; ++n) {
        int i = static_cast<int>(order() % kCases);
        if (decode_copy(reused, i) != expected[i]) ++mismatches[t];
      }
    };
    std::thread a(work, 0), b(work, 1);
    a.join();
    b.join();
    EXPECT_EQ(mismatches[0] + mismatches[1], 0) << "fast=" << fast;
  }
}

// `jpeg` without the marker segments of type `marker` (0xC4 DHT, 0xDB DQT)
// that define table `id` (libjpeg writes one table per segment).
Bytes StripTable(const Bytes& jpeg, uint8_t marker, int id) {
  Bytes out(jpeg.begin(), jpeg.begin() + 2);
  size_t i = 2;
  while (i + 4 <= jpeg.size() && jpeg[i] == 0xFF && jpeg[i + 1] != 0xDA) {
    const size_t len = (size_t{jpeg[i + 2]} << 8) | jpeg[i + 3];
    const bool drop = jpeg[i + 1] == marker && (jpeg[i + 4] & 0x0F) == id;
    if (!drop) out.insert(out.end(), jpeg.begin() + i, jpeg.begin() + i + 2 + len);
    i += 2 + len;
  }
  out.insert(out.end(), jpeg.begin() + i, jpeg.end());  // SOS and the entropy data
  return out;
}

// Found by decode_fuzz: an image that lacks a table used to be decoded with
// the table the previous image on the same Decoder left in libjpeg (a fresh
// decompressor falls back to the standard Huffman tables, and refuses a
// missing quantisation table), so its pixels, or whether it decoded at all,
// depended on what that thread had decoded before.
TEST(DecodeErrors, FuzzFindingTablesDoNotLeakFromThePreviousImage) {
  JpegSpec progressive;  // optimised Huffman tables, not the standard ones
  progressive.progressive = true;
  progressive.quality = 30;
  const Bytes before = EncodeJpeg(64, 48, progressive);
  const Bytes base = EncodeJpeg(Pattern(40, 24, 3, 5), JpegSpec{});
  const Bytes no_chroma_huffman = StripTable(base, 0xC4, 1);
  const Bytes no_chroma_quant = StripTable(base, 0xDB, 1);
  ASSERT_LT(no_chroma_huffman.size(), base.size());
  ASSERT_LT(no_chroma_quant.size(), base.size());

  for (bool region : {false, true}) {
    SCOPED_TRACE(region ? "DecodeRegion" : "DecodeFull");
    auto decode = [&](Decoder& dec, const Bytes& b) -> Result<std::vector<uint8_t>> {
      Result<ImageView> v = region ? [&]() -> Result<ImageView> {
        auto r = dec.DecodeRegion(S(b), Fixed(Rect{0, 0, 40, 24}), 40, 24);
        if (!r.ok()) return r.status();
        return r->image;
      }()
                                   : dec.DecodeFull(S(b));
      if (!v.ok()) return v.status();
      std::vector<uint8_t> px;
      for (int y = 0; y < v->height; ++y) {
        px.insert(px.end(), v->data + y * v->stride, v->data + y * v->stride + v->width * 3);
      }
      return px;
    };
    // Missing Huffman table: the standard one, whatever came before.
    Decoder fresh;
    auto expected = decode(fresh, no_chroma_huffman);
    ASSERT_TRUE(expected.ok()) << expected.status().ToString();
    Decoder reused;
    ASSERT_TRUE(decode(reused, before).ok());
    auto got = decode(reused, no_chroma_huffman);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_TRUE(*got == *expected);

    // Missing quantisation table: an error naming it, whatever came before.
    Decoder fresh_q;
    auto refused = decode(fresh_q, no_chroma_quant);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), StatusCode::kCorrupt);
    EXPECT_NE(refused.status().message().find("Quantization table 0x01"), std::string::npos)
        << refused.status().ToString();
    ASSERT_TRUE(decode(reused, base).ok());
    auto refused_again = decode(reused, no_chroma_quant);
    ASSERT_FALSE(refused_again.ok());
    EXPECT_EQ(refused_again.status().message(), refused.status().message());
  }
}

TEST(DecodeRegion, MatchesFullDecodeWithUnusualSampling) {
  // 4:1:1, 4:1:0 (4x2: at 1/2 and 1/4 scale the chroma IDCT is scaled up
  // and the result still upsampled 2x, where libjpeg-turbo 2.1's column
  // crop goes wrong and the decoder must not use it), 3x1, tall ones, and
  // Cr sampled differently from Cb.
  const std::vector<std::array<int, 4>> samplings = {
      {4, 1, 1, 1}, {4, 2, 1, 1}, {3, 1, 1, 1}, {1, 4, 1, 1}, {2, 4, 1, 1}, {2, 2, 2, 1},
      {2, 2, 1, 2}};
  for (const auto& s : samplings) {
    JpegSpec spec;
    spec.h_samp = s[0], spec.v_samp = s[1], spec.cr_h_samp = s[2], spec.cr_v_samp = s[3];
    CheckRegionsAtAllScales(EncodeJpeg(301, 199, spec), 301, 199,
                            "sampling Y " + std::to_string(s[0]) + "x" + std::to_string(s[1]) +
                                " Cr " + std::to_string(s[2]) + "x" + std::to_string(s[3]),
                            10);
  }
}

TEST(DecodeRegion, ChoosesSmallestScaleThatCoversOutput) {
  Decoder dec;
  const Bytes jpeg = EncodeJpeg(2000, 2000);
  struct Case {
    Rect crop;
    int out;
    int denom;
  };
  const Case cases[] = {
      {{0, 0, 2000, 1500}, 224, 4},   // 500x375 covers 224; 250x187 does not
      {{0, 0, 1800, 1800 * 0.75}, 224, 4},
      {{0, 0, 1792, 1792}, 224, 8},   // 224x224 exactly: 1/8
      {{0, 0, 1791, 1792}, 224, 4},   // one pixel short of 1/8
      {{100, 100, 500, 500}, 224, 2},
      {{100, 100, 447, 900}, 224, 1}, // 223.5 < 224 at 1/2
      {{0, 0, 100, 100}, 224, 1},     // upscaling: full scale
      {{0, 0, 2000, 1500}, 1, 8},
  };
  for (const Case& c : cases) {
    auto r = dec.DecodeRegion(S(jpeg), Fixed(c.crop), c.out, c.out);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->scale_denom, c.denom) << c.crop.w << "x" << c.crop.h << " -> " << c.out;
    EXPECT_EQ(r->source_width, 2000);
    EXPECT_EQ(r->source_height, 2000);
  }
  // Non-square output: both sides must be covered.
  auto r = dec.DecodeRegion(S(jpeg), Fixed({0, 0, 2000, 1500}), 100, 300);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->scale_denom, 4);  // 1500/8 = 187 < 300, 1500/4 = 375
}

TEST(DecodeRegion, CropFunctionSeesSourceSize) {
  Decoder dec;
  const Bytes jpeg = EncodeJpeg(123, 77);
  int seen_w = 0, seen_h = 0;
  auto r = dec.DecodeRegion(
      S(jpeg),
      [&](int w, int h) {
        seen_w = w, seen_h = h;
        return Rect{10, 10, 50, 40};
      },
      20, 20);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(seen_w, 123);
  EXPECT_EQ(seen_h, 77);
  EXPECT_EQ(r->scale_denom, 2);
}

TEST(DecodeRegion, OnePixelImage) {
  Decoder dec;
  for (Kind kind : {Kind::kYcc, Kind::kGray}) {
    JpegSpec spec;
    spec.kind = kind;
    const Bytes jpeg = EncodeJpeg(1, 1, spec);
    auto r = dec.DecodeRegion(S(jpeg), Fixed({0, 0, 1, 1}), 1, 1);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->scale_denom, 1);
    EXPECT_EQ(r->image.width, 1);
    EXPECT_EQ(r->image.height, 1);
    EXPECT_TRUE(SameArea(r->image, RefDecode(jpeg, 1), 0, 0));
    auto big = dec.DecodeRegion(S(jpeg), Fixed({0, 0, 1, 1}), 224, 224);  // upscale later
    ASSERT_TRUE(big.ok());
    EXPECT_EQ(big->scale_denom, 1);
  }
  const Bytes png = EncodePng({10, 20, 30}, 1, 1, 2, 8);
  auto r = dec.DecodeRegion(S(png), Fixed({0, 0, 1, 1}), 224, 224);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->image.width, 1);
  EXPECT_EQ(r->image.data[0], 10);
  EXPECT_EQ(r->image.data[2], 30);
}

// ---------------------------------------------------------------------------
// JPEG: truncated, hostile and huge.

TEST(DecodeErrors, TruncatedJpegIsCorrupt) {
  std::vector<std::pair<std::string, JpegSpec>> specs(4);
  specs[0].first = "baseline";
  specs[1].first = "progressive";
  specs[1].second.progressive = true;
  specs[2].first = "arithmetic";
  specs[2].second.arith = true;
  specs[3].first = "restarts";
  specs[3].second.restart_rows = 2;
  Decoder dec;
  for (const auto& [name, spec] : specs) {
    const Bytes jpeg = EncodeJpeg(256, 192, spec);
    for (double frac : {0.02, 0.1, 0.3, 0.6, 0.9, 0.99}) {
      SCOPED_TRACE(name + " cut at " + std::to_string(frac));
      Bytes cut(jpeg.begin(), jpeg.begin() + static_cast<long>(jpeg.size() * frac));
      auto r = dec.DecodeFull(S(cut));
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.status().code(), StatusCode::kCorrupt) << r.status().ToString();
      // A crop in the bottom rows needs the missing data too.
      auto rr = dec.DecodeRegion(S(cut), Fixed({0, 150, 256, 42}), 32, 5);
      ASSERT_FALSE(rr.ok());
      EXPECT_EQ(rr.status().code(), StatusCode::kCorrupt) << rr.status().ToString();
    }
    // Cut in the entropy data: the message says so.
    Bytes half(jpeg.begin(), jpeg.begin() + static_cast<long>(jpeg.size() / 2));
    auto r = dec.DecodeFull(S(half));
    EXPECT_NE(r.status().message().find("truncated JPEG data"), std::string::npos)
        << name << ": " << r.status().ToString();
    // Missing EOI only for a single-scan Huffman file: every pixel is
    // there, so it decodes (and matches); multi-scan or arithmetic: error.
    Bytes no_eoi(jpeg.begin(), jpeg.end() - 2);
    auto e = dec.DecodeFull(S(no_eoi));
    if (!spec.progressive && !spec.arith) {
      ASSERT_TRUE(e.ok()) << name << ": " << e.status().ToString();
      EXPECT_TRUE(SameArea(*e, RefDecode(jpeg, 1), 0, 0));
      for (int drop : {3, 4, 8}) {
        Bytes more(jpeg.begin(), jpeg.end() - drop);
        EXPECT_FALSE(dec.DecodeFull(S(more)).ok()) << name << " minus " << drop;
      }
    }
  }
}

TEST(DecodeErrors, TruncatedBelowCropStillDecodesTheCrop) {
  // Only what the crop needs is read: a file cut below the crop decodes
  // the crop correctly (nothing past the crop's last row is touched).
  Decoder dec;
  const Bytes jpeg = EncodeJpeg(256, 256);
  Bytes cut(jpeg.begin(), jpeg.begin() + static_cast<long>(jpeg.size() * 0.8));
  auto r = dec.DecodeRegion(S(cut), Fixed({0, 0, 64, 64}), 64, 64);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(SameArea(r->image, RefDecode(jpeg, 1), 0, 0));
}

// A tiny valid JPEG whose SOF claims 50000x50000.
Bytes ForgeHugeJpeg() {
  Bytes jpeg = EncodeJpeg(16, 16);
  for (size_t i = 2; i + 9 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xC0) {  // SOF0: FF C0 len(2) P(1) H(2) W(2)
      jpeg[i + 5] = 50000 >> 8, jpeg[i + 6] = 50000 & 0xFF;
      jpeg[i + 7] = 50000 >> 8, jpeg[i + 8] = 50000 & 0xFF;
      return jpeg;
    }
  }
  ADD_FAILURE() << "no SOF0";
  return jpeg;
}

Bytes ForgeHugePng() {
  Bytes png = EncodePng(std::vector<uint8_t>(16 * 16 * 3, 1), 16, 16, 2, 8);
  // Signature(8) + IHDR length(4) + "IHDR"(4) + width(4) + height(4) ...
  PutBe32(&png[16], 50000);
  PutBe32(&png[20], 50000);
  PutBe32(&png[29], Crc32(&png[12], 17));  // CRC over type + 13 data bytes
  return png;
}

TEST(DecodeErrors, HugeDeclaredSizeIsRefusedBeforeDecoding) {
  Decoder dec;
  for (const Bytes& b : {ForgeHugeJpeg(), ForgeHugePng()}) {
    bool crop_called = false;
    auto r = dec.DecodeRegion(
        S(b),
        [&](int w, int h) {
          crop_called = true;
          return Rect{0, 0, double(w), double(h)};
        },
        224, 224);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
    EXPECT_NE(r.status().message().find("50000x50000"), std::string::npos)
        << r.status().message();
    EXPECT_NE(r.status().message().find("178956970"), std::string::npos)
        << r.status().message();
    EXPECT_FALSE(crop_called);
    auto f = dec.DecodeFull(S(b));
    EXPECT_EQ(f.status().code(), StatusCode::kResourceExhausted);
  }
  // With no limit, the tiny files still fail fast (their data ends), and
  // the output buffer is never written beyond what was decoded.
  // (The output buffer is reserved, not touched; where the system refuses
  // even to reserve 7.5 GB, the answer is kResourceExhausted instead.)
  Decoder unlimited(DecodeOptions{0});
  auto rj = unlimited.DecodeFull(S(ForgeHugeJpeg()));
  EXPECT_TRUE(rj.status().code() == StatusCode::kCorrupt ||
              rj.status().code() == StatusCode::kResourceExhausted)
      << rj.status().ToString();
  auto rp = unlimited.DecodeFull(S(ForgeHugePng()));
  EXPECT_FALSE(rp.ok());
}

TEST(DecodeErrors, MaxPixelsOption) {
  Decoder dec(DecodeOptions{64 * 64 - 1});
  const Bytes jpeg = EncodeJpeg(64, 64);
  auto r = dec.DecodeFull(S(jpeg));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("64x64"), std::string::npos) << r.status().message();
  const Bytes png = EncodePng(std::vector<uint8_t>(64 * 64 * 3, 5), 64, 64, 2, 8);
  EXPECT_EQ(dec.DecodeFull(S(png)).status().code(), StatusCode::kResourceExhausted);
  Decoder ok(DecodeOptions{64 * 64});
  EXPECT_TRUE(ok.DecodeFull(S(jpeg)).ok());
  EXPECT_TRUE(ok.DecodeFull(S(png)).ok());
}

TEST(DecodeErrors, TooManyScans) {
  // A valid progressive file with 3 components x 63 AC coefficients x 6
  // successive-approximation steps = 1134 + 1 scans.
  std::vector<jpeg_scan_info> scans;
  jpeg_scan_info dc{};
  dc.comps_in_scan = 3;
  dc.component_index[0] = 0, dc.component_index[1] = 1, dc.component_index[2] = 2;
  scans.push_back(dc);
  for (int comp = 0; comp < 3; ++comp) {
    for (int k = 1; k < 64; ++k) {
      for (int al = 5; al >= 0; --al) {
        jpeg_scan_info s{};
        s.comps_in_scan = 1;
        s.component_index[0] = comp;
        s.Ss = k, s.Se = k;
        s.Ah = al == 5 ? 0 : al + 1;
        s.Al = al;
        scans.push_back(s);
      }
    }
  }
  JpegSpec spec;
  spec.h_samp = spec.v_samp = 1;
  spec.scans = &scans;
  const Bytes jpeg = EncodeJpeg(16, 16, spec);
  Decoder dec;
  auto r = dec.DecodeFull(S(jpeg));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
  EXPECT_NE(r.status().message().find("scans"), std::string::npos) << r.status().message();
}

TEST(DecodeErrors, UnsupportedJpegVariants) {
  // 12-bit precision in SOF1: libjpeg-turbo 2.1 (8-bit build) refuses it.
  Bytes jpeg = EncodeJpeg(16, 16);
  for (size_t i = 2; i + 4 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xC0) {
      jpeg[i + 1] = 0xC1;
      jpeg[i + 4] = 12;
      break;
    }
  }
  Decoder dec;
  auto r = dec.DecodeFull(S(jpeg));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported) << r.status().ToString();
  EXPECT_EQ(r.status().message().rfind("unsupported JPEG variant: ", 0), 0u)
      << r.status().message();
  // Lossless (SOF3).
  Bytes lossless = EncodeJpeg(16, 16);
  for (size_t i = 2; i + 1 < lossless.size(); ++i) {
    if (lossless[i] == 0xFF && lossless[i + 1] == 0xC0) {
      lossless[i + 1] = 0xC3;
      break;
    }
  }
  EXPECT_EQ(dec.DecodeFull(S(lossless)).status().code(), StatusCode::kUnsupported);
}

TEST(DecodeErrors, MutatedFilesNeverCrash) {
  // Byte flips anywhere in small JPEGs and PNGs: any outcome but a crash,
  // a hang or an unexpected status code.
  JpegSpec prog;
  prog.progressive = true;
  std::vector<uint8_t> rgb(40 * 30 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 7);
  const std::vector<Bytes> seeds = {EncodeJpeg(40, 30), EncodeJpeg(40, 30, prog),
                                    EncodePng(rgb, 40, 30, 2, 8)};
  std::mt19937 rng(11);
  Decoder dec;
  int ok = 0, failed = 0;
  for (const Bytes& seed : seeds) {
    for (int trial = 0; trial < 300; ++trial) {
      Bytes b = seed;
      const int flips = 1 + trial % 4;
      for (int f = 0; f < flips; ++f) {
        b[2 + rng() % (b.size() - 2)] = static_cast<uint8_t>(rng());
      }
      if (trial % 5 == 0) b.resize(2 + rng() % (b.size() - 2));
      const Status st = trial % 2
                            ? dec.DecodeFull(S(b)).status()
                            : dec.DecodeRegion(S(b), Fixed({5, 5, 30, 20}), 10, 10).status();
      const StatusCode code = st.code();
      EXPECT_TRUE(code == StatusCode::kOk || code == StatusCode::kCorrupt ||
                  code == StatusCode::kUnsupported || code == StatusCode::kResourceExhausted)
          << st.ToString();
      (st.ok() ? ok : failed)++;
    }
  }
  EXPECT_GT(failed, 0);
  // The decoder still works.
  auto r = dec.DecodeFull(S(seeds[0]));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(SameArea(*r, RefDecode(seeds[0], 1), 0, 0));
}

TEST(DecodeErrors, DecoderIsReusableAfterEveryError) {
  Decoder dec;
  const Bytes good = EncodeJpeg(100, 80);
  const Pixels ref = RefDecode(good, 1);
  const Pixels ref2 = RefDecode(good, 2);
  const Bytes png = EncodePng(std::vector<uint8_t>(10 * 10 * 3, 9), 10, 10, 2, 8);
  const Bytes truncated(good.begin(), good.begin() + static_cast<long>(good.size() / 2));
  const Bytes garbage = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x02, 0x12, 0x34};
  const std::vector<Bytes> bad = {truncated, garbage, ForgeHugeJpeg(), Bytes{1, 2, 3}, Bytes{},
                                  Bytes(png.begin(), png.begin() + 40)};
  for (int round = 0; round < 3; ++round) {
    for (const Bytes& b : bad) {
      EXPECT_FALSE(dec.DecodeFull(S(b)).ok());
      EXPECT_FALSE(dec.DecodeRegion(S(b), Fixed({0, 0, 50, 50}), 10, 10).ok());
      auto r = dec.DecodeFull(S(good));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_TRUE(SameArea(*r, ref, 0, 0));
      auto rr = dec.DecodeRegion(S(good), Fixed({10, 10, 60, 60}), 30, 30);
      ASSERT_TRUE(rr.ok()) << rr.status().ToString();
      EXPECT_EQ(rr->scale_denom, 2);
      EXPECT_TRUE(SameArea(rr->image, ref2, 5, 5));
      EXPECT_TRUE(dec.DecodeFull(S(png)).ok());
    }
  }
}

// ---------------------------------------------------------------------------
// PNG.

TEST(DecodePng, Rgb8AndRgba8) {
  Decoder dec;
  const Pixels p = Pattern(37, 23, 4);
  Pixels expected = Rgb(37, 23);
  std::vector<uint8_t> rgb;
  for (size_t i = 0; i < size_t(37) * 23; ++i) {
    for (int k = 0; k < 3; ++k) {
      expected.px[i * 3 + k] = p.px[i * 4 + k];
      rgb.push_back(p.px[i * 4 + k]);
    }
  }
  ExpectPng(dec, EncodePng(rgb, 37, 23, SPNG_COLOR_TYPE_TRUECOLOR, 8), expected);
  ExpectPng(dec, EncodePng(p.px, 37, 23, SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, 8), expected);
  ExpectPng(dec, EncodePng(rgb, 37, 23, SPNG_COLOR_TYPE_TRUECOLOR, 8, /*interlace=*/true),
            expected);
  // tRNS on a truecolor image is ignored.
  spng_trns trns{};
  trns.red = expected.px[0], trns.green = expected.px[1], trns.blue = expected.px[2];
  ExpectPng(dec, EncodePng(rgb, 37, 23, SPNG_COLOR_TYPE_TRUECOLOR, 8, false, nullptr, &trns),
            expected);
}

TEST(DecodePng, SixteenBitTakesHighByte) {
  Decoder dec;
  const int w = 19, h = 11;
  std::mt19937 rng(5);
  for (int channels : {3, 4, 2, 1}) {
    SCOPED_TRACE(channels);
    std::vector<uint16_t> v(size_t(w) * h * channels);
    for (auto& x : v) x = static_cast<uint16_t>(rng());
    std::vector<uint8_t> data(v.size() * 2);
    std::memcpy(data.data(), v.data(), data.size());  // host-endian for SPNG_FMT_PNG
    Pixels expected = Rgb(w, h);
    for (size_t i = 0; i < size_t(w) * h; ++i) {
      for (int k = 0; k < 3; ++k) {
        const int src = channels >= 3 ? k : 0;
        expected.px[i * 3 + k] = static_cast<uint8_t>(v[i * channels + src] >> 8);
      }
    }
    const uint8_t type = channels == 3   ? SPNG_COLOR_TYPE_TRUECOLOR
                         : channels == 4 ? SPNG_COLOR_TYPE_TRUECOLOR_ALPHA
                         : channels == 2 ? SPNG_COLOR_TYPE_GRAYSCALE_ALPHA
                                         : SPNG_COLOR_TYPE_GRAYSCALE;
    ExpectPng(dec, EncodePng(data, w, h, type, 16), expected);
    ExpectPng(dec, EncodePng(data, w, h, type, 16, /*interlace=*/true), expected);
  }
}

TEST(DecodePng, GrayAllDepths) {
  Decoder dec;
  const int w = 13, h = 7;
  for (int depth : {1, 2, 4, 8}) {
    SCOPED_TRACE(depth);
    const int maxv = (1 << depth) - 1;
    const size_t row_bytes = (size_t(w) * depth + 7) / 8;
    std::vector<uint8_t> data(row_bytes * h, 0);
    Pixels expected = Rgb(w, h);
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        const int v = (x * 3 + y * 5) % (maxv + 1);
        const size_t bit = size_t(x) * depth;
        data[y * row_bytes + bit / 8] |= static_cast<uint8_t>(v << (8 - depth - bit % 8));
        for (int k = 0; k < 3; ++k) {
          expected.px[(size_t(y) * w + x) * 3 + k] = uint8_t(v * 255 / maxv);
        }
      }
    }
    ExpectPng(dec, EncodePng(data, w, h, SPNG_COLOR_TYPE_GRAYSCALE, uint8_t(depth)), expected);
    spng_trns trns{};
    trns.gray = 0;
    ExpectPng(dec,
              EncodePng(data, w, h, SPNG_COLOR_TYPE_GRAYSCALE, uint8_t(depth), false, nullptr,
                        &trns),
              expected);
  }
  // Gray + alpha, 8-bit.
  std::vector<uint8_t> ga;
  Pixels expected = Rgb(w, h);
  for (int i = 0; i < w * h; ++i) {
    ga.push_back(uint8_t(i * 3));
    ga.push_back(uint8_t(255 - i));
    for (int k = 0; k < 3; ++k) expected.px[i * 3 + k] = uint8_t(i * 3);
  }
  ExpectPng(dec, EncodePng(ga, w, h, SPNG_COLOR_TYPE_GRAYSCALE_ALPHA, 8), expected);
}

TEST(DecodePng, PaletteWithTransparency) {
  Decoder dec;
  const int w = 21, h = 9;
  spng_plte plte{};
  plte.n_entries = 16;
  for (uint32_t i = 0; i < 16; ++i) {
    plte.entries[i].red = uint8_t(i * 16);
    plte.entries[i].green = uint8_t(255 - i * 9);
    plte.entries[i].blue = uint8_t(i * i);
  }
  spng_trns trns{};
  trns.n_type3_entries = 4;
  for (int i = 0; i < 4; ++i) trns.type3_alpha[i] = uint8_t(i * 60);
  for (int depth : {4, 8}) {
    SCOPED_TRACE(depth);
    const size_t row_bytes = (size_t(w) * depth + 7) / 8;
    std::vector<uint8_t> data(row_bytes * h, 0);
    Pixels expected = Rgb(w, h);
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        const int idx = (x + 2 * y) % 16;
        const size_t bit = size_t(x) * depth;
        data[y * row_bytes + bit / 8] |= static_cast<uint8_t>(idx << (8 - depth - bit % 8));
        uint8_t* e = &expected.px[(size_t(y) * w + x) * 3];
        e[0] = plte.entries[idx].red, e[1] = plte.entries[idx].green, e[2] = plte.entries[idx].blue;
      }
    }
    ExpectPng(dec, EncodePng(data, w, h, SPNG_COLOR_TYPE_INDEXED, uint8_t(depth), false, &plte,
                             &trns),
              expected);
  }
}

TEST(DecodePng, RegionIsWholeImageWithCrop) {
  Decoder dec;
  const Pixels p = Pattern(40, 30, 3);
  const Bytes png = EncodePng(p.px, 40, 30, SPNG_COLOR_TYPE_TRUECOLOR, 8);
  auto r = dec.DecodeRegion(S(png), Fixed({5.5, 3, 20, 10.25}), 4, 4);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->scale_denom, 1);
  EXPECT_EQ(r->image.width, 40);
  EXPECT_EQ(r->image.height, 30);
  EXPECT_EQ(r->source_width, 40);
  EXPECT_EQ(r->crop.x, 5.5);
  EXPECT_EQ(r->crop.w, 20);
  EXPECT_EQ(r->crop.h, 10.25);
  EXPECT_TRUE(SameArea(r->image, p, 0, 0));
}

TEST(DecodePng, PngBytesUnderAnyNameAndTruncation) {
  // Formats are told apart by content (ImageNet has a PNG named .JPEG).
  Decoder dec;
  const Pixels p = Pattern(64, 48, 3);
  const Bytes png = EncodePng(p.px, 64, 48, SPNG_COLOR_TYPE_TRUECOLOR, 8);
  auto r = dec.DecodeRegion(S(png), Fixed({0, 0, 64, 48}), 8, 8);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(SameArea(r->image, p, 0, 0));
  for (double frac : {0.1, 0.5, 0.9}) {
    Bytes cut(png.begin(), png.begin() + static_cast<long>(png.size() * frac));
    auto t = dec.DecodeFull(S(cut));
    ASSERT_FALSE(t.ok()) << frac;
    EXPECT_EQ(t.status().code(), StatusCode::kCorrupt) << t.status().ToString();
    EXPECT_EQ(t.status().message().rfind("truncated PNG data", 0), 0u) << t.status().message();
  }
  for (size_t n : {size_t{4}, size_t{8}, size_t{20}, size_t{33}}) {
    Bytes cut(png.begin(), png.begin() + static_cast<long>(n));
    auto t = dec.DecodeFull(S(cut));
    EXPECT_EQ(t.status().code(), StatusCode::kCorrupt) << n << ": " << t.status().ToString();
  }
  // A PNG whose IDAT CRC is wrong is corrupt.
  Bytes bad = png;
  bad[bad.size() - 20] ^= 0x55;
  EXPECT_FALSE(dec.DecodeFull(S(bad)).ok());
}

TEST(DecodePng, HostileChunkIsBounded) {
  // A zTXt chunk that inflates to 64 MiB of zeros from a few KB: refused by
  // the chunk limits or skipped, never inflated in full.
  Decoder dec;
  const Pixels p = Pattern(8, 8, 3);
  Bytes png = EncodePng(p.px, 8, 8, SPNG_COLOR_TYPE_TRUECOLOR, 8);
  // A stored deflate stream can't be small; build a real compressed stream
  // of zeros by hand: zlib header + fixed-Huffman blocks of length-258
  // back-references (each 2 bytes-ish), written bit by bit.
  std::vector<uint8_t> z = {0x78, 0x01};
  uint32_t bitbuf = 0;
  int nbits = 0;
  auto put = [&](uint32_t v, int n) {  // LSB-first
    bitbuf |= v << nbits;
    nbits += n;
    while (nbits >= 8) {
      z.push_back(uint8_t(bitbuf));
      bitbuf >>= 8;
      nbits -= 8;
    }
  };
  auto put_rev = [&](uint32_t code, int n) {  // Huffman codes MSB-first
    uint32_t r = 0;
    for (int i = 0; i < n; ++i) r |= ((code >> i) & 1u) << (n - 1 - i);
    put(r, n);
  };
  put(1, 1);  // BFINAL
  put(1, 2);  // fixed Huffman
  put_rev(0x30 + 0, 8);  // literal 0 (codes 0x30.. for 0..143)
  const size_t total = size_t{64} << 20;
  for (size_t done = 1; done + 258 <= total; done += 258) {
    put_rev(0xC5, 8);  // length 258: symbol 285 -> code 11000101
    put_rev(0, 5);     // distance code 0 (distance 1)
  }
  put_rev(0, 7);  // end of block (256)
  if (nbits) put(0, 8 - nbits);
  z.push_back(0), z.push_back(0), z.push_back(0), z.push_back(0);  // bogus adler
  Bytes chunk;
  const std::string kw = "Comment";
  Bytes body(kw.begin(), kw.end());
  body.push_back(0);
  body.push_back(0);  // compression method
  body.insert(body.end(), z.begin(), z.end());
  Bytes c(4 + 4 + body.size() + 4);
  PutBe32(&c[0], static_cast<uint32_t>(body.size()));
  std::memcpy(&c[4], "zTXt", 4);
  std::copy(body.begin(), body.end(), c.begin() + 8);
  PutBe32(&c[8 + body.size()], Crc32(&c[4], 4 + body.size()));
  png.insert(png.begin() + 33, c.begin(), c.end());  // after IHDR
  auto r = dec.DecodeFull(S(png));
  if (r.ok()) {
    EXPECT_TRUE(SameArea(*r, p, 0, 0));
  } else {
    EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
  }
#ifdef STOKER_DECODE_TEST_VERBOSE
  std::printf("hostile zTXt: %s\n", r.ok() ? "ok" : r.status().ToString().c_str());
#endif
}

// ---------------------------------------------------------------------------
// Row jumps (jpeg_rows.h): a decode that starts at a remembered MCU row gives
// exactly the region a decode from the top gives.

// Decodes each crop of `jpeg` through `index` (as sample `sample`) and
// without it, and checks that the two agree: scale, view, crop and pixels.
// Every crop of `got_jpeg` (decoded with `rows`) has the pixels of the same
// crop of `want_jpeg` (decoded without an index), or fails as it does.
void ExpectSameRegions(const Bytes& want_jpeg, const Bytes& got_jpeg, RowIndexRef rows,
                       const std::vector<std::pair<Rect, int>>& crops, const std::string& what) {
  Decoder plain, jumping;
  for (const auto& [crop, denom] : crops) {
    SCOPED_TRACE(what + " denom=" + std::to_string(denom) + " crop=(" + std::to_string(crop.x) +
                 "," + std::to_string(crop.y) + "," + std::to_string(crop.w) + "," +
                 std::to_string(crop.h) + ")");
    const int out_w = std::max(1, static_cast<int>(std::floor(crop.w / denom)));
    const int out_h = std::max(1, static_cast<int>(std::floor(crop.h / denom)));
    auto want = plain.DecodeRegion(S(want_jpeg), Fixed(crop), out_w, out_h);
    auto got = jumping.DecodeRegion(S(got_jpeg), Fixed(crop), out_w, out_h, rows);
    ASSERT_EQ(got.ok(), want.ok()) << (got.ok() ? want.status() : got.status()).ToString();
    if (!want.ok()) {
      EXPECT_EQ(got.status().code(), want.status().code());
      continue;
    }
    ASSERT_EQ(got->scale_denom, want->scale_denom);
    ASSERT_EQ(got->source_width, want->source_width);
    ASSERT_EQ(got->source_height, want->source_height);
    ASSERT_EQ(got->image.width, want->image.width);
    ASSERT_EQ(got->image.height, want->image.height);
    EXPECT_NEAR(got->crop.x, want->crop.x, 1e-9);
    EXPECT_NEAR(got->crop.y, want->crop.y, 1e-9);
    EXPECT_NEAR(got->crop.w, want->crop.w, 1e-9);
    EXPECT_NEAR(got->crop.h, want->crop.h, 1e-9);
    Pixels ref{want->image.width, want->image.height, 3, {}};
    for (int y = 0; y < ref.h; ++y) {
      const uint8_t* row = want->image.data + static_cast<size_t>(y) * want->image.stride;
      ref.px.insert(ref.px.end(), row, row + static_cast<size_t>(ref.w) * 3);
    }
    ASSERT_TRUE(SameArea(got->image, ref, 0, 0));
  }
}

void ExpectSameAsWithoutIndex(JpegRowIndex& index, size_t sample, const Bytes& jpeg,
                              const std::vector<std::pair<Rect, int>>& crops,
                              const std::string& what) {
  ExpectSameRegions(jpeg, jpeg, RowIndexRef{&index, sample}, crops, what);
}

// RandomResizedCrop-like crops at each scale, plus crops whose first row is
// the first, second and last row of every `row_step`-th MCU row.
std::vector<std::pair<Rect, int>> JumpCrops(int w, int h, int mcu_h, int random_crops,
                                            uint32_t seed, int row_step = 1,
                                            std::vector<int> denoms = {1, 2, 4, 8}) {
  std::vector<std::pair<Rect, int>> crops;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int denom : denoms) {
    for (int i = 0; i < random_crops; ++i) {
      const double cw = std::floor(denom + u(rng) * (w - denom));
      const double ch = std::floor(denom + u(rng) * (h - denom));
      crops.push_back({{std::floor(u(rng) * (w - cw)), std::floor(u(rng) * (h - ch)), cw, ch},
                       denom});
    }
    for (int top = mcu_h; top < h - denom; top += mcu_h * row_step) {
      for (int dy : {0, denom, mcu_h - denom}) {
        const double y = top + dy;
        if (y + denom > h) continue;
        crops.push_back({{3.0 * denom, y, double(w - 3 * denom), h - y}, denom});
      }
    }
  }
  return crops;
}

TEST(DecodeRowJump, SamePixelsAsFromTheTopAtEverySamplingAndScale) {
  struct Case {
    std::string what;
    JpegSpec spec;
    int w, h;
  };
  std::vector<Case> cases;
  cases.push_back({"4:2:0", {}, 301, 397});
  cases.push_back({"4:2:0 optimized tables", {}, 480, 370});
  cases.back().spec.optimize = true;
  cases.push_back({"4:2:0 q50", {}, 333, 250});
  cases.back().spec.quality = 50;
  cases.push_back({"4:2:2", {}, 257, 311});
  cases.back().spec.v_samp = 1;
  cases.push_back({"4:4:4", {}, 199, 263});
  cases.back().spec.h_samp = 1, cases.back().spec.v_samp = 1;
  cases.push_back({"4:4:0", {}, 211, 301});
  cases.back().spec.h_samp = 1;
  cases.push_back({"gray", {}, 245, 301});
  cases.back().spec.kind = Kind::kGray;
  cases.push_back({"gray optimized", {}, 245, 199});
  cases.back().spec.kind = Kind::kGray, cases.back().spec.optimize = true;
  for (const auto& s : std::vector<std::array<int, 4>>{{1, 4, 1, 1}, {2, 4, 1, 1}, {4, 2, 1, 1},
                                                      {2, 2, 2, 1}, {2, 2, 1, 2}}) {
    Case c{"sampling " + std::to_string(s[0]) + "x" + std::to_string(s[1]) + " Cr " +
               std::to_string(s[2]) + "x" + std::to_string(s[3]),
           {}, 301, 299};
    c.spec.h_samp = s[0], c.spec.v_samp = s[1], c.spec.cr_h_samp = s[2], c.spec.cr_v_samp = s[3];
    cases.push_back(c);
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const Bytes jpeg = EncodeJpeg(Pattern(c.w, c.h, c.spec.kind == Kind::kGray ? 1 : 3,
                                          static_cast<uint32_t>(i + 3)),
                                  c.spec);
    internal::JpegLayout layout;
    ASSERT_TRUE(internal::ParseJpegLayout(S(jpeg), &layout)) << c.what;
    const auto crops = JumpCrops(c.w, c.h, layout.mcu_h, 10, static_cast<uint32_t>(i), 2);
    for (bool grids : {false, true}) {
      const std::string what = c.what + (grids ? ", MCU grid" : ", row starts");
      JpegRowIndex index(4, JpegRowIndex::kDefaultMaxBytes, grids);
      // Twice: the first pass walks and remembers, the second uses what
      // was remembered.
      ExpectSameAsWithoutIndex(index, 1, jpeg, crops, what + " pass 1");
      const int64_t walked_bytes = static_cast<int64_t>(index.bytes_used());
      ExpectSameAsWithoutIndex(index, 1, jpeg, crops, what + " pass 2");
      if (HasFailure()) return;
      EXPECT_GT(index.jumps(), 0) << what;
      EXPECT_EQ(index.crops() > 0, grids) << what;
      EXPECT_EQ(static_cast<int64_t>(index.bytes_used()), walked_bytes) << what;
    }
  }
}

TEST(DecodeRowJump, RowStartsLandOnEveryBitOfAByte) {
  // The synthetic row is padded to end on the remembered bit; a row may
  // start on any of the 8, and a row start's byte may be a stuffed 0xFF.
  const Bytes jpeg = EncodeJpeg(Pattern(1000, 1600, 3, 11), JpegSpec{});
  internal::JpegLayout layout;
  ASSERT_TRUE(internal::ParseJpegLayout(S(jpeg), &layout));
  std::vector<JpegRowIndex::RowStart> rows{internal::FirstRow(layout)};
  ASSERT_TRUE(internal::WalkRows(S(jpeg), layout, rows[0], 0, layout.mcu_rows - 1, &rows));
  ASSERT_EQ(static_cast<int>(rows.size()), layout.mcu_rows);
  std::array<int, 8> by_bit{};
  for (const auto& r : rows) by_bit[r.bit & 7]++;
  for (int k = 0; k < 8; ++k) EXPECT_GT(by_bit[k], 0) << "no row starts at bit " << k;
  JpegRowIndex index(1, JpegRowIndex::kDefaultMaxBytes, /*grids=*/false);
  std::vector<std::pair<Rect, int>> crops;
  for (int r = 1; r < layout.mcu_rows; ++r) {
    crops.push_back({{0, r * 16.0 + 1, 1000, 1600 - r * 16.0 - 1}, 1});
  }
  ExpectSameAsWithoutIndex(index, 0, jpeg, crops, "every row");
  EXPECT_EQ(index.jumps(), layout.mcu_rows - 2);
}

TEST(DecodeRowJump, CropsToEveryMcuColumnAndRow) {
  // Every MCU column and row as the crop's first and last, at full and
  // half scale: the copied bit spans start and end on every bit of a byte,
  // and the DC differences re-encoded at each row's first MCU span every
  // predictor the image has.
  const int w = 421, h = 333;
  const Bytes jpeg = EncodeJpeg(Pattern(w, h, 3, 12), JpegSpec{});
  internal::JpegLayout layout;
  ASSERT_TRUE(internal::ParseJpegLayout(S(jpeg), &layout));
  std::vector<std::pair<Rect, int>> crops;
  for (int denom : {1, 2}) {
    for (int c = 0; c < layout.mcus_per_row; ++c) {
      const double x = c * 16.0 + (c % 3) * denom;
      crops.push_back({{x, 40, std::min(3.0 * denom, w - x), 200}, denom});   // narrow
      crops.push_back({{0, 17, std::max(double(denom), x), 180}, denom});      // ends at x
    }
    for (int r = 0; r < layout.mcu_rows; ++r) {
      const double y = r * 16.0 + (r % 3) * denom;
      crops.push_back({{100, y, 130, std::min(2.0 * denom, h - y)}, denom});  // short
    }
  }
  JpegRowIndex index(1);
  ExpectSameAsWithoutIndex(index, 0, jpeg, crops, "MCU grid");
  ExpectSameAsWithoutIndex(index, 0, jpeg, crops, "MCU grid, again");
  EXPECT_GT(index.crops(), static_cast<int64_t>(crops.size()));
}

TEST(DecodeRowJump, OtherCodingProcessesDecodeFromTheTop) {
  std::vector<std::pair<std::string, JpegSpec>> specs(4);
  specs[0].first = "progressive", specs[0].second.progressive = true;
  specs[1].first = "restart markers", specs[1].second.restart_rows = 1;
  specs[2].first = "arithmetic", specs[2].second.arith = true;
  specs[3].first = "cmyk", specs[3].second.kind = Kind::kCmyk;
  for (const auto& [what, spec] : specs) {
    const Bytes jpeg = EncodeJpeg(301, 397, spec);
    JpegRowIndex index(1);
    const auto crops = JumpCrops(301, 397, 16, 6, 5, 4, {1, 4});
    ExpectSameAsWithoutIndex(index, 0, jpeg, crops, what);
    EXPECT_EQ(index.jumps(), 0) << what;
    EXPECT_EQ(index.bytes_used(), sizeof(void*)) << what;  // the one empty slot
  }
}

TEST(DecodeRowJump, ARewrittenFileIsWalkedAgain) {
  const Bytes a = EncodeJpeg(Pattern(320, 480, 3, 1), JpegSpec{});
  const Bytes b = EncodeJpeg(Pattern(320, 480, 3, 2), JpegSpec{});
  ASSERT_EQ(a.size() == b.size(), false);
  JpegRowIndex index(1);
  const auto crops = JumpCrops(320, 480, 16, 8, 9, 2, {1, 2});
  ExpectSameAsWithoutIndex(index, 0, a, crops, "a");
  ExpectSameAsWithoutIndex(index, 0, b, crops, "b, same sample");
  ExpectSameAsWithoutIndex(index, 0, a, crops, "a again");
}

TEST(DecodeRowJump, TruncatedAndCorruptFilesFailAsWithoutIndex) {
  const Bytes jpeg = EncodeJpeg(Pattern(320, 480, 3, 4), JpegSpec{});
  internal::JpegLayout layout;
  ASSERT_TRUE(internal::ParseJpegLayout(S(jpeg), &layout));
  const auto crops = JumpCrops(320, 480, 16, 8, 13, 3, {1, 2});
  for (double keep : {0.3, 0.6, 0.9}) {
    const Bytes cut(jpeg.begin(), jpeg.begin() + static_cast<ptrdiff_t>(jpeg.size() * keep));
    JpegRowIndex index(1);
    ExpectSameAsWithoutIndex(index, 0, cut, crops, "cut at " + std::to_string(keep));
    ExpectSameAsWithoutIndex(index, 0, cut, crops, "cut at " + std::to_string(keep) + " again");
  }
  // Flipped bits in the entropy-coded data: whatever libjpeg makes of them
  // from the top, a jump makes the same or a walk refuses and libjpeg decodes.
  std::mt19937 rng(3);
  for (int i = 0; i < 20; ++i) {
    Bytes bad = jpeg;
    const size_t at = layout.data_start + rng() % (bad.size() - layout.data_start - 2);
    bad[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
    JpegRowIndex index(1);
    ExpectSameAsWithoutIndex(index, 0, bad, crops, "bit flip at " + std::to_string(at));
    if (HasFailure()) return;
  }
}

// Found by decode_fuzz (fuzz/regressions/decode/row-index-oversubscribed-dht):
// a baseline JPEG with an over-subscribed Huffman table (DHT): more codes of
// some length than the shorter ones leave room for. libjpeg refuses it
// ("Bogus Huffman table definition"); the first version of the row index's
// own table builder mis-read it (an over-subscribed code lies past the end
// of the builder's lookup tables). Now the builder refuses the table as
// libjpeg does, so the file gets no row index, and a decode through the
// index gives what a decode from the top gives, first pass and second.
// The input's first 4 bytes are the fuzz target's control bytes
// (decode_fuzz.cc): fast decode, a 16 x 16 output, and the crop's x, y and
// A committed decode_fuzz reproducer (fuzz/regressions/decode/NAME): the
// target's 4 control bytes, then the image. Empty if it cannot be read.
Bytes ReadRegression(const std::string& name) {
  const std::string path = std::string(STOKER_SOURCE_DIR) + "/fuzz/regressions/decode/" + name;
  Bytes input;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return input;
  for (int c; (c = std::fgetc(f)) != EOF;) input.push_back(static_cast<uint8_t>(c));
  std::fclose(f);
  return input;
}

// size as fractions.
TEST(DecodeRowJump, FuzzFindingOversubscribedHuffmanTableDecodesAsWithoutIndex) {
  const Bytes input = ReadRegression("row-index-oversubscribed-dht");
  ASSERT_EQ(input.size(), 793u);
  const Bytes jpeg(input.begin() + 4, input.end());
  const double fx = input[1] / 255.0, fy = input[2] / 255.0, fs = (input[3] + 1) / 256.0;
  const int out = 8 << ((input[0] >> 3) & 3);
  ASSERT_EQ(out, 16);
  auto crop = [&](int w, int h) {
    const double side = fs * std::fmin(w, h);
    return Rect{fx * (w - side), fy * (h - side), side, side};
  };
  // The row index's parser refuses the table (without the check it took it).
  internal::JpegLayout layout;
  EXPECT_FALSE(internal::ParseJpegLayout(S(jpeg), &layout));
  for (bool fast : {true, false}) {
    SCOPED_TRACE(fast ? "fast" : "exact");
    Decoder plain({.fast = fast}), jumping({.fast = fast});
    auto want = plain.DecodeRegion(S(jpeg), crop, out, out);
    ASSERT_FALSE(want.ok());  // libjpeg refuses the table
    EXPECT_NE(want.status().message().find("Bogus Huffman table definition"), std::string::npos)
        << want.status().ToString();
    JpegRowIndex index(1);
    for (int pass = 0; pass < 2; ++pass) {  // the walk, then a jump
      SCOPED_TRACE("pass " + std::to_string(pass));
      auto got = jumping.DecodeRegion(S(jpeg), crop, out, out, RowIndexRef{&index, 0});
      ASSERT_FALSE(got.ok());
      EXPECT_EQ(got.status().code(), want.status().code());
      EXPECT_EQ(got.status().message(), want.status().message());
    }
    EXPECT_EQ(index.jumps(), 0);  // nothing remembered from a table it refused
  }
}

TEST(DecodeRowJump, MemoryBudgetIsKept) {
  const Bytes jpeg = EncodeJpeg(Pattern(320, 480, 3, 4), JpegSpec{});
  const auto crops = JumpCrops(320, 480, 16, 8, 17, 2, {1, 2});
  JpegRowIndex none(3, 0);  // nothing fits: every jump walks the rows from the top
  ExpectSameAsWithoutIndex(none, 2, jpeg, crops, "no budget");
  EXPECT_GT(none.jumps(), 0);
  EXPECT_EQ(none.crops(), 0);
  EXPECT_EQ(none.bytes_used(), 3 * sizeof(void*));
  JpegRowIndex some(3, 3 * sizeof(void*) + 400);
  ExpectSameAsWithoutIndex(some, 0, jpeg, crops, "small budget");
  ExpectSameAsWithoutIndex(some, 1, jpeg, crops, "small budget, another sample");
  EXPECT_LE(some.bytes_used(), 3 * sizeof(void*) + 400);
  EXPECT_GT(some.bytes_used(), 3 * sizeof(void*));
}

// ---------------------------------------------------------------------------
// JPEG: rewritten with a restart marker after every MCU (shards), and cut by
// those markers.

// Every kind of JPEG the decoder reads, for the rewrite.
std::vector<std::pair<std::string, Bytes>> RewriteCorpus() {
  std::vector<std::pair<std::string, JpegSpec>> specs;
  auto add = [&](std::string what, auto edit) {
    JpegSpec spec;
    edit(spec);
    specs.push_back({std::move(what), spec});
  };
  add("4:2:0", [](JpegSpec&) {});
  add("4:2:0 optimized q50", [](JpegSpec& s) { s.optimize = true, s.quality = 50; });
  add("4:2:2", [](JpegSpec& s) { s.v_samp = 1; });
  add("4:4:4 q100", [](JpegSpec& s) { s.h_samp = s.v_samp = 1, s.quality = 100; });
  add("4:4:0", [](JpegSpec& s) { s.h_samp = 1; });
  add("4:1:1", [](JpegSpec& s) { s.h_samp = 4, s.v_samp = 1; });
  add("sampling 2x2 Cr 2x1", [](JpegSpec& s) { s.cr_h_samp = 2; });
  add("gray", [](JpegSpec& s) { s.kind = Kind::kGray; });
  add("progressive", [](JpegSpec& s) { s.progressive = true; });
  add("progressive gray", [](JpegSpec& s) { s.progressive = true, s.kind = Kind::kGray; });
  add("arithmetic", [](JpegSpec& s) { s.arith = true; });
  add("arithmetic progressive", [](JpegSpec& s) { s.arith = s.progressive = true; });
  add("restart every row", [](JpegSpec& s) { s.restart_rows = 1; });
  add("restart every 3 MCUs", [](JpegSpec& s) { s.restart_mcus = 3; });
  add("cmyk", [](JpegSpec& s) { s.kind = Kind::kCmyk; });
  add("ycck", [](JpegSpec& s) { s.kind = Kind::kYcck; });
  std::vector<std::pair<std::string, Bytes>> corpus;
  uint32_t seed = 40;
  for (const auto& [what, spec] : specs) {
    const int c = spec.kind == Kind::kGray ? 1 : (spec.kind == Kind::kYcc ? 3 : 4);
    corpus.push_back({what, EncodeJpeg(Pattern(283 + int(seed % 7) * 9, 229, c, seed), spec)});
    ++seed;
  }
  return corpus;
}

Bytes RawDecode(const Bytes& jpeg) {  // libjpeg's own output (CMYK stays CMYK)
  jpeg_decompress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, jpeg.data(), static_cast<unsigned long>(jpeg.size()));
  jpeg_read_header(&cinfo, TRUE);
  jpeg_start_decompress(&cinfo);
  const size_t row = size_t{cinfo.output_width} * static_cast<size_t>(cinfo.output_components);
  Bytes out(row * cinfo.output_height);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW r = out.data() + row * cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, &r, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return out;
}

TEST(DecodeRestart, RewriteKeepsEveryPixelOfEveryKind) {
  for (const auto& [what, jpeg] : RewriteCorpus()) {
    SCOPED_TRACE(what);
    auto r = RewriteWithRestarts(S(jpeg));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(RawDecode(r->bytes), RawDecode(jpeg));
    Decoder a, b;
    auto want = a.DecodeFull(S(jpeg));
    auto got = b.DecodeFull(S(r->bytes));
    ASSERT_TRUE(want.ok() && got.ok());
    ASSERT_EQ(got->width, want->width);
    ASSERT_EQ(got->height, want->height);
    for (int y = 0; y < want->height; ++y) {
      ASSERT_EQ(std::memcmp(got->data + y * got->stride, want->data + y * want->stride,
                            size_t(want->width) * 3),
                0)
          << "row " << y;
    }
    // Baseline, a marker after every MCU, and a row table that says where
    // each row starts.
    internal::JpegLayout layout;
    ASSERT_TRUE(internal::ParseJpegLayout(S(r->bytes), &layout));
    EXPECT_EQ(layout.restart_interval, 1);
    EXPECT_EQ(r->width, want->width);
    EXPECT_EQ(r->height, want->height);
    EXPECT_EQ(r->scan_offset, layout.data_start);
    ASSERT_EQ(layout.row_table_rows, layout.mcu_rows);
    std::vector<uint32_t> rows;
    ASSERT_TRUE(internal::FindRestartRows(S(r->bytes), layout, &rows));
    for (int i = 0; i < layout.mcu_rows; ++i) {
      const uint8_t* e = r->bytes.data() + layout.row_table_at + 4 * i;
      EXPECT_EQ(uint32_t(e[0]) << 24 | uint32_t(e[1]) << 16 | uint32_t(e[2]) << 8 | e[3],
                rows[size_t(i)]);
    }
    // Rewriting the rewritten file keeps the pixels, with one table (the
    // old one is dropped).
    auto again = RewriteWithRestarts(S(r->bytes));
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(RawDecode(again->bytes), RawDecode(jpeg));
    internal::JpegLayout again_layout;
    ASSERT_TRUE(internal::ParseJpegLayout(S(again->bytes), &again_layout));
    EXPECT_EQ(again_layout.row_table_rows, again_layout.mcu_rows);
    const Bytes id(std::begin(internal::kRowTableId), std::end(internal::kRowTableId));
    EXPECT_EQ(std::search(again->bytes.begin() + again_layout.row_table_at, again->bytes.end(),
                          id.begin(), id.end()),
              again->bytes.end());
  }
}

TEST(DecodeRestart, BitCopyAndTranscodeGiveTheSamePixels) {
  // Baseline files take the bit copy; the same file made progressive takes
  // libjpeg's transcode; both decode to the original's pixels and both
  // carry a row table that FindRestartRows agrees with.
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    JpegSpec base;
    base.optimize = seed % 2 == 0;  // tables made for the image: some DC categories absent
    base.h_samp = seed % 3 == 0 ? 1 : 2;
    const Pixels px = Pattern(97 + int(seed) * 31, 61 + int(seed) * 17, 3, seed);
    JpegSpec prog = base;
    prog.progressive = true;
    for (const JpegSpec& spec : {base, prog}) {
      const Bytes jpeg = EncodeJpeg(px, spec);
      auto r = RewriteWithRestarts(S(jpeg));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(RawDecode(r->bytes), RawDecode(jpeg)) << "seed " << seed;
      if (!spec.progressive && !spec.optimize) {  // the bit copy: the header kept as it was
        internal::JpegLayout src;
        ASSERT_TRUE(internal::ParseJpegLayout(S(jpeg), &src));
        EXPECT_TRUE(std::equal(jpeg.begin(), jpeg.begin() + ptrdiff_t(src.sos_at),
                               r->bytes.begin()));
      }
      internal::JpegLayout layout;
      ASSERT_TRUE(internal::ParseJpegLayout(S(r->bytes), &layout));
      EXPECT_EQ(r->scan_offset, layout.data_start);
      std::vector<uint32_t> rows;
      ASSERT_TRUE(internal::FindRestartRows(S(r->bytes), layout, &rows));
      ASSERT_EQ(layout.row_table_rows, int(rows.size()));
      for (size_t i = 0; i < rows.size(); ++i) {
        const uint8_t* e = r->bytes.data() + layout.row_table_at + 4 * i;
        EXPECT_EQ(uint32_t(e[0]) << 24 | uint32_t(e[1]) << 16 | uint32_t(e[2]) << 8 | e[3],
                  rows[i]);
      }
    }
  }
}

TEST(DecodeRestart, RewriteKeepsMarkers) {
  // An APP1 Exif segment and a comment survive; the pixels stay as stored.
  Bytes jpeg = EncodeJpeg(64, 48);
  const Bytes extra = {0xFF, 0xE1, 0, 8, 'E', 'x', 'i', 'f', 0, 0,
                       0xFF, 0xFE, 0, 7, 'h', 'e', 'l', 'l', 'o'};
  jpeg.insert(jpeg.begin() + 2, extra.begin(), extra.end());
  auto r = RewriteWithRestarts(S(jpeg));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto find = [&](const Bytes& seg) {
    return std::search(r->bytes.begin(), r->bytes.end(), seg.begin(), seg.end()) !=
           r->bytes.end();
  };
  EXPECT_TRUE(find(Bytes(extra.begin(), extra.begin() + 10)));
  EXPECT_TRUE(find(Bytes(extra.begin() + 10, extra.end())));
  EXPECT_EQ(RawDecode(r->bytes), RawDecode(jpeg));
}

TEST(DecodeRestart, CropsHaveTheOriginalsPixelsAtEveryScale) {
  uint32_t seed = 70;
  for (const auto& [what, jpeg] : RewriteCorpus()) {
    auto r = RewriteWithRestarts(S(jpeg));
    ASSERT_TRUE(r.ok()) << what;
    internal::JpegLayout layout;
    ASSERT_TRUE(internal::ParseJpegLayout(S(r->bytes), &layout));
    const auto crops = JumpCrops(r->width, r->height, layout.mcu_h, 12, seed++, 2);
    ExpectSameRegions(jpeg, r->bytes, RowIndexRef{}, crops, what);
    // With a row index too (the restart cut needs none and ignores it).
    JpegRowIndex index(1);
    ExpectSameRegions(jpeg, r->bytes, RowIndexRef{&index, 0}, crops, what + ", index");
    EXPECT_EQ(index.jumps(), 0) << what;
    if (HasFailure()) return;
  }
}

TEST(DecodeRestart, AFileWithoutTableIsCutByCountingMarkers) {
  // A marker after every MCU from another encoder, with no row table.
  JpegSpec spec;
  spec.restart_mcus = 1;
  const Bytes jpeg = EncodeJpeg(Pattern(301, 263, 3, 5), spec);
  internal::JpegLayout layout;
  ASSERT_TRUE(internal::ParseJpegLayout(S(jpeg), &layout));
  ASSERT_EQ(layout.restart_interval, 1);
  ASSERT_EQ(layout.row_table_rows, 0);
  const Bytes plain = EncodeJpeg(Pattern(301, 263, 3, 5), JpegSpec{});
  ExpectSameRegions(plain, jpeg, RowIndexRef{}, JumpCrops(301, 263, 16, 10, 3), "no table");
}

TEST(DecodeRestart, AWrongRowTableIsNotTrusted) {
  const Bytes jpeg = EncodeJpeg(Pattern(320, 288, 3, 6), JpegSpec{});
  auto r = RewriteWithRestarts(S(jpeg));
  ASSERT_TRUE(r.ok());
  internal::JpegLayout layout;
  ASSERT_TRUE(internal::ParseJpegLayout(S(r->bytes), &layout));
  const auto crops = JumpCrops(320, 288, 16, 10, 8);
  // Each entry in turn pointing one byte off, past the end, or at 0.
  for (int row = 0; row < layout.mcu_rows; ++row) {
    if (row % 3 != 1) continue;
    for (uint32_t bad : {1u, 0xFFFFFFu, 0u}) {
      Bytes edited = r->bytes;
      uint8_t* e = edited.data() + layout.row_table_at + 4 * row;
      const uint32_t v = (uint32_t(e[0]) << 24 | uint32_t(e[1]) << 16 | uint32_t(e[2]) << 8 | e[3]);
      const uint32_t w = bad == 1u ? v + 1 : bad;
      e[0] = uint8_t(w >> 24), e[1] = uint8_t(w >> 16), e[2] = uint8_t(w >> 8), e[3] = uint8_t(w);
      ExpectSameRegions(jpeg, edited, RowIndexRef{}, crops,
                        "row " + std::to_string(row) + " bad " + std::to_string(bad));
      if (HasFailure()) return;
    }
  }
}

TEST(DecodeRestart, TruncatedOrCorruptCutsNeverGiveOtherPixels) {
  const Bytes jpeg = EncodeJpeg(Pattern(256, 256, 3, 9), JpegSpec{});
  auto r = RewriteWithRestarts(S(jpeg));
  ASSERT_TRUE(r.ok());
  const Rect crop{64, 96, 96, 64};
  Decoder dec;
  auto whole = dec.DecodeRegion(S(r->bytes), Fixed(crop), 96, 64);
  ASSERT_TRUE(whole.ok());
  Pixels ref{whole->image.width, whole->image.height, 3, {}};
  for (int y = 0; y < ref.h; ++y) {
    const uint8_t* row = whole->image.data + size_t(y) * whole->image.stride;
    ref.px.insert(ref.px.end(), row, row + size_t(ref.w) * 3);
  }
  std::mt19937 rng(1);
  for (size_t len = r->scan_offset; len < r->bytes.size(); len += 1 + rng() % 97) {
    Bytes cut(r->bytes.begin(), r->bytes.begin() + ptrdiff_t(len));
    auto got = dec.DecodeRegion(S(cut), Fixed(crop), 96, 64);
    if (got.ok()) {
      EXPECT_TRUE(SameArea(got->image, ref, 0, 0)) << "length " << len;
    }
  }
  for (int i = 0; i < 300; ++i) {
    Bytes bad = r->bytes;
    const size_t at = r->scan_offset + rng() % (bad.size() - r->scan_offset);
    bad[at] = uint8_t(rng());
    (void)dec.DecodeRegion(S(bad), Fixed(crop), 96, 64);  // must not crash (ASan)
  }
}

TEST(DecodeRestart, McusOutsideTheCropAreNotDecoded) {
  // The first MCU's data made invalid (eight 1 bits: no Huffman code is
  // all ones). A decode that reaches it fails; a crop of the bottom right
  // corner never does.
  const Bytes jpeg = EncodeJpeg(Pattern(256, 256, 3, 11), JpegSpec{});
  auto r = RewriteWithRestarts(S(jpeg));
  ASSERT_TRUE(r.ok());
  Bytes bad = r->bytes;
  bad[r->scan_offset] = 0xFF;
  bad[r->scan_offset + 1] = 0x00;
  Decoder dec;
  auto full = dec.DecodeFull(S(bad));
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), StatusCode::kCorrupt);
  auto top_left = dec.DecodeRegion(S(bad), Fixed(Rect{0, 0, 64, 64}), 64, 64);
  EXPECT_FALSE(top_left.ok());
  const Rect corner{160, 160, 96, 96};
  auto want = dec.DecodeRegion(S(r->bytes), Fixed(corner), 96, 96);
  ASSERT_TRUE(want.ok());
  Pixels ref{want->image.width, want->image.height, 3, {}};
  for (int y = 0; y < ref.h; ++y) {
    const uint8_t* row = want->image.data + size_t(y) * want->image.stride;
    ref.px.insert(ref.px.end(), row, row + size_t(ref.w) * 3);
  }
  auto got = dec.DecodeRegion(S(bad), Fixed(corner), 96, 96);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(SameArea(got->image, ref, 0, 0));
}

// decode_fuzz findings: the bit copy read only what it needs of a header,
// and took files the decoder refuses. Each is now refused, as it decodes.
TEST(DecodeRestart, FuzzFindingRewriteRefusesWhatTheDecoderRefuses) {
  const Bytes good = EncodeJpeg(48, 32);
  auto find = [&](const Bytes& b, std::initializer_list<uint8_t> marker) {
    const Bytes m(marker);
    return static_cast<size_t>(std::search(b.begin(), b.end(), m.begin(), m.end()) - b.begin());
  };
  std::vector<std::pair<std::string, Bytes>> bad;
  Bytes junk = good;  // SOI, then a byte that is not a marker's 0xFF
  junk[2] = 0xFD;
  bad.push_back({"junk after SOI", junk});
  Bytes unknown = good;  // DQT renamed to a marker libjpeg does not know
  unknown[find(good, {0xFF, 0xDB}) + 1] = 0x26;
  bad.push_back({"unknown marker", unknown});
  Bytes dqt = good;  // a DQT table number past the four there are
  dqt[find(good, {0xFF, 0xDB}) + 4] = 0x0B;
  bad.push_back({"bogus DQT index", dqt});
  for (const auto& [what, bytes] : bad) {
    SCOPED_TRACE(what);
    Decoder dec;
    EXPECT_FALSE(dec.DecodeFull(S(bytes)).ok());
    auto r = RewriteWithRestarts(S(bytes));
    EXPECT_FALSE(r.ok());
  }
}

// decode_fuzz finding: a progressive file whose sampling factors libjpeg's
// upsampler refuses ("Fractional sampling") was transcoded, though it never
// decodes. The input's first 4 bytes are the fuzz target's control bytes.
TEST(DecodeRestart, FuzzFindingFractionalSamplingIsNotRewritten) {
  const Bytes input = ReadRegression("rewrite-fractional-sampling");
  ASSERT_GT(input.size(), 4u);
  const Bytes jpeg(input.begin() + 4, input.end());
  Decoder dec;
  auto full = dec.DecodeFull(S(jpeg));
  ASSERT_FALSE(full.ok());
  EXPECT_NE(full.status().message().find("Fractional sampling"), std::string::npos);
  auto r = RewriteWithRestarts(S(jpeg));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
  EXPECT_NE(r.status().message().find("Fractional sampling"), std::string::npos);
}

// decode_fuzz finding (under ASan): a transcode that failed after libjpeg
// had grown its jpeg_mem_dest buffer freed the first buffer a second time
// (the caller's pointer is updated only when compression finishes). The
// output now goes into a vector destination. The rewrite fails with a
// message, and under ASan frees nothing twice.
TEST(DecodeRestart, FuzzFindingFailedTranscodeFreesOnce) {
  const Bytes input = ReadRegression("rewrite-double-free-after-error");
  ASSERT_GT(input.size(), 4u);
  const Bytes jpeg(input.begin() + 4, input.end());
  auto r = RewriteWithRestarts(S(jpeg));  // fails part-way through its output
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.status().message().empty());
}

TEST(DecodeRestart, RewriteErrors) {
  const Bytes jpeg = EncodeJpeg(200, 100);
  auto truncated = RewriteWithRestarts(S(Bytes(jpeg.begin(), jpeg.begin() + jpeg.size() / 2)));
  ASSERT_FALSE(truncated.ok());
  EXPECT_EQ(truncated.status().code(), StatusCode::kCorrupt);
  EXPECT_NE(truncated.status().message().find("truncated"), std::string::npos)
      << truncated.status().ToString();
  auto garbage = RewriteWithRestarts(S(Bytes{0xFF, 0xD8, 0xFF, 0x00, 1, 2, 3}));
  EXPECT_FALSE(garbage.ok());
  auto big = RewriteWithRestarts(S(jpeg), 200 * 100 - 1);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), StatusCode::kResourceExhausted);
  // A progression that never sends the last bit of the AC coefficients:
  // libjpeg smooths such an image, a sequential copy would not be smoothed.
  std::vector<jpeg_scan_info> scans;
  jpeg_scan_info dc{};
  dc.comps_in_scan = 3;
  dc.component_index[0] = 0, dc.component_index[1] = 1, dc.component_index[2] = 2;
  scans.push_back(dc);
  for (int comp = 0; comp < 3; ++comp) {
    jpeg_scan_info ac{};
    ac.comps_in_scan = 1;
    ac.component_index[0] = comp;
    ac.Ss = 1, ac.Se = 63, ac.Al = 1;
    scans.push_back(ac);
  }
  JpegSpec coarse;
  coarse.progressive = true;
  coarse.scans = &scans;
  auto incomplete = RewriteWithRestarts(S(EncodeJpeg(64, 64, coarse)));
  ASSERT_FALSE(incomplete.ok());
  EXPECT_EQ(incomplete.status().code(), StatusCode::kUnsupported);
  // Only the EOI missing: complete, as the decoder sees it.
  auto no_eoi = RewriteWithRestarts(S(Bytes(jpeg.begin(), jpeg.end() - 2)));
  ASSERT_TRUE(no_eoi.ok()) << no_eoi.status().ToString();
  EXPECT_EQ(RawDecode(no_eoi->bytes), RawDecode(jpeg));
}

}  // namespace
}  // namespace stoker::decode
