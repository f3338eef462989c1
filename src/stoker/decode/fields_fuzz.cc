// libFuzzer target: the parsers of sample fields (docs/fields.md) that read
// untrusted bytes: NumPy .npy files (ParseNpy), JSON text (ValidateJson)
// and UTF-8 text (IsValidUtf8), each on every input.
//
// Checked beyond "no crash": errors are kCorrupt or kUnsupported with a
// message, never kInternal; a parsed array's data has exactly
// product(shape) * itemsize bytes and at most the input's size; an input
// that is valid JSON is valid UTF-8; JSON validity does not depend on
// surrounding whitespace; a valid array written back as a version 1.0 file
// with its header parses to the same dtype, shape and bytes.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "stoker/base/utf8.h"
#include "stoker/decode/json.h"
#include "stoker/decode/npy.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "fields_fuzz invariant broken: %s\n", what);
  std::abort();
}

void CheckError(const stoker::Status& st) {
  if (st.ok()) return;
  if (st.code() != stoker::StatusCode::kCorrupt && st.code() != stoker::StatusCode::kUnsupported)
    Fail("error is neither corrupt nor unsupported");
  if (st.message().empty()) Fail("error without a message");
}

const char* Descr(stoker::DType t) {
  using stoker::DType;
  switch (t) {
    case DType::kBool: return "|b1";
    case DType::kInt8: return "|i1";
    case DType::kUInt8: return "|u1";
    case DType::kInt16: return "<i2";
    case DType::kUInt16: return "<u2";
    case DType::kFloat16: return "<f2";
    case DType::kInt32: return "<i4";
    case DType::kUInt32: return "<u4";
    case DType::kFloat32: return "<f4";
    case DType::kInt64: return "<i8";
    case DType::kUInt64: return "<u8";
    case DType::kFloat64: return "<f8";
  }
  return "?";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  auto a = stoker::decode::ParseNpy(bytes);
  CheckError(a.status());
  if (a.ok()) {
    size_t count = 1;
    for (int64_t d : a->shape) {
      if (d < 0) Fail("negative dimension");
      count *= static_cast<size_t>(d);
    }
    if (a->data.size() != count * stoker::DTypeSize(a->dtype)) Fail("data size != shape");
    if (a->data.size() > size) Fail("more data than input");
    // Little-endian hosts only write '<' here; the fuzzer runs on x86-64.
    std::string header = std::string("{'descr': '") + Descr(a->dtype) +
                         "', 'fortran_order': False, 'shape': (";
    for (int64_t d : a->shape) header += std::to_string(d) + ", ";
    header += "), }\n";
    if (header.size() < 65536) {
      std::string file("\x93NUMPY\x01\x00", 8);
      file += static_cast<char>(header.size() & 0xFF);
      file += static_cast<char>(header.size() >> 8);
      file += header;
      file.append(reinterpret_cast<const char*>(a->data.data()), a->data.size());
      auto again = stoker::decode::ParseNpy(
          std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(file.data()), file.size()));
      if (!again.ok()) Fail("a parsed array written back does not parse");
      if (again->dtype != a->dtype || again->shape != a->shape || again->data != a->data)
        Fail("a parsed array written back parses differently");
    }
  }

  const stoker::Status json = stoker::decode::ValidateJson(text);
  CheckError(json);
  if (json.ok() && !stoker::IsValidUtf8(text)) Fail("valid JSON that is not UTF-8");
  const bool spaced = stoker::decode::ValidateJson(" \n" + std::string(text) + "\t ").ok();
  if (spaced != json.ok()) Fail("JSON validity depends on surrounding whitespace");
  return 0;
}
