#include "stoker/decode/npy.h"

#include <bit>
#include <cctype>
#include <charconv>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace stoker::decode {
namespace {

constexpr std::string_view kMagic = "\x93NUMPY";
constexpr size_t kMaxDims = 32;

void SkipSpace(std::string_view s, size_t& i) {
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
}

// A Python string literal in single or double quotes, no escapes (numpy
// writes none in a header).
std::optional<std::string> ReadQuoted(std::string_view s, size_t& i) {
  if (i >= s.size() || (s[i] != '\'' && s[i] != '"')) return std::nullopt;
  const char q = s[i++];
  const size_t end = s.find(q, i);
  if (end == std::string_view::npos) return std::nullopt;
  std::string out(s.substr(i, end - i));
  if (out.find('\\') != std::string::npos) return std::nullopt;
  i = end + 1;
  return out;
}

struct Header {
  std::string descr;
  std::optional<bool> fortran;
  std::optional<std::vector<int64_t>> shape;
};

Status NpyCorrupt(const std::string& why) { return Status(StatusCode::kCorrupt, "npy: " + why); }

Status ParseHeader(std::string_view s, Header& h) {
  size_t i = 0;
  SkipSpace(s, i);
  if (i >= s.size() || s[i] != '{') return NpyCorrupt("header is not a dict");
  ++i;
  while (true) {
    SkipSpace(s, i);
    if (i < s.size() && s[i] == '}') break;
    auto key = ReadQuoted(s, i);
    if (!key) return NpyCorrupt("header key is not a quoted string");
    SkipSpace(s, i);
    if (i >= s.size() || s[i] != ':') return NpyCorrupt("expected ':' after '" + *key + "'");
    ++i;
    SkipSpace(s, i);
    if (*key == "descr") {
      auto v = ReadQuoted(s, i);
      if (!v) return NpyCorrupt("'descr' is not a string (structured dtypes are not supported)");
      h.descr = *v;
    } else if (*key == "fortran_order") {
      if (s.substr(i, 4) == "True") {
        h.fortran = true;
        i += 4;
      } else if (s.substr(i, 5) == "False") {
        h.fortran = false;
        i += 5;
      } else {
        return NpyCorrupt("'fortran_order' is not True or False");
      }
    } else if (*key == "shape") {
      if (i >= s.size() || s[i] != '(') return NpyCorrupt("'shape' is not a tuple");
      ++i;
      std::vector<int64_t> shape;
      while (true) {
        SkipSpace(s, i);
        if (i < s.size() && s[i] == ')') break;
        int64_t d = -1;
        auto [p, ec] = std::from_chars(s.data() + i, s.data() + s.size(), d);
        if (ec != std::errc() || d < 0) return NpyCorrupt("'shape' holds something other than sizes");
        i = static_cast<size_t>(p - s.data());
        shape.push_back(d);
        if (shape.size() > kMaxDims) return NpyCorrupt("more than 32 dimensions");
        SkipSpace(s, i);
        if (i < s.size() && s[i] == ',') {
          ++i;
          continue;
        }
        if (i < s.size() && s[i] == ')') break;
        return NpyCorrupt("'shape' is not a tuple of sizes");
      }
      ++i;
      h.shape = std::move(shape);
    } else {
      return NpyCorrupt("unexpected header key '" + *key + "'");
    }
    SkipSpace(s, i);
    if (i < s.size() && s[i] == ',') {
      ++i;
      continue;
    }
    if (i < s.size() && s[i] == '}') break;
    return NpyCorrupt("expected ',' or '}' in the header");
  }
  ++i;
  SkipSpace(s, i);
  if (i != s.size()) return NpyCorrupt("text after the header dict");
  if (h.descr.empty() || !h.fortran || !h.shape)
    return NpyCorrupt("header lacks 'descr', 'fortran_order' or 'shape'");
  return Status::Ok();
}

// '<f4' -> (kFloat32, swap = false); nullopt when not supported.
std::optional<std::pair<DType, bool>> ParseDescr(const std::string& d) {
  if (d.size() < 3) return std::nullopt;
  const char order = d[0];
  if (order != '<' && order != '>' && order != '|' && order != '=') return std::nullopt;
  const std::string t = d.substr(1);
  struct Entry {
    const char* name;
    DType dtype;
  };
  static constexpr Entry kTypes[] = {
      {"b1", DType::kBool},    {"i1", DType::kInt8},    {"u1", DType::kUInt8},
      {"i2", DType::kInt16},   {"u2", DType::kUInt16},  {"i4", DType::kInt32},
      {"u4", DType::kUInt32},  {"i8", DType::kInt64},   {"u8", DType::kUInt64},
      {"f2", DType::kFloat16}, {"f4", DType::kFloat32}, {"f8", DType::kFloat64}};
  for (const auto& e : kTypes) {
    if (t == e.name) {
      const bool big = order == '>' ||
                       (order == '=' && std::endian::native == std::endian::big);
      const bool swap = DTypeSize(e.dtype) > 1 && (big != (std::endian::native == std::endian::big));
      return std::make_pair(e.dtype, swap);
    }
  }
  return std::nullopt;
}

}  // namespace

Result<Array> ParseNpy(std::span<const uint8_t> bytes) {
  const std::string_view all(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (all.size() < kMagic.size() + 2 || all.substr(0, kMagic.size()) != kMagic)
    return NpyCorrupt("not a .npy file (no \\x93NUMPY magic)");
  const uint8_t major = bytes[6];
  size_t header_len = 0, pos = 0;
  if (major == 1) {
    if (bytes.size() < 10) return NpyCorrupt("truncated header length");
    header_len = size_t{bytes[8]} | size_t{bytes[9]} << 8;
    pos = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return NpyCorrupt("truncated header length");
    header_len = size_t{bytes[8]} | size_t{bytes[9]} << 8 | size_t{bytes[10]} << 16 |
                 size_t{bytes[11]} << 24;
    pos = 12;
  } else {
    return Status(StatusCode::kUnsupported,
                  "npy: format version " + std::to_string(major) + " (1.0 to 3.0 are read)");
  }
  if (header_len > bytes.size() - pos) return NpyCorrupt("header runs past the end of the file");
  Header h;
  STOKER_RETURN_IF_ERROR(ParseHeader(all.substr(pos, header_len), h));
  pos += header_len;
  auto dt = ParseDescr(h.descr);
  if (!dt) {
    return Status(StatusCode::kUnsupported,
                  "npy: dtype '" + h.descr +
                      "' (bool, int8-64, uint8-64 and float16/32/64 are read)");
  }
  if (*h.fortran) {
    return Status(StatusCode::kUnsupported,
                  "npy: Fortran-order array (save it with numpy.ascontiguousarray)");
  }
  Array a;
  a.dtype = dt->first;
  a.shape = std::move(*h.shape);
  const size_t item = DTypeSize(a.dtype);
  size_t count = 1;
  for (int64_t d : a.shape) {
    if (d != 0 && count > std::numeric_limits<size_t>::max() / item / static_cast<size_t>(d))
      return NpyCorrupt("shape too large");
    count *= static_cast<size_t>(d);
  }
  const size_t need = count * item;
  const size_t have = bytes.size() - pos;
  if (have != need) {
    return NpyCorrupt("the shape needs " + std::to_string(need) + " bytes of data, the file has " +
                   std::to_string(have));
  }
  a.data.resize(need);
  if (need) std::memcpy(a.data.data(), bytes.data() + pos, need);
  if (dt->second) {
    for (size_t k = 0; k < count; ++k) {
      std::byte* e = a.data.data() + k * item;
      for (size_t x = 0; x < item / 2; ++x) std::swap(e[x], e[item - 1 - x]);
    }
  }
  return a;
}

}  // namespace stoker::decode
