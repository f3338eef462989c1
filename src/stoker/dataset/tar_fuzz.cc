// libFuzzer target: the tar walk and WebDataset's grouping (dataset/tar.h,
// docs/webdataset.md), and brace patterns (ExpandBraces).
//
// Input: one control byte, then the bytes. Control bit 0 set: every header
// block the walk reads gets its checksum recomputed first, so mutations
// reach the checks behind it (a mutated header almost never matches its
// checksum by chance). Bit 1 set: the bytes (up to 64 of them) are also
// expanded as a brace pattern.
//
// Checked beyond "no crash": errors are kCorrupt, kUnsupported or
// kInvalidArgument and name the tar. Every file the walk reports lies inside
// the bytes, its data right after its 512-byte-aligned header, files in
// increasing order without overlap. Every sample the grouper makes has a
// non-empty key, members of distinct extensions in archive order, and no
// key twice. A pattern's names are within the promised count.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "stoker/dataset/dataset.h"
#include "stoker/dataset/tar.h"

namespace {

using stoker::dataset::kTarBlock;

const std::string kTarName = "fuzz/x.tar";

[[noreturn]] void TarFuzzFail(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "tar_fuzz invariant broken: %s %s\n", what, detail.c_str());
  std::abort();
}

void CheckError(const stoker::Status& st) {
  using stoker::StatusCode;
  if (st.code() != StatusCode::kCorrupt && st.code() != StatusCode::kUnsupported) {
    TarFuzzFail("unexpected error code", st.ToString());
  }
  if (st.message().find(kTarName) == std::string::npos) TarFuzzFail("error without the tar's name", st.ToString());
}

void FixChecksum(uint8_t* block) {
  std::memset(block + 148, ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < kTarBlock; ++i) sum += block[i];
  char field[8];
  std::snprintf(field, sizeof field, "%06o", sum & 0777777);
  std::memcpy(block + 148, field, 7);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t control = data[0];
  std::vector<uint8_t> bytes(data + 1, data + size);

  if (control & 2) {
    const std::string pattern(bytes.begin(), bytes.begin() + std::min<size_t>(bytes.size(), 64));
    auto names = stoker::dataset::ExpandBraces(pattern);
    if (names.ok()) {
      if (names->empty() || names->size() > 1'000'000) TarFuzzFail("brace count", pattern);
    } else if (names.status().code() != stoker::StatusCode::kInvalidArgument) {
      TarFuzzFail("brace error code", names.status().ToString());
    }
  }

  const stoker::dataset::TarReadAt read =
      [&](uint64_t offset, size_t length) -> stoker::Result<std::span<const uint8_t>> {
    if (offset >= bytes.size()) return std::span<const uint8_t>();
    const size_t n = std::min<size_t>(length, bytes.size() - offset);
    if ((control & 1) && length == kTarBlock && n == kTarBlock) FixChecksum(bytes.data() + offset);
    return std::span<const uint8_t>(bytes.data() + offset, n);
  };
  stoker::dataset::TarGrouper grouper(kTarName);
  std::set<std::string> keys;
  uint64_t last_end = 0;
  const auto check_sample = [&](const stoker::dataset::TarSample& s) {
    if (s.key.empty() || s.members.empty()) TarFuzzFail("empty sample");
    if (!keys.insert(s.key).second) TarFuzzFail("key twice", s.key);
    std::set<std::string> exts;
    uint64_t prev = 0;
    for (const auto& m : s.members) {
      if (!exts.insert(m.ext).second) TarFuzzFail("extension twice", m.ext);
      if (m.data_offset < prev) TarFuzzFail("members out of order");
      prev = m.data_offset;
    }
  };
  stoker::Status st = stoker::dataset::WalkTar(read, kTarName, [&](const stoker::dataset::TarFile& f) {
    if (f.data_offset != f.header_offset + kTarBlock || f.header_offset % kTarBlock != 0) {
      TarFuzzFail("data not right after its aligned header");
    }
    if (f.header_offset < last_end) TarFuzzFail("files overlap");
    if (f.data_offset > bytes.size() || f.size > bytes.size() - f.data_offset) {
      // Allowed only for the last file, which the walk then reports as cut off.
      last_end = UINT64_MAX;
    } else {
      last_end = f.data_offset + f.size;
    }
    auto done = grouper.Add(f);
    if (!done.ok()) return done.status();
    if (*done) check_sample(**done);
    return stoker::Status::Ok();
  });
  if (!st.ok()) {
    CheckError(st);
    return 0;
  }
  if (last_end == UINT64_MAX) TarFuzzFail("a file past the end was accepted");
  if (auto s = grouper.Finish()) check_sample(*s);
  return 0;
}
