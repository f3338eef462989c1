// Single-sample entry points to the kernels the loader runs, for tests that
// compare stoker's pixels with a reference decoder.
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include <cstring>

#include "arrays.h"
#include "errors.h"
#include "stoker/image.h"

namespace nb = nanobind;

namespace stoker::python {

namespace {

// The presets with their default parameters ("train" or "val").
TransformOptions SimpleTransform(const std::string& kind, int size, bool normalize,
                                 bool fast_decode = false) {
  TransformOptions t;
  if (kind == "train") {
    t.kind = TransformOptions::Kind::kTrain;
  } else if (kind == "val") {
    t.kind = TransformOptions::Kind::kVal;
  } else {
    throw nb::value_error(("transform kind must be 'train' or 'val', got '" + kind + "'").c_str());
  }
  t.size = size;
  t.normalize = normalize;
  t.fast_decode = fast_decode;
  return t;
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
