#include "stoker/pipeline/fields.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>

#include "stoker/base/utf8.h"
#include "stoker/decode/json.h"
#include "stoker/decode/npy.h"

namespace stoker::pipeline {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string Quote(std::string_view s) {
  constexpr size_t kMax = 40;
  std::string out(1, '\'');
  out.append(s.substr(0, kMax));
  out.append(s.size() > kMax ? "...'" : "'");
  return out;
}

template <typename T>
void AppendScalar(std::vector<std::byte>& data, T v) {
  const size_t at = data.size();
  data.resize(at + sizeof(T));
  std::memcpy(data.data() + at, &v, sizeof(T));
}

}  // namespace

Status DecodeField(const dataset::Field& field, const std::string& value,
                   std::span<const uint8_t> file, FieldValue& out) {
  using K = FieldSpec::Kind;
  const std::string_view text =
      field.file ? std::string_view(reinterpret_cast<const char*>(file.data()), file.size())
                 : std::string_view(value);
  switch (field.kind) {
    case K::kInt: {
      const std::string_view t = Trim(text);
      auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), out.i);
      if (t.empty() || ec != std::errc() || p != t.data() + t.size())
        return Corrupt(Quote(t) + " is not an integer");
      return Status::Ok();
    }
    case K::kFloat: {
      const std::string_view t = Trim(text);
      auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), out.d);
      if (t.empty() || ec != std::errc() || p != t.data() + t.size())
        return Corrupt(Quote(t) + " is not a number");
      return Status::Ok();
    }
    case K::kText:
      if (!IsValidUtf8(text)) return Corrupt("text is not valid UTF-8");
      out.s.assign(text);
      return Status::Ok();
    case K::kJson:
      STOKER_RETURN_IF_ERROR(decode::ValidateJson(text));
      out.s.assign(text);
      return Status::Ok();
    case K::kBytes:
      out.s.assign(text);
      return Status::Ok();
    case K::kNpy: {
      auto a = decode::ParseNpy(file);
      if (!a.ok()) return a.status();
      out.array = std::move(*a);
      return Status::Ok();
    }
    case K::kMask:
    case K::kAuto:
      break;
  }
  return Internal("field kind " + std::string(dataset::FieldKindName(field.kind)) +
                  " is not decoded here");
}

FieldColumn CollateField(const dataset::Field& field, std::vector<FieldValue>& values) {
  using K = FieldSpec::Kind;
  FieldColumn col;
  col.name = field.name;
  col.kind = field.kind;
  const int64_t n = static_cast<int64_t>(values.size());
  switch (field.kind) {
    case K::kInt:
    case K::kFloat: {
      Array a;
      a.dtype = field.kind == K::kInt ? DType::kInt64 : DType::kFloat64;
      a.shape = {n};
      a.data.reserve(values.size() * 8);
      for (const auto& v : values) {
        if (field.kind == K::kInt) {
          AppendScalar(a.data, v.i);
        } else {
          AppendScalar(a.data, v.d);
        }
      }
      col.stacked = std::move(a);
      break;
    }
    case K::kText:
    case K::kJson:
    case K::kBytes:
      col.strings.reserve(values.size());
      for (auto& v : values) col.strings.push_back(std::move(v.s));
      break;
    case K::kNpy:
    case K::kMask: {
      bool same = !values.empty();
      for (const auto& v : values) {
        same = same && v.array.dtype == values[0].array.dtype &&
               v.array.shape == values[0].array.shape;
      }
      if (same) {
        Array a;
        a.dtype = values[0].array.dtype;
        a.shape = values[0].array.shape;
        a.shape.insert(a.shape.begin(), n);
        const size_t each = values[0].array.data.size();
        a.data.resize(each * values.size());
        for (size_t j = 0; j < values.size(); ++j) {
          if (each) std::memcpy(a.data.data() + j * each, values[j].array.data.data(), each);
        }
        col.stacked = std::move(a);
      } else if (field.kind == K::kNpy) {
        col.arrays.reserve(values.size());
        for (auto& v : values) col.arrays.push_back(std::move(v.array));
      }
      break;
    }
    case K::kAuto:
      break;
  }
  return col;
}

}  // namespace stoker::pipeline
