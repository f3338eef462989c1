// The parsers behind sample fields: .npy (ParseNpy), JSON (ValidateJson),
// UTF-8 (IsValidUtf8). Bad inputs give kCorrupt/kUnsupported naming the
// reason.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "stoker/base/utf8.h"
#include "stoker/decode/json.h"
#include "stoker/decode/npy.h"

namespace stoker::decode {
namespace {

std::string Npy(const std::string& dict, const std::string& data, int version = 1) {
  std::string header = dict;
  while ((header.size() + (version == 1 ? 11 : 13)) % 64) header += ' ';
  header += '\n';
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(version);
  out += '\0';
  const size_t n = header.size();
  out += static_cast<char>(n & 0xFF);
  out += static_cast<char>((n >> 8) & 0xFF);
  if (version > 1) out += std::string(2, '\0');
  return out + header + data;
}

Result<Array> Parse(const std::string& s) {
  return ParseNpy(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}

TEST(Npy, ReadsDtypeShapeAndBytes) {
  float v[6] = {1, 2, 3, 4, 5, -6.5f};
  std::string data(reinterpret_cast<const char*>(v), sizeof v);
  auto a = Parse(Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data));
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->dtype, DType::kFloat32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  ASSERT_EQ(a->data.size(), sizeof v);
  EXPECT_EQ(std::memcmp(a->data.data(), v, sizeof v), 0);
}

TEST(Npy, ScalarsEmptyArraysVersionsAndKeyOrder) {
  auto scalar = Parse(Npy("{'shape': (), 'fortran_order': False, 'descr': '<i8'}", std::string(8, '\1'), 2));
  ASSERT_TRUE(scalar.ok()) << scalar.status().ToString();
  EXPECT_TRUE(scalar->shape.empty());
  EXPECT_EQ(scalar->data.size(), 8u);
  auto empty = Parse(Npy("{\"descr\": \"|b1\", \"fortran_order\": False, \"shape\": (0, 4)}", "", 3));
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_EQ(empty->dtype, DType::kBool);
  EXPECT_EQ(empty->shape, (std::vector<int64_t>{0, 4}));
  EXPECT_TRUE(empty->data.empty());
}

TEST(Npy, BigEndianIsSwapped) {
  auto a = Parse(Npy("{'descr': '>u2', 'fortran_order': False, 'shape': (2,), }",
                     std::string("\x01\x02\x03\x04", 4)));
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  uint16_t v[2];
  std::memcpy(v, a->data.data(), 4);
  EXPECT_EQ(v[0], 0x0102);
  EXPECT_EQ(v[1], 0x0304);
}

TEST(Npy, BadInputsSayWhy) {
  const std::string ok_dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }";
  struct Case {
    std::string bytes;
    StatusCode code;
    const char* message;
  } cases[] = {
      {"not numpy", StatusCode::kCorrupt, "npy: not a .npy file (no \\x93NUMPY magic)"},
      {Npy(ok_dict, std::string(7, '\0')), StatusCode::kCorrupt,
       "npy: the shape needs 8 bytes of data, the file has 7"},
      {Npy(ok_dict, std::string(9, '\0')), StatusCode::kCorrupt,
       "npy: the shape needs 8 bytes of data, the file has 9"},
      {Npy(ok_dict, "").substr(0, 20), StatusCode::kCorrupt,
       "npy: header runs past the end of the file"},
      {Npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", std::string(8, '\0')),
       StatusCode::kUnsupported,
       "npy: dtype '<c8' (bool, int8-64, uint8-64 and float16/32/64 are read)"},
      {Npy("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (1,), }", ""),
       StatusCode::kCorrupt, "npy: 'descr' is not a string (structured dtypes are not supported)"},
      {Npy("{'descr': '<i4', 'fortran_order': True, 'shape': (2,), }", std::string(8, '\0')),
       StatusCode::kUnsupported, "npy: Fortran-order array (save it with numpy.ascontiguousarray)"},
      {Npy("{'descr': '<i4', 'fortran_order': False, 'shape': (-1,), }", ""),
       StatusCode::kCorrupt, "npy: 'shape' holds something other than sizes"},
      {Npy("{'descr': '<i4', 'fortran_order': False}", ""), StatusCode::kCorrupt,
       "npy: header lacks 'descr', 'fortran_order' or 'shape'"},
      {Npy("{'descr': '<i1', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", ""),
       StatusCode::kCorrupt, "npy: shape too large"},
      {std::string("\x93NUMPY\x04\x00", 8) + std::string(8, ' '), StatusCode::kUnsupported,
       "npy: format version 4 (1.0 to 3.0 are read)"},
  };
  for (const auto& c : cases) {
    auto a = Parse(c.bytes);
    ASSERT_FALSE(a.ok()) << c.message;
    EXPECT_EQ(a.status().code(), c.code) << c.message;
    EXPECT_EQ(a.status().message(), c.message);
  }
}

TEST(Json, AcceptsValuesRfc8259Allows) {
  for (const char* ok : {"{}", "[]", " 1 ", "-0.5e-3", "\"a\\u00e9\\n\"", "true", "null",
                         "{\"a\": [1, {\"b\": false}], \"c\": \"\xc3\xa9\"}"}) {
    EXPECT_TRUE(ValidateJson(ok).ok()) << ok;
  }
}

TEST(Json, RefusesWithTheReasonAndOffset) {
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {"", "not valid JSON: missing value at byte 0"},
      {"{\"a\": 1,}", "not valid JSON: expected a key at byte 8"},
      {"[1 2]", "not valid JSON: expected ',' or ']' at byte 3"},
      {"01", "not valid JSON: text after the JSON value at byte 1"},
      {"\"tab\there\"", "not valid JSON: control character in a string at byte 5"},
      {"'single'", "not valid JSON: bad number at byte 0"},
      {"nul", "not valid JSON: unknown literal at byte 0"},
      {"\"\xff\"", "not valid JSON: not valid UTF-8 at byte 0"},
  };
  for (const auto& c : cases) {
    Status st = ValidateJson(c.text);
    EXPECT_EQ(st.code(), StatusCode::kCorrupt) << c.text;
    EXPECT_EQ(st.message(), c.message);
  }
  EXPECT_EQ(ValidateJson(std::string(600, '[') + std::string(600, ']')).message(),
            "not valid JSON: nested too deep at byte 513");
  EXPECT_TRUE(ValidateJson(std::string(500, '[') + std::string(500, ']')).ok());
}

TEST(Utf8, WellFormedOnly) {
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xc3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));      // overlong, 3 bytes
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // a surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\x80"));              // a lone continuation byte
}

}  // namespace
}  // namespace stoker::decode
