// Compose (compose.h): validation, the fused prefix, and the ops that run on
// the decoded crop. The arithmetic follows torchvision.transforms.v2 on
// uint8 tensors (float32 intermediates, truncation back to uint8 where
// torchvision's .to(torch.uint8) truncates); docs/transforms.md has the
// measured agreement per op.
#include "stoker/transform/compose.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

namespace stoker::transform {
namespace {

using Op = TransformOp;
using Type = TransformOp::Type;

std::string OpLabel(const std::span<const Op> ops, size_t i) {
  return std::string(OpName(ops[i].type)) + " (op " + std::to_string(i) + ")";
}

// torchvision's Resize(int) on an h x w image: the shorter side becomes s,
// the longer int(s * long / short).
void ResizedSize(const Op& op, int w, int h, int* new_w, int* new_h) {
  if (op.size[1] > 0) {
    *new_h = op.size[0];
    *new_w = op.size[1];
    return;
  }
  const int s = op.size[0];
  const bool w_short = w <= h;
  const int short_side = w_short ? w : h;
  const int long_side = w_short ? h : w;
  const int new_long =
      static_cast<int>(static_cast<double>(s) * long_side / static_cast<double>(short_side));
  *new_w = w_short ? s : new_long;
  *new_h = w_short ? new_long : s;
}

// The padding [left, top, right, bottom] and crop offsets of a RandomCrop on
// an h x w image (torchvision v2's RandomCrop._get_params): the offsets are
// drawn only where the padded image is larger than the crop, top first.
struct CropDraw {
  int pad[4] = {0, 0, 0, 0};
  int top = 0, left = 0;
  bool fits = true;
  int padded_h = 0, padded_w = 0;
};
CropDraw DrawRandomCrop(const Op& op, int w, int h, SampleRng& rng) {
  CropDraw d;
  for (int i = 0; i < 4; ++i) d.pad[i] = op.padding[i];
  int ph = h + d.pad[1] + d.pad[3];
  int pw = w + d.pad[0] + d.pad[2];
  const int ch = op.size[0], cw = op.size[1];
  if (op.pad_if_needed) {
    if (ph < ch) {
      const int diff = ch - ph;
      d.pad[1] += diff;
      d.pad[3] += diff;
      ph += 2 * diff;
    }
    if (pw < cw) {
      const int diff = cw - pw;
      d.pad[0] += diff;
      d.pad[2] += diff;
      pw += 2 * diff;
    }
  }
  d.padded_h = ph;
  d.padded_w = pw;
  if (ph < ch || pw < cw) {
    d.fits = false;
    return d;
  }
  if (ph > ch) d.top = UniformInt(rng, ph - ch + 1);
  if (pw > cw) d.left = UniformInt(rng, pw - cw + 1);
  return d;
}

// ---- planar image helpers ---------------------------------------------------

uint8_t* OtherBuffer(Scratch& s, const Planar& img, size_t bytes) {
  auto& a = s.planes[0];
  auto& b = s.planes[1];
  auto& dst = (!a.empty() && img.data == a.data()) ? b : a;
  if (dst.size() < bytes) dst.resize(bytes);
  return dst.data();
}

// Source index of padded coordinate i for an axis of n pixels.
inline int PadIndex(int i, int n, Op::PaddingMode mode) {
  if (i >= 0 && i < n) return i;
  switch (mode) {
    case Op::PaddingMode::kConstant: return -1;
    case Op::PaddingMode::kEdge: return std::clamp(i, 0, n - 1);
    case Op::PaddingMode::kReflect: {  // d c b | a b c d | c b a
      if (n == 1) return 0;
      const int period = 2 * (n - 1);
      int m = i % period;
      if (m < 0) m += period;
      return m < n ? m : period - m;
    }
    case Op::PaddingMode::kSymmetric: {  // c b a | a b c d | d c b
      const int period = 2 * n;
      int m = i % period;
      if (m < 0) m += period;
      return m < n ? m : period - 1 - m;
    }
  }
  return -1;
}

// Pads by [left, top, right, bottom] (fill per channel for kConstant), then
// takes the crop (top, left, ch, cw) of the padded image: one pass.
Status PadCrop(Planar& img, const int pad[4], const std::array<int, 3>& fill,
               Op::PaddingMode mode, int top, int left, int ch, int cw, Scratch& s,
               const std::string& label) {
  if (mode == Op::PaddingMode::kReflect &&
      (pad[0] >= img.width || pad[2] >= img.width || pad[1] >= img.height ||
       pad[3] >= img.height) &&
      (pad[0] | pad[1] | pad[2] | pad[3]) != 0) {
    return InvalidArgument(label + ": reflect padding (" + std::to_string(pad[0]) + ", " +
                           std::to_string(pad[1]) + ", " + std::to_string(pad[2]) + ", " +
                           std::to_string(pad[3]) + ") must be smaller than the image (h=" +
                           std::to_string(img.height) + ", w=" + std::to_string(img.width) + ")");
  }
  const size_t plane = static_cast<size_t>(ch) * cw;
  uint8_t* out = OtherBuffer(s, img, plane * img.channels);
  for (int c = 0; c < img.channels; ++c) {
    const uint8_t* src = img.data + c * img.plane();
    uint8_t* dst = out + c * plane;
    const auto f = static_cast<uint8_t>(fill[std::min(c, 2)]);
    for (int y = 0; y < ch; ++y) {
      const int sy = PadIndex(top + y - pad[1], img.height, mode);
      uint8_t* row = dst + static_cast<size_t>(y) * cw;
      if (sy < 0) {
        std::memset(row, f, cw);
        continue;
      }
      const uint8_t* srow = src + static_cast<size_t>(sy) * img.width;
      const int x0 = left - pad[0];
      // The in-image run is a memcpy; the rest is per pixel.
      const int in_lo = std::clamp(-x0, 0, cw);
      const int in_hi = std::clamp(img.width - x0, in_lo, cw);
      for (int x = 0; x < in_lo; ++x) {
        const int sx = PadIndex(x0 + x, img.width, mode);
        row[x] = sx < 0 ? f : srow[sx];
      }
      if (in_hi > in_lo) std::memcpy(row + in_lo, srow + x0 + in_lo, in_hi - in_lo);
      for (int x = in_hi; x < cw; ++x) {
        const int sx = PadIndex(x0 + x, img.width, mode);
        row[x] = sx < 0 ? f : srow[sx];
      }
    }
  }
  img.data = out;
  img.height = ch;
  img.width = cw;
  return Status::Ok();
}

void FlipPlanar(Planar& img, bool horizontal) {
  for (int c = 0; c < img.channels; ++c) {
    uint8_t* p = img.data + c * img.plane();
    if (horizontal) {
      for (int y = 0; y < img.height; ++y) {
        uint8_t* row = p + static_cast<size_t>(y) * img.width;
        std::reverse(row, row + img.width);
      }
    } else {
      for (int y = 0; y < img.height / 2; ++y) {
        std::swap_ranges(p + static_cast<size_t>(y) * img.width,
                         p + static_cast<size_t>(y + 1) * img.width,
                         p + static_cast<size_t>(img.height - 1 - y) * img.width);
      }
    }
  }
}

// Resamples `box` of img to out_w x out_h: Pillow's antialiased bilinear
// (ResizeToCHW) for images, nearest neighbour (the pixel under each output
// pixel's centre) for masks.
void ResizePlanar(Planar& img, const image::Rect& box, int out_w, int out_h, bool mask,
                  Scratch& s) {
  const size_t plane = static_cast<size_t>(out_w) * out_h;
  if (mask) {
    uint8_t* out = OtherBuffer(s, img, plane * img.channels);
    const double sx = box.w / out_w, sy = box.h / out_h;
    std::vector<int>& xs = s.starts;  // reuse: source column of each output
    xs.resize(out_w);
    for (int x = 0; x < out_w; ++x) {
      xs[x] = std::clamp(static_cast<int>(std::floor(box.x + (x + 0.5) * sx)), 0, img.width - 1);
    }
    for (int c = 0; c < img.channels; ++c) {
      for (int y = 0; y < out_h; ++y) {
        const int yy =
            std::clamp(static_cast<int>(std::floor(box.y + (y + 0.5) * sy)), 0, img.height - 1);
        const uint8_t* srow = img.data + c * img.plane() + static_cast<size_t>(yy) * img.width;
        uint8_t* row = out + c * plane + static_cast<size_t>(y) * out_w;
        for (int x = 0; x < out_w; ++x) row[x] = srow[xs[x]];
      }
    }
    img.data = out;
    img.width = out_w;
    img.height = out_h;
    return;
  }
  // Interleave (gray replicated) for the RGB resampler, then keep the planes
  // the image has.
  const size_t n = img.plane();
  if (s.hwc.size() < n * 3) s.hwc.resize(n * 3);
  uint8_t* hwc = s.hwc.data();
  for (int c = 0; c < 3; ++c) {
    const uint8_t* p = img.data + std::min(c, img.channels - 1) * n;
    for (size_t i = 0; i < n; ++i) hwc[3 * i + c] = p[i];
  }
  image::Region region;
  region.image = image::ImageView{hwc, img.width, img.height, static_cast<size_t>(img.width) * 3};
  region.crop = box;
  region.source_width = img.width;
  region.source_height = img.height;
  OutputSpec spec;
  spec.width = out_w;
  spec.height = out_h;
  uint8_t* out = OtherBuffer(s, img, plane * 3);
  ResizeToCHW(region, spec, false, out, s);
  img.data = out;
  img.width = out_w;
  img.height = out_h;
}

// torchvision's _rgb_to_grayscale_image in float32: r * 0.2989, then
// + g * 0.587, + b * 0.114, each add with alpha a fused multiply-add. The
// fused steps are done in double, where they are exact (an 8-bit value times
// a float32 constant plus a float32 below 256 needs under 40 bits), then
// rounded once to float: the fma's result without std::fma, which is a slow
// library call on CPUs without the FMA instruction.
inline float Gray(float r, float g, float b) {
  const double l1 = static_cast<double>(r * 0.2989f);
  const auto l2 = static_cast<float>(static_cast<double>(g) * static_cast<double>(0.587f) + l1);
  return static_cast<float>(static_cast<double>(b) * static_cast<double>(0.114f) +
                            static_cast<double>(l2));
}

void GrayscalePlanar(Planar& img, int out_channels, Scratch& s) {
  const size_t n = img.plane();
  uint8_t* out = OtherBuffer(s, img, n * out_channels);
  const uint8_t* r = img.data;
  const uint8_t* g = img.data + n;
  const uint8_t* b = img.data + 2 * n;
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(Gray(r[i], g[i], b[i]));
  for (int c = 1; c < out_channels; ++c) std::memcpy(out + c * n, out, n);
  img.data = out;
  img.channels = out_channels;
}

// floor() of a value in [0, 2^31) without a libm call (baseline x86-64 has
// no SSE4.1 round): truncation is the floor there, and it vectorises.
inline float FloorNonNeg(float v) { return static_cast<float>(static_cast<int>(v)); }

inline uint8_t ClampTrunc(float v) {
  // clamp_(0, 255) then .to(uint8): truncation toward zero. min/max (not
  // branches) so that the loops vectorise.
  return static_cast<uint8_t>(static_cast<int>(std::min(std::max(v, 0.0f), 255.0f)));
}

// _blend(image, other, ratio) = clamp(image * ratio + other * (1 - ratio)).
void Brightness(Planar& img, float f) {
  const size_t total = img.plane() * img.channels;
  uint8_t* __restrict d = img.data;
  for (size_t i = 0; i < total; ++i) d[i] = ClampTrunc(d[i] * f);
}

void BlendWithGray(Planar& img, float f, bool mean_only) {
  const size_t n = img.plane();
  const float rest = static_cast<float>(1.0 - static_cast<double>(f));
  uint8_t* __restrict r = img.data;
  uint8_t* __restrict g = img.data + n;
  uint8_t* __restrict b = img.data + 2 * n;
  if (mean_only) {  // contrast: blend with the mean of floor(gray)
    // floor(gray) are integers: their sum is exact in an integer (torch's
    // float32 sum is exact too while it stays below 2^24).
    int64_t sum = 0;
    for (size_t i = 0; i < n; ++i) sum += static_cast<int>(Gray(r[i], g[i], b[i]));
    const float mean = static_cast<float>(sum) / static_cast<float>(n);
    const float m = mean * rest;
    uint8_t* __restrict d = img.data;
    for (size_t i = 0; i < 3 * n; ++i) d[i] = ClampTrunc(d[i] * f + m);
    return;
  }
  for (size_t i = 0; i < n; ++i) {  // saturation: blend with floor(gray)
    const float m = FloorNonNeg(Gray(r[i], g[i], b[i])) * rest;
    r[i] = ClampTrunc(r[i] * f + m);
    g[i] = ClampTrunc(g[i] * f + m);
    b[i] = ClampTrunc(b[i] * f + m);
  }
}

// adjust_hue: uint8 -> float [0, 1], RGB -> HSV, h = (h + hue) mod 1, back,
// then .mul(255.999).to(uint8), as torchvision's to_dtype(scale=True). The
// same float32 operations in the same order as torchvision's _rgb_to_hsv and
// _hsv_to_rgb, 4 pixels at a time with GCC/Clang vector extensions: written
// per pixel, the data-dependent selects became branches that mispredict on
// every other pixel (3x slower).
typedef float V4 __attribute__((vector_size(16)));
typedef int32_t I4 __attribute__((vector_size(16)));

inline V4 Trunc(V4 v) { return __builtin_convertvector(__builtin_convertvector(v, I4), V4); }

void Hue(Planar& img, float hue) {
  const size_t n = img.plane();
  uint8_t* __restrict pr = img.data;
  uint8_t* __restrict pg = img.data + n;
  uint8_t* __restrict pb = img.data + 2 * n;
  const float inv255 = static_cast<float>(1.0 / 255.0);
  const V4 zero = {0, 0, 0, 0}, one = zero + 1.0f;
  for (size_t i = 0; i < n; i += 4) {
    const size_t m = std::min<size_t>(4, n - i);
    V4 r = zero, g = zero, b = zero;
    for (size_t k = 0; k < m; ++k) {
      r[k] = pr[i + k];
      g[k] = pg[i + k];
      b[k] = pb[i + k];
    }
    r *= inv255;
    g *= inv255;
    b *= inv255;
    V4 maxc = r > g ? r : g;
    maxc = maxc > b ? maxc : b;
    V4 minc = r < g ? r : g;
    minc = minc < b ? minc : b;
    const I4 eqc = maxc == minc;
    const V4 range = maxc - minc;
    const V4 s = range / (eqc ? one : maxc);
    const V4 div = eqc ? one : range;
    const V4 rc = (maxc - r) / div, gc = (maxc - g) / div, bc = (maxc - b) / div;
    // torchvision multiplies each candidate by its mask.
    const I4 neq_r = maxc != r;
    const I4 eq_g = maxc == g;
    const V4 hg = ((rc + 2.0f) - bc) * ((eq_g & neq_r) ? one : zero);
    const V4 hr = (bc - gc) * (neq_r ? zero : one);
    const V4 hb = ((gc + 4.0f) - rc) * ((neq_r & ~eq_g) ? one : zero);
    V4 h = (hr + hg) + hb;
    // fmod(x, 1) of a positive x is x - floor(x), exactly.
    h = h * static_cast<float>(1.0 / 6.0) + 1.0f;
    h = h - Trunc(h);
    // h.add_(hue).remainder_(1.0): Python's modulo (result in [0, 1)).
    h = h + hue;
    V4 fl = Trunc(h);
    fl = fl > h ? fl - 1.0f : fl;
    h = h - fl;
    const V4 v = maxc;
    const V4 h6 = h * 6.0f;
    const V4 fi = Trunc(h6);
    const V4 f = h6 - fi;
    I4 i6 = __builtin_convertvector(fi, I4);
    i6 = i6 == 6 ? 0 : i6;  // h6 may round up to 6: i.remainder_(6)
    const V4 sxf = s * f;
    const V4 one_minus_s = 1.0f - s;
    auto clamp01 = [&](V4 x) {
      x = x < 0.0f ? zero : x;
      return x > 1.0f ? one : x;
    };
    const V4 q = clamp01((1.0f - sxf) * v);
    const V4 t = clamp01((sxf + one_minus_s) * v);
    const V4 p = clamp01(one_minus_s * v);
    // torchvision's gather of (v, p, q, t) by sector: (v,t,p) (q,v,p)
    // (p,v,t) (p,q,v) (t,p,v) (v,p,q).
    const V4 o0 = ((i6 == 0) | (i6 == 5)) ? v : (i6 == 1 ? q : (i6 == 4 ? t : p));
    const V4 o1 = ((i6 == 1) | (i6 == 2)) ? v : (i6 == 0 ? t : (i6 == 3 ? q : p));
    const V4 o2 = ((i6 == 3) | (i6 == 4)) ? v : (i6 == 2 ? t : (i6 == 5 ? q : p));
    const I4 u0 = __builtin_convertvector(o0 * 255.999f, I4);
    const I4 u1 = __builtin_convertvector(o1 * 255.999f, I4);
    const I4 u2 = __builtin_convertvector(o2 * 255.999f, I4);
    for (size_t k = 0; k < m; ++k) {
      pr[i + k] = static_cast<uint8_t>(u0[k]);
      pg[i + k] = static_cast<uint8_t>(u1[k]);
      pb[i + k] = static_cast<uint8_t>(u2[k]);
    }
  }
}

// torchvision's gaussian kernel: softmax(-(x / sigma)^2) over x =
// linspace(-lim, lim, k), lim = (k - 1) / (2 sqrt 2), in float32.
void GaussianKernel(int k, float sigma, float* w) {
  const float lim = static_cast<float>((k - 1) / (2.0 * std::sqrt(2.0)));
  float mx = -1e30f;
  for (int i = 0; i < k; ++i) {
    // linspace: start + i * step, symmetric halves as torch computes them.
    const float step = k > 1 ? (2 * lim) / static_cast<float>(k - 1) : 0.f;
    const float x = i < k / 2 ? -lim + step * i : lim - step * (k - 1 - i);
    const float z = x / sigma;
    w[i] = -(z * z);
    mx = std::max(mx, w[i]);
  }
  float sum = 0;
  for (int i = 0; i < k; ++i) {
    w[i] = std::exp(w[i] - mx);
    sum += w[i];
  }
  for (int i = 0; i < k; ++i) w[i] /= sum;
}

// Separable blur with reflect padding, rounded half to even back to uint8.
Status Blur(Planar& img, const Op& op, float sigma, Scratch& s, const std::string& label) {
  const int kx = op.kernel_size[0], ky = op.kernel_size[1];
  if (ky > 63) {
    return InvalidArgument(label + ": kernel_size " + std::to_string(ky) +
                           " is larger than 63 rows, which stoker does not support");
  }
  if (kx / 2 >= img.width || ky / 2 >= img.height) {
    return InvalidArgument(label + ": kernel_size (" + std::to_string(kx) + ", " +
                           std::to_string(ky) + ") needs an image larger than its half (h=" +
                           std::to_string(img.height) + ", w=" + std::to_string(img.width) +
                           ") for reflect padding");
  }
  const size_t n = img.plane();
  s.floats.resize(static_cast<size_t>(kx + ky) + n);
  float* wx = s.floats.data();
  float* wy = wx + kx;
  float* tmp = wy + ky;
  GaussianKernel(kx, sigma, wx);
  GaussianKernel(ky, sigma, wy);
  const int rx = kx / 2, ry = ky / 2;
  // The reflected source column of each (output column, tap), once.
  std::vector<int32_t>& cols = s.starts;
  cols.resize(static_cast<size_t>(img.width) * kx);
  for (int x = 0; x < img.width; ++x)
    for (int k = 0; k < kx; ++k)
      cols[static_cast<size_t>(x) * kx + k] =
          PadIndex(x + k - rx, img.width, Op::PaddingMode::kReflect);
  const float* rows[64];  // ky <= 63: checked below
  for (int c = 0; c < img.channels; ++c) {
    uint8_t* p = img.data + c * n;
    for (int y = 0; y < img.height; ++y) {  // horizontal into tmp
      const uint8_t* row = p + static_cast<size_t>(y) * img.width;
      float* t = tmp + static_cast<size_t>(y) * img.width;
      for (int x = 0; x < img.width; ++x) {
        const int32_t* ix = cols.data() + static_cast<size_t>(x) * kx;
        float acc = 0;
        for (int k = 0; k < kx; ++k) acc += wx[k] * row[ix[k]];
        t[x] = acc;
      }
    }
    for (int y = 0; y < img.height; ++y) {  // vertical back into p
      for (int k = 0; k < ky; ++k) {
        rows[k] = tmp + static_cast<size_t>(PadIndex(y + k - ry, img.height,
                                                     Op::PaddingMode::kReflect)) * img.width;
      }
      uint8_t* row = p + static_cast<size_t>(y) * img.width;
      for (int x = 0; x < img.width; ++x) {
        float acc = 0;
        for (int k = 0; k < ky; ++k) acc += wy[k] * rows[k][x];
        // Round half to even (torch's round_) by the 2^23 trick: acc is in
        // [0, 255.x], where adding 2^23 leaves no fraction bits.
        const float rounded = (acc + 8388608.0f) - 8388608.0f;
        row[x] = static_cast<uint8_t>(std::clamp(rounded, 0.0f, 255.0f));
      }
    }
  }
  return Status::Ok();
}

bool IsRange(const std::array<double, 2>& r, double center) {
  return !(r[0] == center && r[1] == center);
}

}  // namespace

const char* OpName(TransformOp::Type type) {
  switch (type) {
    case Type::kRandomResizedCrop: return "RandomResizedCrop";
    case Type::kResize: return "Resize";
    case Type::kCenterCrop: return "CenterCrop";
    case Type::kRandomCrop: return "RandomCrop";
    case Type::kPad: return "Pad";
    case Type::kRandomHorizontalFlip: return "RandomHorizontalFlip";
    case Type::kRandomVerticalFlip: return "RandomVerticalFlip";
    case Type::kColorJitter: return "ColorJitter";
    case Type::kRandomGrayscale: return "RandomGrayscale";
    case Type::kGrayscale: return "Grayscale";
    case Type::kGaussianBlur: return "GaussianBlur";
    case Type::kNormalize: return "Normalize";
    case Type::kToDtype: return "ToDtype";
  }
  return "?";
}

std::vector<TransformOp> ExpandOps(const TransformOptions& t) {
  if (t.kind == TransformOptions::Kind::kCompose) return t.ops;
  std::vector<TransformOp> ops;
  if (t.kind == TransformOptions::Kind::kTrain) {
    Op crop;
    crop.type = Type::kRandomResizedCrop;
    crop.size = {t.size, t.size};
    crop.scale = t.scale;
    crop.ratio = t.ratio;
    ops.push_back(crop);
    Op flip;
    flip.type = Type::kRandomHorizontalFlip;
    flip.p = t.flip_probability;
    ops.push_back(flip);
  } else {
    Op resize;
    resize.type = Type::kResize;
    resize.size = {RoundHalfEven(t.size / t.center_fraction), 0};
    ops.push_back(resize);
    Op crop;
    crop.type = Type::kCenterCrop;
    crop.size = {t.size, t.size};
    ops.push_back(crop);
  }
  if (t.normalize) {
    Op dtype;
    dtype.type = Type::kToDtype;
    dtype.scale_values = true;
    ops.push_back(dtype);
    Op norm;
    norm.type = Type::kNormalize;
    norm.mean.assign(t.mean.begin(), t.mean.end());
    norm.std.assign(t.std.begin(), t.std.end());
    ops.push_back(norm);
  }
  return ops;
}

Result<OutputShape> ComposeOutputShape(const TransformOptions& t) {
  if (t.kind != TransformOptions::Kind::kCompose) {
    if (t.size <= 0) return InvalidArgument("transform size must be positive");
    if (!(t.center_fraction > 0 && t.center_fraction <= 1)) {
      return InvalidArgument("center_fraction must be in (0, 1]");
    }
  }
  const std::vector<TransformOp> ops = ExpandOps(t);
  return OpsOutputShape(ops);
}

Result<OutputShape> OpsOutputShape(std::span<const TransformOp> ops) {
  if (ops.empty()) return InvalidArgument("Compose has no ops");
  OutputShape shape;
  bool known = false;  // height and width fixed for every sample
  bool is_float = false;
  size_t unknown_op = ops.size();  // the Resize(int) that made the size unknown
  auto bad = [&](size_t i, const std::string& what) {
    return InvalidArgument(OpLabel(ops, i) + ": " + what);
  };
  auto positive_size = [&](size_t i) -> Status {
    if (ops[i].size[0] <= 0 || ops[i].size[1] <= 0) {
      return bad(i, "size must be positive, got (" + std::to_string(ops[i].size[0]) + ", " +
                        std::to_string(ops[i].size[1]) + ")");
    }
    return Status::Ok();
  };
  auto fill_ok = [&](size_t i) -> Status {
    for (int f : ops[i].fill) {
      if (f < 0 || f > 255) return bad(i, "fill must be in [0, 255], got " + std::to_string(f));
    }
    return Status::Ok();
  };
  auto probability = [&](size_t i) -> Status {
    if (!(ops[i].p >= 0 && ops[i].p <= 1)) {
      return bad(i, "p must be in [0, 1], got " + std::to_string(ops[i].p));
    }
    return Status::Ok();
  };
  auto needs_rgb = [&](size_t i) -> Status {
    if (shape.channels != 3) return bad(i, "needs a 3-channel image (it follows Grayscale(1))");
    return Status::Ok();
  };
  for (size_t i = 0; i < ops.size(); ++i) {
    const Op& op = ops[i];
    if (is_float && op.type != Type::kNormalize) {
      return bad(i, "comes after ToDtype; only Normalize may follow ToDtype (put ToDtype and "
                    "Normalize last)");
    }
    switch (op.type) {
      case Type::kRandomResizedCrop:
        STOKER_RETURN_IF_ERROR(positive_size(i));
        if (!(op.scale[0] > 0 && op.scale[0] <= op.scale[1] && op.scale[1] <= 1)) {
          return bad(i, "scale must satisfy 0 < min <= max <= 1");
        }
        if (!(op.ratio[0] > 0 && op.ratio[0] <= op.ratio[1])) {
          return bad(i, "ratio must satisfy 0 < min <= max");
        }
        shape.height = op.size[0];
        shape.width = op.size[1];
        known = true;
        break;
      case Type::kResize:
        if (op.size[0] <= 0 || op.size[1] < 0) {
          return bad(i, "size must be positive, got (" + std::to_string(op.size[0]) + ", " +
                            std::to_string(op.size[1]) + ")");
        }
        if (op.size[1] > 0) {
          shape.height = op.size[0];
          shape.width = op.size[1];
          known = true;
        } else if (known) {
          ResizedSize(op, shape.width, shape.height, &shape.width, &shape.height);
        } else {
          unknown_op = i;
        }
        break;
      case Type::kCenterCrop:
      case Type::kRandomCrop:
        STOKER_RETURN_IF_ERROR(positive_size(i));
        if (op.type == Type::kRandomCrop) {
          for (int v : op.padding) {
            if (v < 0) return bad(i, "padding must be >= 0");
          }
          STOKER_RETURN_IF_ERROR(fill_ok(i));
        }
        shape.height = op.size[0];
        shape.width = op.size[1];
        known = true;
        break;
      case Type::kPad:
        for (int v : op.padding) {
          if (v < 0) return bad(i, "padding must be >= 0");
        }
        STOKER_RETURN_IF_ERROR(fill_ok(i));
        shape.width += op.padding[0] + op.padding[2];
        shape.height += op.padding[1] + op.padding[3];
        break;
      case Type::kRandomHorizontalFlip:
      case Type::kRandomVerticalFlip:
        STOKER_RETURN_IF_ERROR(probability(i));
        break;
      case Type::kColorJitter: {
        STOKER_RETURN_IF_ERROR(needs_rgb(i));
        const std::pair<const char*, const std::array<double, 2>*> factors[] = {
            {"brightness", &op.brightness}, {"contrast", &op.contrast},
            {"saturation", &op.saturation}};
        for (const auto& [name, r] : factors) {
          if (!((*r)[0] >= 0 && (*r)[0] <= (*r)[1] && std::isfinite((*r)[1]))) {
            return bad(i, std::string(name) + " range must satisfy 0 <= min <= max");
          }
        }
        if (!(op.hue[0] >= -0.5 && op.hue[0] <= op.hue[1] && op.hue[1] <= 0.5)) {
          return bad(i, "hue range must satisfy -0.5 <= min <= max <= 0.5");
        }
        break;
      }
      case Type::kRandomGrayscale:
        STOKER_RETURN_IF_ERROR(needs_rgb(i));
        STOKER_RETURN_IF_ERROR(probability(i));
        break;
      case Type::kGrayscale:
        STOKER_RETURN_IF_ERROR(needs_rgb(i));
        if (op.num_output_channels != 1 && op.num_output_channels != 3) {
          return bad(i, "num_output_channels must be 1 or 3, got " +
                            std::to_string(op.num_output_channels));
        }
        shape.channels = op.num_output_channels;
        break;
      case Type::kGaussianBlur:
        for (int k : op.kernel_size) {
          if (k <= 0 || k % 2 == 0) {
            return bad(i, "kernel_size must be odd and positive, got " + std::to_string(k));
          }
          if (k > 63) return bad(i, "kernel_size must be at most 63, got " + std::to_string(k));
        }
        if (!(op.sigma[0] > 0 && op.sigma[0] <= op.sigma[1] && std::isfinite(op.sigma[1]))) {
          return bad(i, "sigma must satisfy 0 < min <= max");
        }
        break;
      case Type::kToDtype:
        is_float = true;
        break;
      case Type::kNormalize: {
        if (!is_float) {
          return bad(i, "needs a float image: put ToDtype(torch.float32, scale=True) before it");
        }
        const size_t c = static_cast<size_t>(shape.channels);
        if (op.mean.size() != c || op.std.size() != c) {
          return bad(i, "mean and std need " + std::to_string(c) + " values (one per channel), got " +
                            std::to_string(op.mean.size()) + " and " +
                            std::to_string(op.std.size()));
        }
        for (float v : op.std) {
          if (!(v > 0)) return bad(i, "std must be positive");
        }
        for (float v : op.mean) {
          if (!std::isfinite(v)) return bad(i, "mean must be finite");
        }
        break;
      }
    }
  }
  if (!known) {
    return InvalidArgument(
        "Compose: the output size is not fixed (it depends on " +
        (unknown_op < ops.size() ? OpLabel(ops, unknown_op) + " (an int size keeps the aspect ratio)"
                                 : std::string("the decoded image's size")) +
        "), but a batch needs one shape: add a crop (CenterCrop, RandomCrop, "
        "RandomResizedCrop) or use Resize((h, w))");
  }
  shape.is_float = is_float;
  return shape;
}

FusedPrefix PlanFusedPrefix(std::span<const TransformOp> ops, int width, int height,
                            SampleRng& rng) {
  FusedPrefix f;
  f.crop = image::Rect{0, 0, static_cast<double>(width), static_cast<double>(height)};
  f.out_w = width;
  f.out_h = height;
  bool resized = false;
  // A crop of (top, left, ch, cw) of the current (mirrored, resized) image.
  auto crop = [&](int top, int left, int ch, int cw) {
    const int x = f.hflip ? f.out_w - left - cw : left;
    const int y = f.vflip ? f.out_h - top - ch : top;
    const double sx = f.crop.w / f.out_w, sy = f.crop.h / f.out_h;
    f.crop = image::Rect{f.crop.x + x * sx, f.crop.y + y * sy, cw * sx, ch * sy};
    f.out_w = cw;
    f.out_h = ch;
  };
  size_t i = 0;
  for (; i < ops.size(); ++i) {
    const Op& op = ops[i];
    bool fused = true;
    switch (op.type) {
      case Type::kRandomResizedCrop: {
        if (resized) {
          fused = false;
          break;
        }
        const image::Rect r =
            RandomResizedCropRect(f.out_w, f.out_h, op.scale, op.ratio, rng);
        crop(static_cast<int>(r.y), static_cast<int>(r.x), static_cast<int>(r.h),
             static_cast<int>(r.w));
        f.out_h = op.size[0];
        f.out_w = op.size[1];
        resized = true;
        break;
      }
      case Type::kResize:
        if (resized) {
          fused = false;
          break;
        }
        ResizedSize(op, f.out_w, f.out_h, &f.out_w, &f.out_h);
        resized = true;
        break;
      case Type::kCenterCrop: {
        const int ch = op.size[0], cw = op.size[1];
        if (ch > f.out_h || cw > f.out_w) {
          fused = false;  // pads: ApplyOps
          break;
        }
        crop(RoundHalfEven((f.out_h - ch) / 2.0), RoundHalfEven((f.out_w - cw) / 2.0), ch, cw);
        break;
      }
      case Type::kRandomCrop: {
        const bool padded = (op.padding[0] | op.padding[1] | op.padding[2] | op.padding[3]) != 0;
        if (padded || op.size[0] > f.out_h || op.size[1] > f.out_w) {
          fused = false;  // pads or fails: ApplyOps
          break;
        }
        const CropDraw d = DrawRandomCrop(op, f.out_w, f.out_h, rng);
        crop(d.top, d.left, op.size[0], op.size[1]);
        break;
      }
      case Type::kRandomHorizontalFlip:
        if (rng.Uniform() < op.p) f.hflip = !f.hflip;
        break;
      case Type::kRandomVerticalFlip:
        if (rng.Uniform() < op.p) f.vflip = !f.vflip;
        break;
      default:
        fused = false;
        break;
    }
    if (!fused) break;
  }
  f.next_op = i;
  return f;
}

Status ApplyOps(std::span<const TransformOp> ops, size_t first, Planar& img, SampleRng& rng,
                bool mask, Scratch& scratch) {
  for (size_t i = first; i < ops.size(); ++i) {
    const Op& op = ops[i];
    switch (op.type) {
      case Type::kRandomResizedCrop: {
        const image::Rect r = RandomResizedCropRect(img.width, img.height, op.scale, op.ratio, rng);
        ResizePlanar(img, r, op.size[1], op.size[0], mask, scratch);
        break;
      }
      case Type::kResize: {
        int w = 0, h = 0;
        ResizedSize(op, img.width, img.height, &w, &h);
        const image::Rect all{0, 0, static_cast<double>(img.width),
                              static_cast<double>(img.height)};
        ResizePlanar(img, all, w, h, mask, scratch);
        break;
      }
      case Type::kCenterCrop: {
        const int ch = op.size[0], cw = op.size[1];
        // torchvision pads with 0 where the crop is larger, then crops.
        int pad[4] = {cw > img.width ? (cw - img.width) / 2 : 0,
                      ch > img.height ? (ch - img.height) / 2 : 0,
                      cw > img.width ? (cw - img.width + 1) / 2 : 0,
                      ch > img.height ? (ch - img.height + 1) / 2 : 0};
        const int ph = img.height + pad[1] + pad[3], pw = img.width + pad[0] + pad[2];
        STOKER_RETURN_IF_ERROR(PadCrop(img, pad, {0, 0, 0}, Op::PaddingMode::kConstant,
                                       RoundHalfEven((ph - ch) / 2.0),
                                       RoundHalfEven((pw - cw) / 2.0), ch, cw, scratch,
                                       OpLabel(ops, i)));
        break;
      }
      case Type::kRandomCrop: {
        const CropDraw d = DrawRandomCrop(op, img.width, img.height, rng);
        if (!d.fits) {
          return InvalidArgument(
              OpLabel(ops, i) + ": crop (h=" + std::to_string(op.size[0]) + ", w=" +
              std::to_string(op.size[1]) + ") is larger than the " +
              (op.padding[0] | op.padding[1] | op.padding[2] | op.padding[3] ? "padded " : "") +
              "image (h=" + std::to_string(d.padded_h) + ", w=" + std::to_string(d.padded_w) +
              "); set pad_if_needed=True to pad it");
        }
        STOKER_RETURN_IF_ERROR(PadCrop(img, d.pad, mask ? std::array<int, 3>{0, 0, 0} : op.fill,
                                       op.padding_mode, d.top, d.left, op.size[0], op.size[1],
                                       scratch, OpLabel(ops, i)));
        break;
      }
      case Type::kPad: {
        const int pad[4] = {op.padding[0], op.padding[1], op.padding[2], op.padding[3]};
        STOKER_RETURN_IF_ERROR(PadCrop(img, pad, mask ? std::array<int, 3>{0, 0, 0} : op.fill,
                                       op.padding_mode, 0, 0,
                                       img.height + pad[1] + pad[3], img.width + pad[0] + pad[2],
                                       scratch, OpLabel(ops, i)));
        break;
      }
      case Type::kRandomHorizontalFlip:
        if (rng.Uniform() < op.p) FlipPlanar(img, true);
        break;
      case Type::kRandomVerticalFlip:
        if (rng.Uniform() < op.p) FlipPlanar(img, false);
        break;
      case Type::kColorJitter: {
        // torch.randperm(4) as a Fisher-Yates shuffle (3 draws), then one
        // factor per set range: brightness, contrast, saturation, hue.
        int order[4] = {0, 1, 2, 3};
        for (int k = 3; k > 0; --k) std::swap(order[k], order[UniformInt(rng, k + 1)]);
        double factor[4] = {1, 1, 1, 0};
        bool set[4] = {IsRange(op.brightness, 1), IsRange(op.contrast, 1),
                       IsRange(op.saturation, 1), IsRange(op.hue, 0)};
        const std::array<double, 2>* ranges[4] = {&op.brightness, &op.contrast, &op.saturation,
                                                  &op.hue};
        for (int k = 0; k < 4; ++k) {
          if (set[k]) factor[k] = rng.Uniform((*ranges[k])[0], (*ranges[k])[1]);
        }
        if (mask) break;
        for (int k : order) {
          if (!set[k]) continue;
          const auto f = static_cast<float>(factor[k]);
          switch (k) {
            case 0: Brightness(img, f); break;
            case 1: BlendWithGray(img, f, true); break;
            case 2: BlendWithGray(img, f, false); break;
            case 3:
              if (factor[k] != 0) Hue(img, f);
              break;
          }
        }
        break;
      }
      case Type::kRandomGrayscale:
        if (rng.Uniform() < op.p && !mask) GrayscalePlanar(img, 3, scratch);
        break;
      case Type::kGrayscale:
        if (!mask) GrayscalePlanar(img, op.num_output_channels, scratch);
        break;
      case Type::kGaussianBlur: {
        const auto sigma = static_cast<float>(rng.Uniform(op.sigma[0], op.sigma[1]));
        if (!mask) STOKER_RETURN_IF_ERROR(Blur(img, op, sigma, scratch, OpLabel(ops, i)));
        break;
      }
      case Type::kNormalize:
      case Type::kToDtype:
        break;
    }
  }
  return Status::Ok();
}

OutputFormat OutputFormatOf(std::span<const TransformOp> ops) {
  OutputFormat f;
  for (const Op& op : ops) {
    if (op.type == Type::kToDtype) {
      f.is_float = true;
      f.scale_values = op.scale_values;
    } else if (op.type == Type::kNormalize) {
      for (size_t c = 0; c < 3; ++c) {
        const size_t k = std::min(c, op.mean.size() - 1);
        f.mean[c] = op.mean[k];
        f.std[c] = op.std[k];
      }
    }
  }
  return f;
}

void ResizeMaskNearest(Planar& img, const image::Rect& box, int out_w, int out_h, bool hflip,
                       bool vflip, Scratch& scratch) {
  ResizePlanar(img, box, out_w, out_h, true, scratch);
  if (hflip) FlipPlanar(img, true);
  if (vflip) FlipPlanar(img, false);
}

std::span<const TransformOp> OpsOf(const TransformOptions& t, Scratch& scratch) {
  if (t.kind == TransformOptions::Kind::kCompose) return t.ops;
  const TransformOptions& k = scratch.ops_key;
  const bool same = scratch.ops_valid && k.kind == t.kind && k.size == t.size &&
                    k.normalize == t.normalize && k.scale == t.scale && k.ratio == t.ratio &&
                    k.flip_probability == t.flip_probability &&
                    k.center_fraction == t.center_fraction && k.mean == t.mean && k.std == t.std;
  if (!same) {
    scratch.ops = ExpandOps(t);
    scratch.ops_key = t;
    scratch.ops_valid = true;
  }
  return scratch.ops;
}

bool OnlyOutputOps(std::span<const TransformOp> ops, size_t first) {
  for (size_t i = first; i < ops.size(); ++i) {
    if (ops[i].type != Type::kToDtype && ops[i].type != Type::kNormalize) return false;
  }
  return true;
}

void WriteOutput(const Planar& img, const OutputFormat& f, void* dst) {
  const size_t n = img.plane();
  if (!f.is_float) {
    std::memcpy(dst, img.data, n * img.channels);
    return;
  }
  float* out = static_cast<float*>(dst);
  for (int c = 0; c < img.channels; ++c) {
    // The resampler's formula (resize.cc Sink): q * scale + bias.
    const float scale = f.scale_values ? 1.0f / (255.0f * f.std[c]) : 1.0f / f.std[c];
    const float bias = -f.mean[c] / f.std[c];
    const uint8_t* p = img.data + c * n;
    float* o = out + c * n;
    for (size_t i = 0; i < n; ++i) o[i] = static_cast<float>(p[i]) * scale + bias;
  }
}

}  // namespace stoker::transform
