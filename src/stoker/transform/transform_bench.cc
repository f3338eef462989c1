// Prints per-sample microseconds of ResizeToCHW (crop -> size x size, flip,
// CHW, optional normalisation) for our kernels and for OpenCV-based
// alternatives: on typical loader regions (RandomResizedCrop / centre crops
// at the decoder's DCT scale) and on fixed crop sizes. Single thread, thread
// CPU time.
//
//   transform_bench [--size 224] [--iters N]
//
// The OpenCV variants cv::resize the box rounded to an integer ROI
// (INTER_AREA, INTER_LINEAR) or cv::warpAffine the exact fractional box (no
// antialiasing), then flip / split / convertTo into CHW. They exist to show
// why the kernel is our own; docs/transforms.md has their speed and their
// PSNR against Pillow. Define STOKER_TRANSFORM_BENCH_NO_MAIN to include the
// variants elsewhere (that PSNR comparison drove them through ctypes).
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <string>
#include <vector>

#include "stoker/transform/resize.h"
#include "stoker/transform/transform.h"

namespace stoker::transform::bench {

// A smooth, textured RGB image: a few oriented gratings over a colour
// gradient plus a little noise, roughly what a photo's spectrum looks like
// to a resampler.
std::vector<uint8_t> MakeImage(int w, int h, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  struct Wave {
    double fx, fy, phase, amp[3];
  };
  std::vector<Wave> waves(6);
  for (auto& wv : waves) {
    const double f = 0.01 + 0.25 * u(gen) * u(gen);  // cycles per pixel
    const double a = 2 * M_PI * u(gen);
    wv = {f * std::cos(a), f * std::sin(a), 2 * M_PI * u(gen),
          {30 * u(gen), 30 * u(gen), 30 * u(gen)}};
  }
  std::vector<uint8_t> img(static_cast<size_t>(w) * h * 3);
  std::normal_distribution<double> noise(0.0, 3.0);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int c = 0; c < 3; ++c) {
        double v = 60 + 120.0 * (c == 0 ? x : c == 1 ? y : x + y) / (w + h);
        for (const auto& wv : waves) {
          v += wv.amp[c] * std::sin(2 * M_PI * (wv.fx * x + wv.fy * y) + wv.phase);
        }
        v += noise(gen);
        img[(static_cast<size_t>(y) * w + x) * 3 + c] =
            static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
      }
    }
  }
  return img;
}

// HWC uint8 (size x size) -> CHW, flipped, uint8 or normalised float, with
// OpenCV's own vectorised primitives (flip, split, convertTo).
void HwcToChw(const cv::Mat& hwc, const OutputSpec& spec, bool flip, void* dst) {
  const int n = spec.size;
  static thread_local cv::Mat flipped;
  static thread_local std::vector<cv::Mat> u8(3);
  const cv::Mat* src = &hwc;
  if (flip) {
    cv::flip(hwc, flipped, 1);
    src = &flipped;
  }
  const size_t plane = static_cast<size_t>(n) * n;
  if (!spec.normalize) {
    std::vector<cv::Mat> planes;
    for (int c = 0; c < 3; ++c) {
      planes.emplace_back(n, n, CV_8U, static_cast<uint8_t*>(dst) + c * plane);
    }
    cv::split(*src, planes);  // writes into dst: the headers already fit
    return;
  }
  cv::split(*src, u8);
  for (int c = 0; c < 3; ++c) {
    cv::Mat out(n, n, CV_32F, static_cast<float*>(dst) + c * plane);
    u8[c].convertTo(out, CV_32F, 1.0 / (255.0 * spec.std[c]), -spec.mean[c] / spec.std[c]);
  }
}

cv::Mat AsMat(const image::ImageView& v) {
  return cv::Mat(v.height, v.width, CV_8UC3, const_cast<uint8_t*>(v.data), v.stride);
}

cv::Rect RoundedRoi(const image::Region& r) {
  const int x0 = static_cast<int>(std::lround(r.crop.x));
  const int y0 = static_cast<int>(std::lround(r.crop.y));
  const int x1 = static_cast<int>(std::lround(r.crop.x + r.crop.w));
  const int y1 = static_cast<int>(std::lround(r.crop.y + r.crop.h));
  return cv::Rect(x0, y0, std::max(1, x1 - x0), std::max(1, y1 - y0)) &
         cv::Rect(0, 0, r.image.width, r.image.height);
}

// cv::resize on the rounded integer ROI.
void OpenCvResize(int interpolation, const image::Region& r, const OutputSpec& spec, bool flip,
                  void* dst, cv::Mat& tmp) {
  cv::resize(AsMat(r.image)(RoundedRoi(r)), tmp, cv::Size(spec.size, spec.size), 0, 0,
             interpolation);
  HwcToChw(tmp, spec, flip, dst);
}

// cv::warpAffine of the fractional box (sub-pixel exact, no antialiasing).
void OpenCvWarp(const image::Region& r, const OutputSpec& spec, bool flip, void* dst,
                cv::Mat& tmp) {
  const double sx = r.crop.w / spec.size, sy = r.crop.h / spec.size;
  cv::Matx23d m(sx, 0, r.crop.x + 0.5 * sx - 0.5, 0, sy, r.crop.y + 0.5 * sy - 0.5);
  cv::warpAffine(AsMat(r.image), tmp, m, cv::Size(spec.size, spec.size),
                 cv::INTER_LINEAR | cv::WARP_INVERSE_MAP, cv::BORDER_REPLICATE);
  HwcToChw(tmp, spec, flip, dst);
}

struct Variant {
  const char* name;
  std::function<void(const image::Region&, const OutputSpec&, bool, void*)> run;
};

std::vector<Variant> Variants(Scratch& scratch, cv::Mat& tmp) {
  std::vector<Variant> v;
  v.push_back({"stoker (auto)", [&](const image::Region& r, const OutputSpec& s, bool f,
                                   void* d) { ResizeToCHW(r, s, f, d, scratch); }});
  for (auto k : {internal::Kernel::kAvx2, internal::Kernel::kPortable}) {
    if (!internal::KernelSupported(k)) continue;
    v.push_back({k == internal::Kernel::kAvx2 ? "stoker avx2" : "stoker portable",
                 [&, k](const image::Region& r, const OutputSpec& s, bool f, void* d) {
                   internal::ResizeToCHWWith(k, r, s, f, d, scratch);
                 }});
  }
  v.push_back({"cv INTER_AREA (int roi)",
               [&](const image::Region& r, const OutputSpec& s, bool f, void* d) {
                 OpenCvResize(cv::INTER_AREA, r, s, f, d, tmp);
               }});
  v.push_back({"cv INTER_LINEAR (int roi)",
               [&](const image::Region& r, const OutputSpec& s, bool f, void* d) {
                 OpenCvResize(cv::INTER_LINEAR, r, s, f, d, tmp);
               }});
  v.push_back({"cv warpAffine LINEAR", [&](const image::Region& r, const OutputSpec& s, bool f,
                                           void* d) { OpenCvWarp(r, s, f, d, tmp); }});
  return v;
}

// The regions a loader hands to ResizeToCHW: RandomResizedCrop (or the
// centre crop) of ImageNet-sized images, decoded at the DCT scale the
// decoder picks (the smallest of 1, 1/2, 1/4, 1/8 keeping the crop >= size;
// emulated here by averaging s x s blocks).
struct Sample {
  std::vector<uint8_t> pixels;
  image::Region region;
  bool flip;
};

std::vector<Sample> TypicalSamples(bool train, int size, int count) {
  std::vector<Sample> out(count);
  std::mt19937 gen(7);
  for (int i = 0; i < count; ++i) {
    const int w = 350 + static_cast<int>(gen() % 251), h = 350 + static_cast<int>(gen() % 251);
    SampleRng rng(0, 0, i);
    const image::Rect r = train ? RandomResizedCropRect(w, h, {0.08, 1.0}, {0.75, 4.0 / 3}, rng)
                                 : CenterCropRect(w, h, size, 0.875);
    int s = 1;
    for (int d : {2, 4, 8}) {
      if (r.w / d >= size && r.h / d >= size) s = d;
    }
    const auto full = MakeImage(w, h, i);
    const int sw = (w + s - 1) / s, sh = (h + s - 1) / s;
    Sample& smp = out[i];
    smp.pixels.resize(static_cast<size_t>(sw) * sh * 3);
    for (int y = 0; y < sh; ++y) {
      for (int x = 0; x < sw; ++x) {
        for (int c = 0; c < 3; ++c) {
          int sum = 0, n = 0;
          for (int yy = y * s; yy < std::min(h, (y + 1) * s); ++yy) {
            for (int xx = x * s; xx < std::min(w, (x + 1) * s); ++xx, ++n) {
              sum += full[(static_cast<size_t>(yy) * w + xx) * 3 + c];
            }
          }
          smp.pixels[(static_cast<size_t>(y) * sw + x) * 3 + c] = static_cast<uint8_t>(sum / n);
        }
      }
    }
    smp.region.image = {smp.pixels.data(), sw, sh, static_cast<size_t>(sw) * 3};
    smp.region.crop = {r.x / s, r.y / s, r.w / s, r.h / s};
    smp.region.source_width = w;
    smp.region.source_height = h;
    smp.region.scale_denom = s;
    smp.flip = train && rng.Uniform() < 0.5;
  }
  return out;
}

}  // namespace stoker::transform::bench

#ifndef STOKER_TRANSFORM_BENCH_NO_MAIN
double ThreadCpuMicros() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

int main(int argc, char** argv) {
  using namespace stoker;
  using namespace stoker::transform;
  int size = 224;
  int iters = 128;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--size")) size = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--iters")) iters = std::atoi(argv[i + 1]);
  }
  cv::setNumThreads(0);  // one thread, like one loader worker

  // A decoded region a little larger than the crop (the decoder's margin),
  // with a fractional crop origin as DCT scaling produces.
  const int crops[] = {size, 250, 320, 380, 440, 640};
  Scratch scratch;
  cv::Mat tmp;
  auto variants = bench::Variants(scratch, tmp);
  std::vector<uint8_t> dst(3 * static_cast<size_t>(size) * size * sizeof(float));

  auto time_us = [&](const bench::Variant& v, const OutputSpec& spec, auto&& each) {
    // Thread CPU time, best of 9 rounds: the machines these run on are
    // shared, and wall time would count other processes' slices.
    double best = 1e30;
    for (int round = 0; round < 9; ++round) {
      const double t0 = ThreadCpuMicros();
      const int calls = each(v, spec);
      best = std::min(best, (ThreadCpuMicros() - t0) / calls);
    }
    return best;
  };

  // 1. Typical loader regions: the number that matters.
  const auto train = bench::TypicalSamples(true, size, 64);
  const auto val = bench::TypicalSamples(false, size, 64);
  std::printf("ResizeToCHW -> %dx%d, microseconds per sample, 1 thread, thread CPU time\n\n",
              size, size);
  std::printf("Typical regions (64 RandomResizedCrop / centre crops of 350-600 px images at\n"
              "the decoder's DCT scale, each copied into one buffer just before the call,\n"
              "as a decoder leaves it in cache):\n");
  std::printf("%-28s %12s %12s %12s %12s\n", "variant", "train u8", "train f32", "val u8",
              "val f32");
  std::vector<uint8_t> staging;
  for (const auto* set : {&train, &val}) {
    for (const auto& smp : *set) staging.resize(std::max(staging.size(), smp.pixels.size()));
  }
  for (const auto& v : variants) {
    std::printf("%-28s", v.name);
    for (const auto* set : {&train, &val}) {
      for (bool norm : {false, true}) {
        OutputSpec spec;
        spec.size = size;
        spec.normalize = norm;
        double best = 1e30;
        for (int round = 0; round < 5; ++round) {
          double total = 0;
          for (const auto& smp : *set) {
            std::memcpy(staging.data(), smp.pixels.data(), smp.pixels.size());
            image::Region r = smp.region;
            r.image.data = staging.data();
            const double t0 = ThreadCpuMicros();
            v.run(r, spec, smp.flip, dst.data());
            total += ThreadCpuMicros() - t0;
          }
          best = std::min(best, total / static_cast<double>(set->size()));
        }
        std::printf(" %12.1f", best);
      }
    }
    std::printf("\n");
  }

  // 2. Fixed crop sizes (4:3 regions, fractional origin).
  std::printf("\nFixed regions (crop w x h, fractional origin):\n%-28s", "variant");
  for (int c : crops) {
    const int h = c * 3 / 4;
    std::printf(" %7dx%-3d u8 %7dx%-3d f32", c, h, c, h);
  }
  std::printf("\n");
  for (const auto& v : variants) {
    std::printf("%-28s", v.name);
    for (int c : crops) {
      const int w = c + 16, h = c * 3 / 4 + 16;
      auto img = bench::MakeImage(w, h, c);
      image::Region r;
      r.image = {img.data(), w, h, static_cast<size_t>(w) * 3};
      r.crop = {7.5, 6.25, c - 0.5, c * 3 / 4 - 0.25};
      for (bool norm : {false, true}) {
        OutputSpec spec;
        spec.size = size;
        spec.normalize = norm;
        std::printf(" %14.1f", time_us(v, spec, [&](const bench::Variant& var,
                                                      const OutputSpec& sp) {
                      for (int i = 0; i < iters; ++i) var.run(r, sp, i & 1, dst.data());
                      return iters;
                    }));
      }
    }
    std::printf("\n");
  }
  return 0;
}
#endif
