// libFuzzer target: the disk cache's entry files (DecodeEntry,
// docs/cache-format.md).
//
// Input: one control byte, then an entry file. The key asked for is the one
// the entry stores when its sizes say where it is (else "k"). Control bit 0
// set: both checksums are recomputed first, so mutations reach the checks
// behind them.
//
// Checked beyond "no crash": errors are kCorrupt or kUnsupported and name
// the file. A decoded entry's data is the file's tail, and encoding the key
// and data again gives the file's bytes exactly.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "stoker/base/crc32c.h"
#include "stoker/storage/cache/cache_entry.h"

namespace {

using stoker::storage::cache::kEntryHeaderSize;

[[noreturn]] void CacheFuzzFail(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "cache_entry_fuzz invariant broken: %s %s\n", what, detail.c_str());
  std::abort();
}

uint32_t Load32(const std::string& b, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(b[at + i]);
  return v;
}

void Store32(std::string& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}

const std::span<const uint8_t> U(const std::string& s, size_t from = 0, size_t n = std::string::npos) {
  n = std::min(n, s.size() - from);
  return {reinterpret_cast<const uint8_t*>(s.data()) + from, n};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string file(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string key = "k";
  if (file.size() >= kEntryHeaderSize) {
    const uint64_t key_size = Load32(file, 12);
    if (key_size <= file.size() - kEntryHeaderSize) key = file.substr(kEntryHeaderSize, key_size);
    if (data[0] & 1) {
      const size_t k = std::min<uint64_t>(key_size, file.size() - kEntryHeaderSize);
      const uint32_t body = stoker::Crc32c(U(file, kEntryHeaderSize + k),
                                           stoker::Crc32c(U(file, kEntryHeaderSize, k)));
      Store32(file, 24, body);
      Store32(file, 28, stoker::Crc32c(U(file, 0, 28)));
    }
  }
  const std::string name = "fuzz/ab/entry";
  auto got = stoker::storage::cache::DecodeEntry(U(file), key, name);
  if (!got.ok()) {
    const auto code = got.status().code();
    if (code != stoker::StatusCode::kCorrupt && code != stoker::StatusCode::kUnsupported) {
      CacheFuzzFail("unexpected error code", got.status().ToString());
    }
    if (got.status().message().find(name) == std::string::npos) CacheFuzzFail("error without the name");
    return 0;
  }
  const std::string payload(reinterpret_cast<const char*>(got->data()), got->size());
  if (file.size() < payload.size() || file.compare(file.size() - payload.size(), payload.size(), payload) != 0) {
    CacheFuzzFail("data is not the file's tail");
  }
  if (stoker::storage::cache::EncodeEntry(key, *got) != file) CacheFuzzFail("re-encoding differs");
  return 0;
}
