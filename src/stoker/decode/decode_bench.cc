// Single-thread decode throughput: DecodeFull and DecodeRegion with
// RandomResizedCrop-like crops to 224x224 (torchvision's parameters: area
// 8%..100%, aspect 3/4..4/3), on JPEGs held in memory.
//
//   decode_bench [DIR] [--n N] [--seconds S] [--seed K]
//
// With DIR, reads up to N (default 2000) .jpg/.jpeg files found under it;
// without, generates N (default 500) ImageNet-like JPEGs: 350..600 px a
// side, 4:2:0, quality 90, sharp-edged shapes over shading at several
// scales and grain, ~110 KB each (decode cost follows the file size).
// Not a test: prints img/s.

#include <cstddef>
#include <cstdio>
// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <time.h>

#include "stoker/decode/decode.h"
#include "stoker/decode/jpeg_rows.h"

namespace {

using Bytes = std::vector<uint8_t>;
using stoker::decode::Decoder;
using stoker::decode::Rect;

Bytes EncodeJpeg(const std::vector<uint8_t>& rgb, int w, int h, int quality) {
  jpeg_compress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&cinfo);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buf, &size);
  cinfo.image_width = static_cast<JDIMENSION>(w);
  cinfo.image_height = static_cast<JDIMENSION>(h);
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);  // 4:2:0 by default
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(&rgb[size_t(cinfo.next_scanline) * w * 3]);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  Bytes out(buf, buf + size);
  jpeg_destroy_compress(&cinfo);
  free(buf);
  return out;
}

// Cheap approximately normal noise (Irwin-Hall, 4 uniforms): generating
// the images must not take longer than the benchmark.
struct FastNormal {
  uint64_t s;
  float operator()() {
    float sum = 0;
    for (int i = 0; i < 4; ++i) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      sum += static_cast<float>(s >> 40) * (1.0f / 16777216.0f);
    }
    return (sum - 2.0f) * 1.7320508f;  // unit variance
  }
};

// Random knots every `cell` pixels, bilinearly interpolated, std `sigma`.
void AddSmooth(std::vector<float>& lum, int w, int h, int cell, float sigma, FastNormal& n) {
  const int kw = w / cell + 2, kh = h / cell + 2;
  std::vector<float> k(size_t(kw) * kh);
  for (auto& v : k) v = sigma * n();
  for (int y = 0; y < h; ++y) {
    const float fy = (y + 0.5f) / cell;
    const int y0 = std::min(static_cast<int>(fy), kh - 2);
    const float ty = fy - y0;
    for (int x = 0; x < w; ++x) {
      const float fx = (x + 0.5f) / cell;
      const int x0 = std::min(static_cast<int>(fx), kw - 2);
      const float tx = fx - x0;
      const float a = k[size_t(y0) * kw + x0] * (1 - tx) + k[size_t(y0) * kw + x0 + 1] * tx;
      const float b = k[size_t(y0 + 1) * kw + x0] * (1 - tx) + k[size_t(y0 + 1) * kw + x0 + 1] * tx;
      lum[size_t(y) * w + x] += a * (1 - ty) + b * ty;
    }
  }
}

constexpr float kGrain = 13.0f;  // tuned for ~115 KB per image

Bytes MakeImage(int index, uint32_t seed) {
  std::mt19937 rng(seed * 7919u + static_cast<uint32_t>(index));
  std::uniform_int_distribution<int> side(350, 600);
  const int w = side(rng), h = side(rng);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  FastNormal n01{0x9E3779B97F4A7C15ull ^ (uint64_t(seed) << 32) ^ uint64_t(index + 1)};
  const float busy = 0.6f + 0.8f * u(rng);

  // Background and sharp-edged shapes (rectangles and ellipses).
  std::array<float, 3> base;
  const float hue = static_cast<float>(index % 10) / 10.f;
  for (int c = 0; c < 3; ++c) base[c] = 128 + 60 * std::cos(6.2832f * (hue + c / 3.f));
  std::vector<float> img(size_t(w) * h * 3);
  for (size_t i = 0; i < size_t(w) * h; ++i) {
    for (int c = 0; c < 3; ++c) img[i * 3 + c] = base[c];
  }
  const int shapes = 8 + static_cast<int>(u(rng) * 12);
  for (int s = 0; s < shapes; ++s) {
    std::array<float, 3> col;
    for (int c = 0; c < 3; ++c) col[c] = std::clamp(base[c] + 55 * n01(), 0.f, 255.f);
    const float cx = u(rng) * w, cy = u(rng) * h;
    const float r = (0.04f + 0.26f * u(rng)) * std::min(w, h);
    const float ry = r * (0.3f + 0.7f * u(rng));
    const bool ellipse = u(rng) < 0.5f;
    const int y0 = std::max(0, int(cy - ry)), y1 = std::min(h, int(cy + ry) + 1);
    const int x0 = std::max(0, int(cx - r)), x1 = std::min(w, int(cx + r) + 1);
    for (int y = y0; y < y1; ++y) {
      for (int x = x0; x < x1; ++x) {
        const float dx = (x - cx) / r, dy = (y - cy) / ry;
        if (ellipse && dx * dx + dy * dy > 1) continue;
        for (int c = 0; c < 3; ++c) img[(size_t(y) * w + x) * 3 + c] = col[c];
      }
    }
  }
  // Luminance: shading at several scales, mid grain, fine grain.
  std::vector<float> lum(size_t(w) * h, 0.f);
  AddSmooth(lum, w, h, 64, 24, n01);
  AddSmooth(lum, w, h, 20, 12, n01);
  AddSmooth(lum, w, h, 7, 10, n01);
  AddSmooth(lum, w, h, 2, kGrain * busy, n01);
  for (auto& v : lum) v += kGrain * busy * n01();
  std::vector<uint8_t> rgb(img.size());
  for (size_t i = 0; i < size_t(w) * h; ++i) {
    for (int c = 0; c < 3; ++c) {
      const float v = img[i * 3 + c] + lum[i] + 0.4f * kGrain * busy * n01();
      rgb[i * 3 + c] = static_cast<uint8_t>(std::clamp(v, 0.f, 255.f));
    }
  }
  return EncodeJpeg(rgb, w, h, 90);
}

// torchvision.transforms.RandomResizedCrop.get_params.
Rect RandomResizedCrop(int width, int height, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const double area = double(width) * height;
  const double log_lo = std::log(3.0 / 4.0), log_hi = std::log(4.0 / 3.0);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * (0.08 + 0.92 * u(rng));
    const double ratio = std::exp(log_lo + (log_hi - log_lo) * u(rng));
    const int w = static_cast<int>(std::lround(std::sqrt(target * ratio)));
    const int h = static_cast<int>(std::lround(std::sqrt(target / ratio)));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      const int i = static_cast<int>(u(rng) * (height - h + 1));
      const int j = static_cast<int>(u(rng) * (width - w + 1));
      return Rect{double(j), double(i), double(w), double(h)};
    }
  }
  const double in_ratio = double(width) / height;
  int w = width, h = height;
  if (in_ratio < 3.0 / 4.0) {
    h = static_cast<int>(std::lround(w / (3.0 / 4.0)));
  } else if (in_ratio > 4.0 / 3.0) {
    w = static_cast<int>(std::lround(h * (4.0 / 3.0)));
  }
  return Rect{double((width - w) / 2), double((height - h) / 2), double(w), double(h)};
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// This thread's CPU time: on a shared machine, images per CPU-second is the
// steadier number; img/s (wall) is what a dedicated core would see only
// when the two agree.
double CpuNow() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

void Report(const char* name, size_t count, double wall, double cpu, const char* extra) {
  std::printf("%-30s %8.1f img/s wall, %8.1f img/CPU-s  [%zu decodes%s]\n", name, count / wall,
              count / cpu, count, extra);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  int n = -1;
  double seconds = 3.0;
  uint32_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--n" && i + 1 < argc) {
      n = std::atoi(argv[++i]);
    } else if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (a == "--seed" && i + 1 < argc) {
      seed = static_cast<uint32_t>(std::atoi(argv[++i]));
    } else if (a == "-h" || a == "--help") {
      std::printf("usage: %s [DIR] [--n N] [--seconds S] [--seed K]\n", argv[0]);
      return 0;
    } else {
      dir = a;
    }
  }

  std::vector<Bytes> files;
  const double t_load = Now();
  if (!dir.empty()) {
    if (n < 0) n = 2000;
    std::vector<std::filesystem::path> paths;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
      if (!e.is_regular_file()) continue;
      std::string ext = e.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
      if (ext == ".jpg" || ext == ".jpeg") paths.push_back(e.path());
    }
    std::sort(paths.begin(), paths.end());
    if (static_cast<int>(paths.size()) > n) paths.resize(static_cast<size_t>(n));
    for (const auto& p : paths) {
      std::ifstream f(p, std::ios::binary);
      files.emplace_back(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    }
  } else {
    if (n < 0) n = 500;
    for (int i = 0; i < n; ++i) files.push_back(MakeImage(i, seed));
  }
  if (files.empty()) {
    std::fprintf(stderr, "no JPEG files\n");
    return 1;
  }

  Decoder dec;
  double bytes = 0, src_pixels = 0;
  int errors = 0;
  for (const Bytes& f : files) {  // warm-up, and sizes
    bytes += static_cast<double>(f.size());
    auto r = dec.DecodeFull({f.data(), f.size()});
    if (r.ok()) {
      src_pixels += double(r->width) * r->height;
    } else {
      ++errors;
    }
  }
  std::printf("decode_bench: %zu JPEGs (%s, %.1f s to load), mean %.1f KB, %.3f MP; "
              "single thread\n",
              files.size(), dir.empty() ? "generated" : dir.c_str(), Now() - t_load,
              bytes / files.size() / 1e3, src_pixels / files.size() / 1e6);
  if (errors) std::printf("  %d files failed to decode\n", errors);

  // DecodeFull: passes over all files until `seconds` have gone by.
  {
    uint64_t checksum = 0;
    size_t count = 0;
    const double t0 = Now(), c0 = CpuNow();
    do {
      for (const Bytes& f : files) {
        auto r = dec.DecodeFull({f.data(), f.size()});
        if (r.ok()) checksum += r->data[0];
        ++count;
      }
    } while (Now() - t0 < seconds);
    const double dt = Now() - t0, dc = CpuNow() - c0;
    char extra[64];
    std::snprintf(extra, sizeof extra, ", %.0f MP/CPU-s, check %llu",
                  count * (src_pixels / files.size()) / dc / 1e6,
                  static_cast<unsigned long long>(checksum % 1000));
    Report("DecodeFull", count, dt, dc, extra);
  }

  // Reference: plain libjpeg, one reused decompressor, default settings,
  // whole image read row by row into a reused buffer: what DecodeFull
  // should cost (the machine may be shared; compare within one run).
  {
    jpeg_decompress_struct cinfo;
    jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_decompress(&cinfo);
    std::vector<uint8_t> buf;
    uint64_t checksum = 0;
    size_t count = 0;
    const double t0 = Now(), c0 = CpuNow();
    do {
      for (const Bytes& f : files) {
        jpeg_mem_src(&cinfo, f.data(), static_cast<unsigned long>(f.size()));
        jpeg_read_header(&cinfo, TRUE);
        cinfo.out_color_space = JCS_RGB;
        jpeg_start_decompress(&cinfo);
        const size_t stride = size_t(cinfo.output_width) * 3;
        if (buf.size() < stride * cinfo.output_height) buf.resize(stride * cinfo.output_height);
        while (cinfo.output_scanline < cinfo.output_height) {
          JSAMPROW row = &buf[cinfo.output_scanline * stride];
          jpeg_read_scanlines(&cinfo, &row, 1);
        }
        jpeg_abort_decompress(&cinfo);
        checksum += buf[0];
        ++count;
      }
    } while (Now() - t0 < seconds);
    const double dt = Now() - t0, dc = CpuNow() - c0;
    jpeg_destroy_decompress(&cinfo);
    char extra[64];
    std::snprintf(extra, sizeof extra, ", check %llu",
                  static_cast<unsigned long long>(checksum % 1000));
    Report("plain libjpeg full (reference)", count, dt, dc, extra);
  }

  // DecodeRegion with RandomResizedCrop to 224, without and with a row
  // index (jpeg_rows.h): its first pass over the files walks the rows above
  // each crop (as libjpeg's skip would), later passes mostly jump.
  for (int with_index = 0; with_index < 2; ++with_index) {
    stoker::decode::JpegRowIndex index(files.size());
    const auto ref_for = [&](size_t i) {
      return with_index ? stoker::decode::RowIndexRef{&index, i} : stoker::decode::RowIndexRef{};
    };
    if (with_index) {
      std::mt19937_64 rng(seed + 1);
      const double t0 = Now(), c0 = CpuNow();
      for (size_t i = 0; i < files.size(); ++i) {
        (void)dec.DecodeRegion({files[i].data(), files[i].size()},
                               [&](int w, int h) { return RandomResizedCrop(w, h, rng); }, 224,
                               224, ref_for(i));
      }
      const double dt = Now() - t0, dc = CpuNow() - c0;
      Report("  row index, first pass", files.size(), dt, dc, "");
    }
    std::mt19937_64 rng(seed);
    std::array<size_t, 9> by_denom{};
    double decoded_pixels = 0;
    uint64_t checksum = 0;
    size_t count = 0;
    const double t0 = Now(), c0 = CpuNow();
    do {
      for (size_t i = 0; i < files.size(); ++i) {
        const Bytes& f = files[i];
        auto r = dec.DecodeRegion(
            {f.data(), f.size()}, [&](int w, int h) { return RandomResizedCrop(w, h, rng); },
            224, 224, ref_for(i));
        if (r.ok()) {
          checksum += r->image.data[0];
          by_denom[static_cast<size_t>(r->scale_denom)]++;
          decoded_pixels += double(r->image.width) * r->image.height;
        }
        ++count;
      }
    } while (Now() - t0 < seconds);
    const double dt = Now() - t0, dc = CpuNow() - c0;
    char extra[64];
    std::snprintf(extra, sizeof extra, ", check %llu",
                  static_cast<unsigned long long>(checksum % 1000));
    Report(with_index ? "DecodeRegion, row index" : "DecodeRegion (RRC -> 224)", count, dt, dc,
           extra);
    if (with_index) {
      std::printf("  %lld jumps, %.1f MCU rows not decoded per jump, index %.1f KB\n",
                  static_cast<long long>(index.jumps()),
                  double(index.rows_jumped()) / std::max<int64_t>(1, index.jumps()),
                  index.bytes_used() / 1e3);
    }
    std::printf("  scale used: 1/1 %.0f%%, 1/2 %.0f%%, 1/4 %.0f%%, 1/8 %.0f%%; "
                "mean decoded area %.3f MP\n",
                100.0 * by_denom[1] / count, 100.0 * by_denom[2] / count,
                100.0 * by_denom[4] / count, 100.0 * by_denom[8] / count,
                decoded_pixels / count / 1e6);
  }
  return 0;
}
