// ResizeToCHW: Pillow-style antialiased bilinear resampling of a fractional
// source box, fused with the horizontal flip, HWC -> CHW and normalisation.
//
// Why our own kernel and not OpenCV: the crop boxes are fractional after DCT
// scaling and Pillow's BILINEAR (what torchvision uses on PIL images) is a
// triangle filter that widens with the scale factor. cv::resize takes only
// integer ROIs (rounding the box shifts the image by up to half a scaled
// pixel) and neither INTER_LINEAR (no antialiasing) nor INTER_AREA (a box
// filter) is Pillow's filter. docs/transforms.md has the measurements.
//
// Two kernels, both vertical pass first (on whole interleaved rows: a
// contiguous multiply-add per tap), then the horizontal pass; the flip is
// free (the horizontal taps are laid out mirrored). The portable one is
// plain float C++; the AVX2 one is 16-bit fixed point with 8 output rows per
// block (see below). Both round half up once, at the end; Pillow also rounds
// between its passes, so outputs differ from Pillow's by a level here and
// there (PSNR ~56 dB, docs/transforms.md).
#include "stoker/transform/resize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define STOKER_HAVE_AVX2_KERNEL 1
#include <immintrin.h>
#else
#define STOKER_HAVE_AVX2_KERNEL 0
#endif

namespace stoker::transform::internal {
namespace {

// Box edges within this of an integer are taken as that integer, so that
// rounding noise in the caller's scaled coordinates does not pull in a
// neighbouring pixel with a tiny weight.
constexpr double kEdgeEps = 1e-6;

inline size_t RoundUp8(size_t n) { return (n + 7) & ~size_t{7}; }

// floor() without a libm call (baseline x86-64 has no SSE4.1 round).
inline int FloorInt(double v) {
  const int i = static_cast<int>(v);
  return i - (static_cast<double>(i) > v);
}

// One axis of Pillow's precompute_coeffs (libImaging/Resample.c) for the
// bilinear filter: output i is centred at b0 + (i + 0.5) * scale and reads
// the pixels p whose centres p + 0.5 lie within `support` of it, weighted by
// the triangle 1 - |p + 0.5 - centre| / fscale, normalised.
struct AxisGeometry {
  double b0, scale, inv_fscale, support;
  int lo, hi;

  double Weight(int pixel, double center) const {
    // max(0, v) without a branch (compilers emit one for std::max on
    // doubles, and it mispredicts: windows vary from output to output).
    const double v = 1.0 - std::fabs((pixel + 0.5 - center) * inv_fscale);
    return 0.5 * (v + std::fabs(v));
  }

  // Source window [first, first + count) of output i: the pixels of [lo, hi)
  // with non-zero weight, |p + 0.5 - centre| < support. (Pillow's window,
  // [int(c - support + 0.5), int(c + support + 0.5)), is the same but can
  // include a pixel of weight exactly 0 at either end.)
  void Window(int i, double* center, int* first, int* count) const {
    const double c = b0 + (i + 0.5) * scale;
    int xmin = std::max(lo, FloorInt(c - support - 0.5) + 1);
    int xmax = std::min(hi, -FloorInt(-(c + support - 0.5)));
    if (xmin >= xmax) {
      // Only when the box reaches past the pixels it may read (a box
      // outside the image): take the nearest pixel.
      xmin = std::clamp(FloorInt(c), lo, hi - 1);
      xmax = xmin + 1;
    }
    *center = c;
    *first = xmin;
    *count = xmax - xmin;
  }
};

AxisGeometry MakeGeometry(double b0, double b1, int limit, int out) {
  AxisGeometry g;
  g.b0 = b0;
  g.scale = (b1 - b0) / out;
  // Pillow: filterscale = max(scale, 1); support = 1 (bilinear) * filterscale.
  const double fscale = std::max(g.scale, 1.0);
  g.inv_fscale = 1.0 / fscale;
  g.support = fscale;
  // Only the pixels the box touches, as if it had been cropped first.
  g.lo = std::clamp(FloorInt(b0 + kEdgeEps), 0, limit - 1);
  g.hi = std::clamp(-FloorInt(-(b1 - kEdgeEps)), g.lo + 1, limit);
  return g;
}

// The largest window: the tap count every output is padded to.
int CountTaps(const AxisGeometry& g, int out) {
  int taps = 1;
  for (int i = 0; i < out; ++i) {
    double c;
    int first, count;
    g.Window(i, &c, &first, &count);
    taps = std::max(taps, count);
  }
  return std::min(taps, g.hi - g.lo);
}

// Writes `padded` >= out entries; those past `out` read pixel lo with weight
// 0 (they let the vector kernel work in whole blocks).
AxisTaps FillTaps(const AxisGeometry& g, int out, int padded, int taps, bool reverse,
                  int32_t* start, float* w) {
  AxisTaps a;
  a.taps = taps;
  a.lo = g.lo;
  a.hi = g.hi;
  a.start = start;
  a.w = w;
  for (int i = 0; i < out; ++i) {
    double c;
    int first, count;
    g.Window(i, &c, &first, &count);
    // Every window at the common tap count and inside [lo, hi). The extra
    // taps fall outside the triangle's support and get weight 0. A fixed
    // trip count: windows vary, and mispredicted loop exits cost more than
    // the arithmetic.
    const int s = std::min(first, g.hi - taps);
    const int o = reverse ? out - 1 - i : i;
    float* dst = w + static_cast<size_t>(o) * taps;
    start[o] = s;
    double sum = 0.0;
    for (int k = 0; k < taps; ++k) {
      const double wk = g.Weight(s + k, c);
      sum += wk;
      dst[k] = static_cast<float>(wk);
    }
    if (sum <= 0.0) {  // the nearest-pixel fallback of Window()
      std::fill(dst, dst + taps, 0.0f);
      dst[first - s] = 1.0f;
      continue;
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int k = 0; k < taps; ++k) dst[k] *= inv;
  }
  std::fill(w + static_cast<size_t>(out) * taps, w + static_cast<size_t>(padded) * taps, 0.0f);
  for (int o = out; o < padded; ++o) start[o] = g.lo;
  return a;
}

}  // namespace

AxisTaps ComputeAxisTaps(double b0, double b1, int limit, int out, bool reverse,
                         std::vector<int32_t>& start, std::vector<float>& w) {
  const AxisGeometry g = MakeGeometry(b0, b1, limit, out);
  const int taps = CountTaps(g, out);
  start.resize(out);
  w.resize(static_cast<size_t>(out) * taps);
  return FillTaps(g, out, out, taps, reverse, start.data(), w.data());
}

namespace {

// Where finished rows go and in what form.
struct Sink {
  int width;   // output columns
  int height;  // output rows
  bool vflip;  // row y is stored as row height - 1 - y
  bool normalize;
  float scale[3];  // normalised: q * scale + bias == (q / 255 - mean) / std
  float bias[3];
  void* dst;

  uint8_t* U8Row(int c, int y) const {
    const size_t row = static_cast<size_t>(vflip ? height - 1 - y : y);
    return static_cast<uint8_t*>(dst) + (static_cast<size_t>(c) * height + row) * width;
  }
  float* F32Row(int c, int y) const {
    const size_t row = static_cast<size_t>(vflip ? height - 1 - y : y);
    return static_cast<float*>(dst) + (static_cast<size_t>(c) * height + row) * width;
  }

  // Rounds half up (Pillow's fixed point does the same) and stores. The
  // normalised output normalises the rounded value, so it equals the uint8
  // output normalised, as torchvision's ToTensor + Normalize would give.
  void EmitRow(int c, int y, const float* v) const { EmitRange(c, y, 0, v); }

  // Columns [x0, size) of EmitRow, from v[0] on. 0 <= v <= 255 (plus float
  // error): the weights are non-negative and sum to 1. So rounding half up
  // is truncation after + 0.5, and no clamp is needed (which also keeps the
  // loops branch-free, so they vectorise).
  void EmitRange(int c, int y, int x0, const float* __restrict v) const {
    const int n = width - x0;
    if (normalize) {
      float* __restrict out = F32Row(c, y) + x0;
      const float sc = scale[c], bi = bias[c];
      for (int i = 0; i < n; ++i) {
        out[i] = static_cast<float>(static_cast<int>(v[i] + 0.5f)) * sc + bi;
      }
    } else {
      uint8_t* __restrict out = U8Row(c, y) + x0;
      for (int i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(static_cast<int>(v[i] + 0.5f));
    }
  }
};

// ---------------------------------------------------------------- portable
// Plain C++ for any CPU; the vertical pass auto-vectorises.

// out[j] = sum_k w[k] * src[k * stride + j], taps unrolled so the j loop
// vectorises.
template <int K>
void VerticalFixed(const uint8_t* src, size_t stride, const float* w, float* __restrict out,
                   int n) {
  const uint8_t* __restrict r[K];
  float wk[K];
  for (int k = 0; k < K; ++k) {
    r[k] = src + k * stride;
    wk[k] = w[k];
  }
  for (int j = 0; j < n; ++j) {
    float s = wk[0] * r[0][j];
    for (int k = 1; k < K; ++k) s += wk[k] * r[k][j];
    out[j] = s;
  }
}

void VerticalAny(const uint8_t* src, size_t stride, const float* w, int taps,
                 float* __restrict out, int n) {
  switch (taps) {
    case 1: return VerticalFixed<1>(src, stride, w, out, n);
    case 2: return VerticalFixed<2>(src, stride, w, out, n);
    case 3: return VerticalFixed<3>(src, stride, w, out, n);
    case 4: return VerticalFixed<4>(src, stride, w, out, n);
    case 5: return VerticalFixed<5>(src, stride, w, out, n);
    case 6: return VerticalFixed<6>(src, stride, w, out, n);
    case 7: return VerticalFixed<7>(src, stride, w, out, n);
    case 8: return VerticalFixed<8>(src, stride, w, out, n);
    default: break;
  }
  for (int j = 0; j < n; ++j) out[j] = 0.0f;
  for (int k = 0; k < taps; ++k) {
    const uint8_t* __restrict r = src + k * stride;
    const float wk = w[k];
    for (int j = 0; j < n; ++j) out[j] += wk * r[j];
  }
}

// One row of interleaved RGB floats -> three planar rows.
template <int K>
void HorizontalFixed(const float* __restrict row, const AxisTaps& ax, int out,
                     float* __restrict planes) {
  const int kt = K > 0 ? K : ax.taps;
  for (int x = 0; x < out; ++x) {
    const float* p = row + static_cast<size_t>(ax.start[x] - ax.lo) * 3;
    const float* w = ax.w + static_cast<size_t>(x) * kt;
    float r = 0.0f, g = 0.0f, b = 0.0f;
    for (int k = 0; k < kt; ++k) {
      r += w[k] * p[3 * k + 0];
      g += w[k] * p[3 * k + 1];
      b += w[k] * p[3 * k + 2];
    }
    planes[x] = r;
    planes[out + x] = g;
    planes[2 * out + x] = b;
  }
}

void HorizontalAny(const float* row, const AxisTaps& ax, int out, float* planes) {
  switch (ax.taps) {
    case 1: return HorizontalFixed<1>(row, ax, out, planes);
    case 2: return HorizontalFixed<2>(row, ax, out, planes);
    case 3: return HorizontalFixed<3>(row, ax, out, planes);
    case 4: return HorizontalFixed<4>(row, ax, out, planes);
    case 5: return HorizontalFixed<5>(row, ax, out, planes);
    case 6: return HorizontalFixed<6>(row, ax, out, planes);
    default: return HorizontalFixed<0>(row, ax, out, planes);
  }
}

void ResizePortable(const image::ImageView& img, const AxisTaps& ax, const AxisTaps& ay,
                    const Sink& sink, Scratch& scratch) {
  const int out = sink.width;
  const int n = (ax.hi - ax.lo) * 3;
  const size_t need = static_cast<size_t>(n) + 3 * static_cast<size_t>(out);
  if (scratch.rows.size() < need) scratch.rows.resize(need);
  float* row = scratch.rows.data();
  float* planes = row + n;
  for (int y = 0; y < sink.height; ++y) {
    VerticalAny(img.data + static_cast<size_t>(ay.start[y]) * img.stride + ax.lo * 3, img.stride,
                ay.w + static_cast<size_t>(y) * ay.taps, ay.taps, row, n);
    HorizontalAny(row, ax, out, planes);
    for (int c = 0; c < 3; ++c) sink.EmitRow(c, y, planes + c * out);
  }
}

#if STOKER_HAVE_AVX2_KERNEL
// -------------------------------------------------------------------- AVX2
// Fixed point: pixels as int16 with 7 fractional bits (x * 128 <= 32640),
// weights as Q15, products by pmulhrsw (rounded), sums in int16: half the
// bytes of float and twice the lanes per instruction (a float version of
// this kernel took 1.5x as long). Precision is a few 1/128 of a level per
// pass (Pillow rounds to whole levels between its passes).
//
// The horizontal pass is the hard one to vectorise on interleaved RGB: each
// output reads its own window. So the vertical pass produces 8 output rows,
// an 8x8 transpose puts the 8 rows of each source column into one vector,
// and the horizontal pass computes 8 rows of an output column at once with
// the same taps in every lane. A second transpose turns that back into rows.

#define STOKER_AVX2 __attribute__((target("avx2")))

// Q15 weight; 1.0 (a single tap, or a sample on a pixel centre) becomes
// 32767, 3e-5 short, which no rounding below can see.
inline int16_t Q15(float w) {
  return static_cast<int16_t>(std::min(32767, static_cast<int>(w * 32768.0f + 0.5f)));
}

STOKER_AVX2 inline __m128i Load128(const int16_t* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}

STOKER_AVX2 inline __m256i Load256(const int16_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

STOKER_AVX2 inline void Transpose8x8(__m128i& a0, __m128i& a1, __m128i& a2, __m128i& a3,
                                     __m128i& a4, __m128i& a5, __m128i& a6, __m128i& a7) {
  const __m128i t0 = _mm_unpacklo_epi16(a0, a1), t1 = _mm_unpackhi_epi16(a0, a1);
  const __m128i t2 = _mm_unpacklo_epi16(a2, a3), t3 = _mm_unpackhi_epi16(a2, a3);
  const __m128i t4 = _mm_unpacklo_epi16(a4, a5), t5 = _mm_unpackhi_epi16(a4, a5);
  const __m128i t6 = _mm_unpacklo_epi16(a6, a7), t7 = _mm_unpackhi_epi16(a6, a7);
  const __m128i u0 = _mm_unpacklo_epi32(t0, t2), u1 = _mm_unpackhi_epi32(t0, t2);
  const __m128i u2 = _mm_unpacklo_epi32(t1, t3), u3 = _mm_unpackhi_epi32(t1, t3);
  const __m128i u4 = _mm_unpacklo_epi32(t4, t6), u5 = _mm_unpackhi_epi32(t4, t6);
  const __m128i u6 = _mm_unpacklo_epi32(t5, t7), u7 = _mm_unpackhi_epi32(t5, t7);
  a0 = _mm_unpacklo_epi64(u0, u4);
  a1 = _mm_unpackhi_epi64(u0, u4);
  a2 = _mm_unpacklo_epi64(u1, u5);
  a3 = _mm_unpackhi_epi64(u1, u5);
  a4 = _mm_unpacklo_epi64(u2, u6);
  a5 = _mm_unpackhi_epi64(u2, u6);
  a6 = _mm_unpacklo_epi64(u3, u7);
  a7 = _mm_unpackhi_epi64(u3, u7);
}

// src[0, n) -> dst[0, n) as Q7; dst[n, RoundUp8(n)) = 0.
STOKER_AVX2 void RowToQ7(const uint8_t* src, int16_t* dst, int n) {
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + j),
                        _mm256_slli_epi16(_mm256_cvtepu8_epi16(b), 7));
  }
  for (; j < n; ++j) dst[j] = static_cast<int16_t>(src[j] << 7);
  for (; j < static_cast<int>(RoundUp8(n)); ++j) dst[j] = 0;
}

// The ring of converted source rows: row r lives in slot r & mask.
struct Ring {
  const int16_t* slots;
  size_t mask;
  size_t n8;  // elements per slot, a multiple of 8
  const int16_t* Row(int r) const { return slots + (static_cast<size_t>(r) & mask) * n8; }
};

// out[j] = sum_k w[k] * row(first + k)[j] for j < n8. K > 0: that many taps,
// weights held in registers; K == 0: `taps`.
template <int K>
STOKER_AVX2 void VerticalAvx2(const Ring& ring, int first, const int16_t* w, int taps,
                              int16_t* out) {
  const int kt = K > 0 ? K : taps;
  const int n8 = static_cast<int>(ring.n8);
  __m256i wv[K > 0 ? K : 1];
  const int16_t* rv[K > 0 ? K : 1];
  if constexpr (K > 0) {
    for (int k = 0; k < K; ++k) {
      wv[k] = _mm256_set1_epi16(w[k]);
      rv[k] = ring.Row(first + k);
    }
  }
  auto row = [&](int k) { return K > 0 ? rv[k] : ring.Row(first + k); };
  int j = 0;
  for (; j + 32 <= n8; j += 32) {
    const __m256i w0 = K > 0 ? wv[0] : _mm256_set1_epi16(w[0]);
    const int16_t* r0 = row(0);
    __m256i a0 = _mm256_mulhrs_epi16(Load256(r0 + j), w0);
    __m256i a1 = _mm256_mulhrs_epi16(Load256(r0 + j + 16), w0);
    for (int k = 1; k < kt; ++k) {
      const __m256i wk = K > 0 ? wv[k] : _mm256_set1_epi16(w[k]);
      const int16_t* rk = row(k);
      a0 = _mm256_add_epi16(a0, _mm256_mulhrs_epi16(Load256(rk + j), wk));
      a1 = _mm256_add_epi16(a1, _mm256_mulhrs_epi16(Load256(rk + j + 16), wk));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j), a0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j + 16), a1);
  }
  for (; j < n8; j += 8) {
    __m128i a = _mm_mulhrs_epi16(Load128(row(0) + j), _mm_set1_epi16(w[0]));
    for (int k = 1; k < kt; ++k) {
      a = _mm_add_epi16(a, _mm_mulhrs_epi16(Load128(row(k) + j), _mm_set1_epi16(w[k])));
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j), a);
  }
}

using VerticalFn = void (*)(const Ring&, int, const int16_t*, int, int16_t*);

VerticalFn PickVerticalAvx2(int taps) {
  switch (taps) {
    case 1: return VerticalAvx2<1>;
    case 2: return VerticalAvx2<2>;
    case 3: return VerticalAvx2<3>;
    case 4: return VerticalAvx2<4>;
    case 5: return VerticalAvx2<5>;
    case 6: return VerticalAvx2<6>;
    case 7: return VerticalAvx2<7>;
    case 8: return VerticalAvx2<8>;
    default: return VerticalAvx2<0>;
  }
}

// Stores 8 Q7 values as row y, columns [x, x + n) of channel c (n <= 8),
// rounded half up: (v + 64) >> 7, v >= 0 (non-negative weights and pixels).
// The normalised value normalises the rounded one, as the portable kernel
// does: the same as normalising the uint8 output.
STOKER_AVX2 inline void Emit8(const Sink& sink, int c, int y, int x, __m128i v, int n) {
  const __m128i q = _mm_srli_epi16(_mm_add_epi16(v, _mm_set1_epi16(64)), 7);
  if (sink.normalize) {
    const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(q));
    // Not an FMA: rounded twice, like the portable kernel.
    const __m256 r = _mm256_add_ps(_mm256_mul_ps(f, _mm256_set1_ps(sink.scale[c])),
                                   _mm256_set1_ps(sink.bias[c]));
    float* out = sink.F32Row(c, y) + x;
    if (n == 8) {
      _mm256_storeu_ps(out, r);
    } else {
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, r);
      std::memcpy(out, tmp, n * sizeof(float));
    }
  } else {
    const __m128i b = _mm_packus_epi16(q, q);
    uint8_t* out = sink.U8Row(c, y) + x;
    if (n == 8) {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(out), b);
    } else {
      alignas(16) uint8_t tmp[16];
      _mm_store_si128(reinterpret_cast<__m128i*>(tmp), b);
      std::memcpy(out, tmp, n);
    }
  }
}

// cols holds 8 rows per source column, [pixel][channel][row]; wq the Q15
// x taps, each repeated 8 times (a ready vector). Computes the 8 rows of
// every output column, transposes them back into rows, emits rows
// y0 .. y0 + rows - 1.
template <int K>
STOKER_AVX2 void HorizontalAvx2(const int16_t* cols, const AxisTaps& ax, const int16_t* wq,
                                const Sink& sink, int y0, int rows) {
  const int kt = K > 0 ? K : ax.taps;
  const int size = sink.width;
  for (int x0 = 0; x0 < size; x0 += 8) {
    __m128i acc[3][8];
    for (int i = 0; i < 8; ++i) {
      const int x = x0 + i;  // < the padded width: taps exist, weights 0
      const int16_t* p = cols + static_cast<size_t>(ax.start[x] - ax.lo) * 24;
      const int16_t* w = wq + static_cast<size_t>(x) * kt * 8;
      __m128i wk = Load128(w);
      __m128i r = _mm_mulhrs_epi16(Load128(p), wk);
      __m128i g = _mm_mulhrs_epi16(Load128(p + 8), wk);
      __m128i b = _mm_mulhrs_epi16(Load128(p + 16), wk);
      for (int k = 1; k < kt; ++k) {
        wk = Load128(w + 8 * k);
        const int16_t* q = p + 24 * k;
        r = _mm_add_epi16(r, _mm_mulhrs_epi16(Load128(q), wk));
        g = _mm_add_epi16(g, _mm_mulhrs_epi16(Load128(q + 8), wk));
        b = _mm_add_epi16(b, _mm_mulhrs_epi16(Load128(q + 16), wk));
      }
      acc[0][i] = r;
      acc[1][i] = g;
      acc[2][i] = b;
    }
    const int n = std::min(8, size - x0);
    for (int c = 0; c < 3; ++c) {
      __m128i* a = acc[c];
      Transpose8x8(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
      for (int r = 0; r < rows; ++r) Emit8(sink, c, y0 + r, x0, a[r], n);
    }
  }
}

using HorizontalFn = void (*)(const int16_t*, const AxisTaps&, const int16_t*, const Sink&, int,
                              int);

HorizontalFn PickHorizontalAvx2(int taps) {
  switch (taps) {
    case 1: return HorizontalAvx2<1>;
    case 2: return HorizontalAvx2<2>;
    case 3: return HorizontalAvx2<3>;
    case 4: return HorizontalAvx2<4>;
    case 5: return HorizontalAvx2<5>;
    case 6: return HorizontalAvx2<6>;
    case 7: return HorizontalAvx2<7>;
    case 8: return HorizontalAvx2<8>;
    default: return HorizontalAvx2<0>;
  }
}

STOKER_AVX2 void ResizeAvx2(const image::ImageView& img, const AxisTaps& ax, const AxisTaps& ay,
                            const Sink& sink, Scratch& scratch) {
  const int out = sink.height;  // rows
  const size_t out8 = RoundUp8(sink.width);
  const int n = (ax.hi - ax.lo) * 3;
  const size_t n8 = RoundUp8(n);
  const int tx = ax.taps, ty = ay.taps;
  // Each source row feeds several output rows (about taps / scale), so rows
  // are converted once, into a ring of `ring` slots that holds every row
  // one block of 8 output rows reads.
  int span = 1;
  for (int y0 = 0; y0 < out; y0 += 8) {
    span = std::max(span, ay.start[std::min(y0 + 7, out - 1)] + ty - ay.start[y0]);
  }
  size_t ring = 1;
  while (ring < static_cast<size_t>(span)) ring *= 2;
  // Layout (int16): ring slots | 8 vertical-pass rows | the same transposed
  // (8 values per source column) | Q15 taps: x (8 copies each), y.
  const size_t need = (ring + 16) * n8 + out8 * tx * 8 + static_cast<size_t>(out) * ty;
  if (scratch.fixed.size() < need) scratch.fixed.resize(need);
  int16_t* slots = scratch.fixed.data();
  int16_t* rows = slots + ring * n8;
  int16_t* cols = rows + 8 * n8;
  int16_t* wqx = cols + 8 * n8;
  int16_t* wqy = wqx + out8 * tx * 8;
  for (size_t i = 0; i < out8 * tx; ++i) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(wqx + 8 * i), _mm_set1_epi16(Q15(ax.w[i])));
  }
  for (size_t i = 0; i < static_cast<size_t>(out) * ty; ++i) wqy[i] = Q15(ay.w[i]);
  const uint8_t* base = img.data + ax.lo * 3;

  const VerticalFn vertical = PickVerticalAvx2(ty);
  const HorizontalFn horizontal = PickHorizontalAvx2(tx);
  const Ring rg{slots, ring - 1, n8};

  int converted = 0;  // source rows below this are in the ring (or unused)
  for (int y0 = 0; y0 < out; y0 += 8) {
    const int end = ay.start[std::min(y0 + 7, out - 1)] + ty;
    for (int row = std::max(converted, ay.start[y0]); row < end; ++row) {
      RowToQ7(base + static_cast<size_t>(row) * img.stride, slots + (row & (ring - 1)) * n8, n);
    }
    converted = end;
    // Vertical: 8 output rows (the last block repeats its last row).
    for (int r = 0; r < 8; ++r) {
      const int y = std::min(y0 + r, out - 1);
      vertical(rg, ay.start[y], wqy + static_cast<size_t>(y) * ty, ty, rows + r * n8);
    }
    // Transpose: cols[j * 8 + r] = rows[r][j].
    for (size_t j = 0; j < n8; j += 8) {
      const int16_t* src = rows + j;
      __m128i a0 = Load128(src), a1 = Load128(src + n8), a2 = Load128(src + 2 * n8),
              a3 = Load128(src + 3 * n8), a4 = Load128(src + 4 * n8), a5 = Load128(src + 5 * n8),
              a6 = Load128(src + 6 * n8), a7 = Load128(src + 7 * n8);
      Transpose8x8(a0, a1, a2, a3, a4, a5, a6, a7);
      __m128i* d = reinterpret_cast<__m128i*>(cols + j * 8);
      _mm_storeu_si128(d + 0, a0);
      _mm_storeu_si128(d + 1, a1);
      _mm_storeu_si128(d + 2, a2);
      _mm_storeu_si128(d + 3, a3);
      _mm_storeu_si128(d + 4, a4);
      _mm_storeu_si128(d + 5, a5);
      _mm_storeu_si128(d + 6, a6);
      _mm_storeu_si128(d + 7, a7);
    }
    // Horizontal: lanes are the 8 rows, then transposed back into rows.
    horizontal(cols, ax, wqx, sink, y0, std::min(8, out - y0));
  }
}

bool CpuHasAvx2() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
  }();
  return has;
}
#endif  // STOKER_HAVE_AVX2_KERNEL

}  // namespace

bool KernelSupported(Kernel k) {
  switch (k) {
    case Kernel::kAuto:
    case Kernel::kPortable: return true;
    case Kernel::kAvx2:
#if STOKER_HAVE_AVX2_KERNEL
      return CpuHasAvx2();
#else
      return false;
#endif
  }
  return false;
}

void ResizeToCHWWith(Kernel kernel, const image::Region& region, const OutputSpec& spec,
                     bool flip, void* dst, Scratch& scratch) {
  const image::ImageView& img = region.image;
  const int out_w = spec.width > 0 ? spec.width : spec.size;
  const int out_h = spec.height > 0 ? spec.height : spec.size;
  if (out_w <= 0 || out_h <= 0) return;
  const int out8 = static_cast<int>(RoundUp8(out_w));
  const image::Rect& c = region.crop;
  if (img.data == nullptr || img.width <= 0 || img.height <= 0 || !std::isfinite(c.x) ||
      !std::isfinite(c.y) || !(c.w > 0 && c.w < 1e9) || !(c.h > 0 && c.h < 1e9)) {
    // No pixels to resample (the decoder never returns such a region).
    std::memset(dst, 0, 3 * static_cast<size_t>(out_w) * out_h * (spec.normalize ? 4 : 1));
    return;
  }
  const AxisGeometry gx = MakeGeometry(c.x, c.x + c.w, img.width, out_w);
  const AxisGeometry gy = MakeGeometry(c.y, c.y + c.h, img.height, out_h);
  const int tx = CountTaps(gx, out_w);
  const int ty = CountTaps(gy, out_h);
  // Grow-only: no allocation once the largest crop has been seen.
  const size_t nw = static_cast<size_t>(out8) * tx + static_cast<size_t>(out_h) * ty;
  if (scratch.weights.size() < nw) scratch.weights.resize(nw);
  if (scratch.starts.size() < static_cast<size_t>(out8 + out_h)) {
    scratch.starts.resize(out8 + out_h);
  }
  const AxisTaps ax =
      FillTaps(gx, out_w, out8, tx, flip, scratch.starts.data(), scratch.weights.data());
  const AxisTaps ay = FillTaps(gy, out_h, out_h, ty, false, scratch.starts.data() + out8,
                               scratch.weights.data() + static_cast<size_t>(out8) * tx);

  Sink sink;
  sink.width = out_w;
  sink.height = out_h;
  sink.vflip = spec.vflip;
  sink.normalize = spec.normalize;
  for (int i = 0; i < 3; ++i) {
    // (q * s - mean) / std with s = 1/255 (ToDtype(scale=True)) or 1.
    sink.scale[i] = spec.scale_values ? 1.0f / (255.0f * spec.std[i]) : 1.0f / spec.std[i];
    sink.bias[i] = -spec.mean[i] / spec.std[i];
  }
  sink.dst = dst;

#if STOKER_HAVE_AVX2_KERNEL
  if (kernel != Kernel::kPortable && CpuHasAvx2()) {
    ResizeAvx2(img, ax, ay, sink, scratch);
    return;
  }
#endif
  (void)kernel;
  ResizePortable(img, ax, ay, sink, scratch);
}

}  // namespace stoker::transform::internal

namespace stoker::transform {

void ResizeToCHW(const image::Region& region, const OutputSpec& spec, bool flip, void* dst,
                 Scratch& scratch) {
  internal::ResizeToCHWWith(internal::Kernel::kAuto, region, spec, flip, dst, scratch);
}

}  // namespace stoker::transform
