// libFuzzer target: the CSV and JSON Lines manifest parsers. Every input
// goes through both.
//
// Checked beyond "no crash": errors name the manifest and are never
// kInternal; a parsed manifest has samples with non-empty URIs and
// non-negative labels; and writing those samples back out (CSV with RFC
// 4180 quoting, JSONL with escapes) and parsing that gives the same
// samples.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "stoker/dataset/dataset.h"
#include "stoker/storage/file/file_storage.h"

namespace {

using stoker::dataset::Dataset;

const std::string kName = "fuzz/manifest";
const std::string kBase = "/data";

[[noreturn]] void Fail(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "manifest_fuzz invariant broken: %s %s\n", what, detail.c_str());
  std::abort();
}

void CheckError(const stoker::Status& st) {
  if (st.code() == stoker::StatusCode::kInternal) Fail("internal error", st.ToString());
  if (st.message().find(kName) == std::string::npos) Fail("error does not name the manifest", st.ToString());
}

void CheckDataset(const Dataset& ds) {
  if (ds.samples.empty()) Fail("parsed a manifest with no samples");
  for (const auto& s : ds.samples) {
    if (s.uri.empty()) Fail("empty sample URI");
    if (s.label < 0) Fail("negative label");
  }
}

std::string ToCsv(const Dataset& ds) {
  std::string out = "path,label\n";
  for (const auto& s : ds.samples) {
    out += '"';
    for (char c : s.uri) {
      if (c == '"') out += '"';
      out += c;
    }
    out += "\"," + std::to_string(s.label) + "\n";
  }
  return out;
}

std::string ToJsonl(const Dataset& ds) {
  std::string out;
  for (const auto& s : ds.samples) {
    out += "{\"path\": \"";
    for (char c : s.uri) {
      const auto u = static_cast<unsigned char>(c);
      if (c == '"' || c == '\\') {
        out += '\\';
        out += c;
      } else if (u < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", u);
        out += buf;
      } else {
        out += c;
      }
    }
    out += "\", \"label\": " + std::to_string(s.label) + "}\n";
  }
  return out;
}

void CheckRoundTrip(const Dataset& ds, const stoker::storage::Storage& storage) {
  // The parsed URIs are absolute (joined to kBase), so they come back as is.
  for (const std::string& text : {ToCsv(ds), ToJsonl(ds)}) {
    const bool csv = text.rfind("path,label\n", 0) == 0;
    auto again = csv ? stoker::dataset::ParseCsvManifest(text, kName, kBase, storage)
                     : stoker::dataset::ParseJsonlManifest(text, kName, kBase, storage);
    if (!again.ok()) Fail(csv ? "CSV round trip fails" : "JSONL round trip fails", again.status().ToString());
    if (again->samples.size() != ds.samples.size()) Fail("round trip changes the sample count");
    for (size_t i = 0; i < ds.samples.size(); ++i) {
      if (again->samples[i].uri != ds.samples[i].uri) Fail("round trip changes a URI", ds.samples[i].uri);
      if (again->samples[i].label != ds.samples[i].label) Fail("round trip changes a label");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static stoker::storage::FileStorage storage;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (bool csv : {true, false}) {
    auto ds = csv ? stoker::dataset::ParseCsvManifest(text, kName, kBase, storage)
                  : stoker::dataset::ParseJsonlManifest(text, kName, kBase, storage);
    if (!ds.ok()) {
      CheckError(ds.status());
      continue;
    }
    CheckDataset(*ds);
    CheckRoundTrip(*ds, storage);
  }
  return 0;
}
