// Single-sample entry points to the kernels the loader runs, for tests that
// compare stoker's pixels with a reference decoder.
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include <cstring>

#include "errors.h"
#include "stoker/image.h"

namespace nb = nanobind;

namespace stoker::python {

TransformOptions MakeTransform(const std::string& kind, int size, bool normalize,
                               std::array<double, 2> scale, std::array<double, 2> ratio,
                               double flip_probability, double center_fraction,
                               std::array<float, 3> mean, std::array<float, 3> std,
                               bool fast_decode);

namespace {

TransformOptions SimpleTransform(const std::string& kind, int size, bool normalize,
                                 bool fast_decode = false) {
  TransformOptions d;
  return MakeTransform(kind, size, normalize, d.scale, d.ratio, d.flip_probability,
                       d.center_fraction, d.mean, d.std, fast_decode);
}

// A NumPy array that owns `data`.
template <typename T>
nb::ndarray<nb::numpy, T> OwnedArray(std::vector<T>&& data, std::initializer_list<size_t> shape) {
  auto* heap = new std::vector<T>(std::move(data));
  nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T>(heap->data(), shape, owner);
}

std::span<const uint8_t> Span(const nb::bytes& b) {
  return {static_cast<const uint8_t*>(b.data()), b.size()};
}

}  // namespace

void register_kernels(nb::module_& m) {
  m.def(
      "decode_image",
      [](nb::bytes data, int64_t max_pixels) {
        Result<Image> r = Internal("not decoded");
        {
          nb::gil_scoped_release release;
          r = DecodeImage(Span(data), max_pixels);
        }
        Image img = ValueOrThrow(std::move(r));
        return OwnedArray(std::move(img.pixels),
                          {static_cast<size_t>(img.height), static_cast<size_t>(img.width), 3});
      },
      nb::arg("data"), nb::arg("max_pixels") = 178956970,
      "Decodes a whole JPEG or PNG to an (H, W, 3) uint8 array.");

  m.def(
      "transform_image",
      [](nb::bytes data, const std::string& kind, int size, bool normalize, uint64_t seed,
         int64_t epoch, uint64_t position, bool fast_decode) -> nb::object {
        TransformOptions t = SimpleTransform(kind, size, normalize, fast_decode);
        Result<std::vector<uint8_t>> r = Internal("not transformed");
        {
          nb::gil_scoped_release release;
          r = TransformImage(Span(data), t, seed, epoch, position);
        }
        std::vector<uint8_t> out = ValueOrThrow(std::move(r));
        const size_t s = static_cast<size_t>(size);
        if (!normalize) return nb::cast(OwnedArray(std::move(out), {3, s, s}));
        std::vector<float> f(3 * s * s);
        std::memcpy(f.data(), out.data(), f.size() * sizeof(float));
        return nb::cast(OwnedArray(std::move(f), {3, s, s}));
      },
      nb::arg("data"), nb::arg("kind"), nb::arg("size"), nb::arg("normalize"), nb::arg("seed"),
      nb::arg("epoch"), nb::arg("position"), nb::arg("fast_decode") = false,
      "The loader's per-sample path for one image: a (3, size, size) array.");

  m.def(
      "sample_params",
      [](int width, int height, const std::string& kind, int size, uint64_t seed, int64_t epoch,
         uint64_t position) {
        auto p = SampleCropParams(width, height, SimpleTransform(kind, size, false), seed, epoch,
                                  position);
        return std::make_tuple(p.x, p.y, p.w, p.h, p.flip);
      },
      nb::arg("width"), nb::arg("height"), nb::arg("kind"), nb::arg("size"), nb::arg("seed"),
      nb::arg("epoch"), nb::arg("position"),
      "The source crop (x, y, w, h) and flip the loader takes for one sample.");
}

}  // namespace stoker::python
