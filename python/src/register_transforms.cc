// stoker.transforms.Compose -> TransformOptions (kCompose), and the
// per-sample kernels the tests use to check a Compose against references.
#include "register_transforms.h"

#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <string>
#include <vector>

#include "arrays.h"
#include "errors.h"
#include "stoker/image.h"

namespace nb = nanobind;

namespace stoker::python {
namespace {

using Type = TransformOp::Type;

Type ParseType(const std::string& name) {
  static const std::pair<const char*, Type> kTypes[] = {
      {"RandomResizedCrop", Type::kRandomResizedCrop},
      {"Resize", Type::kResize},
      {"CenterCrop", Type::kCenterCrop},
      {"RandomCrop", Type::kRandomCrop},
      {"Pad", Type::kPad},
      {"RandomHorizontalFlip", Type::kRandomHorizontalFlip},
      {"RandomVerticalFlip", Type::kRandomVerticalFlip},
      {"ColorJitter", Type::kColorJitter},
      {"RandomGrayscale", Type::kRandomGrayscale},
      {"Grayscale", Type::kGrayscale},
      {"GaussianBlur", Type::kGaussianBlur},
      {"Normalize", Type::kNormalize},
      {"ToDtype", Type::kToDtype},
  };
  for (const auto& [n, t] : kTypes) {
    if (name == n) return t;
  }
  throw nb::value_error(("unknown transform op '" + name + "'").c_str());
}

TransformOp::PaddingMode ParseMode(const std::string& m) {
  if (m == "constant") return TransformOp::PaddingMode::kConstant;
  if (m == "edge") return TransformOp::PaddingMode::kEdge;
  if (m == "reflect") return TransformOp::PaddingMode::kReflect;
  if (m == "symmetric") return TransformOp::PaddingMode::kSymmetric;
  throw nb::value_error(("unknown padding_mode '" + m + "'").c_str());
}

template <typename T, size_t N>
void Read(const nb::dict& d, const char* key, std::array<T, N>& out) {
  if (!d.contains(key)) return;
  nb::sequence seq = nb::borrow<nb::sequence>(d[key]);
  if (nb::len(seq) != N) {
    throw nb::value_error(("transform op field '" + std::string(key) + "' needs " +
                           std::to_string(N) + " values")
                              .c_str());
  }
  for (size_t i = 0; i < N; ++i) out[i] = nb::cast<T>(seq[i]);
}

template <typename T>
void Read(const nb::dict& d, const char* key, T& out) {
  if (d.contains(key)) out = nb::cast<T>(d[key]);
}

void ReadFloats(const nb::dict& d, const char* key, std::vector<float>& out) {
  if (!d.contains(key)) return;
  out.clear();
  for (nb::handle v : nb::borrow<nb::sequence>(d[key])) out.push_back(nb::cast<float>(v));
}

// A Python transform object -> TransformOptions, or the error Open gives.
TransformOptions Convert(nb::handle transform) {
  if (!nb::hasattr(transform, "_spec")) {
    throw nb::type_error(
        "transform must be a stoker.transforms.Compose (or imagenet_train/imagenet_val)");
  }
  nb::tuple spec = nb::borrow<nb::tuple>(transform.attr("_spec")());
  TransformOptions t;
  t.kind = TransformOptions::Kind::kCompose;
  t.fast_decode = nb::cast<bool>(spec[1]);
  for (nb::handle h : nb::borrow<nb::sequence>(spec[0])) {
    nb::dict d = nb::borrow<nb::dict>(h);
    TransformOp op;
    op.type = ParseType(nb::cast<std::string>(d["type"]));
    Read(d, "size", op.size);
    Read(d, "scale", op.scale);
    Read(d, "ratio", op.ratio);
    Read(d, "padding", op.padding);
    Read(d, "pad_if_needed", op.pad_if_needed);
    Read(d, "fill", op.fill);
    if (d.contains("padding_mode")) op.padding_mode = ParseMode(nb::cast<std::string>(d["padding_mode"]));
    Read(d, "p", op.p);
    Read(d, "brightness", op.brightness);
    Read(d, "contrast", op.contrast);
    Read(d, "saturation", op.saturation);
    Read(d, "hue", op.hue);
    Read(d, "num_output_channels", op.num_output_channels);
    Read(d, "kernel_size", op.kernel_size);
    Read(d, "sigma", op.sigma);
    ReadFloats(d, "mean", op.mean);
    ReadFloats(d, "std", op.std);
    Read(d, "scale_values", op.scale_values);  // ToDtype's scale
    t.ops.push_back(std::move(op));
  }
  return t;
}

}  // namespace

TransformOptions TransformFromPython(nb::handle transform) {
  TransformOptions t = Convert(transform);
  ThrowIfError(TransformShape(t).status());
  return t;
}

void register_transforms(nb::module_& m) {
  m.def(
      "compose_transform_image",
      [](nb::bytes data, nb::handle transform, uint64_t seed, int64_t epoch,
         uint64_t position) -> nb::object {
        const TransformOptions t = TransformFromPython(transform);
        const ImageShape s = ValueOrThrow(TransformShape(t));
        Result<std::vector<uint8_t>> r = Internal("not transformed");
        {
          nb::gil_scoped_release release;
          r = TransformImage(Span(data), t, seed, epoch, position);
        }
        std::vector<uint8_t> out = ValueOrThrow(std::move(r));
        const auto c = static_cast<size_t>(s.channels), h = static_cast<size_t>(s.height),
                   w = static_cast<size_t>(s.width);
        if (!s.is_float) return nb::cast(OwnedArray(std::move(out), {c, h, w}));
        std::vector<float> f(c * h * w);
        std::memcpy(f.data(), out.data(), f.size() * sizeof(float));
        return nb::cast(OwnedArray(std::move(f), {c, h, w}));
      },
      nb::arg("data"), nb::arg("transform"), nb::arg("seed"), nb::arg("epoch"),
      nb::arg("position"),
      "The loader's per-sample path for one image and a Compose: a (C, H, W) array.");

  m.def(
      "compose_sample_params",
      [](int width, int height, nb::handle transform, uint64_t seed, int64_t epoch,
         uint64_t position) {
        const TransformOptions t = TransformFromPython(transform);
        const CropParams p = SampleCropParams(width, height, t, seed, epoch, position);
        return std::make_tuple(p.x, p.y, p.w, p.h, p.flip, p.vflip, p.out_w, p.out_h);
      },
      nb::arg("width"), nb::arg("height"), nb::arg("transform"), nb::arg("seed"),
      nb::arg("epoch"), nb::arg("position"),
      "The fused prefix of a Compose for one sample: source rect (x, y, w, h), hflip, vflip, "
      "and the size (out_w, out_h) it is resampled to.");

  m.def("sample_uniforms", &SampleUniforms, nb::arg("seed"), nb::arg("epoch"),
        nb::arg("position"), nb::arg("n"),
        "The first n Uniform() draws of a sample's random numbers (every op's parameters "
        "come from them, in op order).");

  m.def(
      "transform_mask",
      [](nb::bytes png, nb::handle transform, uint64_t seed, int64_t epoch, uint64_t position,
         int image_width, int image_height) {
        const TransformOptions t = TransformFromPython(transform);
        const ImageShape s = ValueOrThrow(TransformShape(t));
        Result<std::vector<uint8_t>> r = Internal("not transformed");
        {
          nb::gil_scoped_release release;
          r = TransformMask(Span(png), t, seed, epoch, position, image_width, image_height);
        }
        return OwnedArray(ValueOrThrow(std::move(r)),
                          {static_cast<size_t>(s.height), static_cast<size_t>(s.width)});
      },
      nb::arg("png"), nb::arg("transform"), nb::arg("seed"), nb::arg("epoch"),
      nb::arg("position"), nb::arg("image_width"), nb::arg("image_height"),
      "A segmentation mask given the geometry of its image at (seed, epoch, position): (H, W) "
      "uint8.");
}

}  // namespace stoker::python
