// libFuzzer target: the shard dataset index (ParseShardIndex,
// docs/shard-format.md) and the shard header check.
//
// Input: one control byte, then the index object. Control bit 0 set: the
// trailer's CRC is overwritten with the CRC of the bytes before it, so that
// mutations reach the checks behind the CRC (a mutated index almost never
// matches its CRC by chance); clear: the bytes are parsed as they are.
//
// Checked beyond "no crash": errors are kCorrupt or kUnsupported and name
// the object. A parsed index's entries and field ranges are all read (ASan
// catches a read outside the object) and keep the promises ParseShardIndex
// makes: each record lies inside its shard after the header, records of one
// shard do not overlap, entries follow the shard table, the image and the
// present fields tile the record exactly. Writing the parsed index again
// with ShardIndexBuilder and parsing that gives the same index, and the same
// bytes when the entries have no bytes from a later minor version.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "stoker/dataset/shard_format.h"

namespace {

using stoker::dataset::FieldRange;
using stoker::dataset::ShardEntry;
using stoker::dataset::ShardIndex;

const std::string kIndexName = "fuzz/index.stoker";

[[noreturn]] void ShardIndexFuzzFail(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "shard_index_fuzz invariant broken: %s %s\n", what, detail.c_str());
  std::abort();
}

void CheckShardIndexError(const stoker::Status& st, const std::string& name) {
  if (st.ok()) ShardIndexFuzzFail("error expected");
  if (st.code() != stoker::StatusCode::kCorrupt && st.code() != stoker::StatusCode::kUnsupported) {
    ShardIndexFuzzFail("error neither corrupt nor unsupported", st.ToString());
  }
  if (st.message().find(name) == std::string::npos) ShardIndexFuzzFail("error does not name the object", st.ToString());
}

bool SameEntry(const ShardEntry& a, const ShardEntry& b) {
  return a.offset == b.offset && a.source == b.source && a.label == b.label && a.shard == b.shard &&
         a.length == b.length && a.image_length == b.image_length && a.scan_offset == b.scan_offset &&
         a.width == b.width && a.height == b.height && a.image_format == b.image_format &&
         a.crc == b.crc;
}

// Reads every entry and field range of `index` and checks what parsing
// promises; returns each entry's field lengths (kFieldMissing where absent)
// in one flat vector, for the round trip.
std::vector<uint32_t> CheckShardIndex(const ShardIndex& index) {
  using stoker::dataset::kFieldMissing;
  using stoker::dataset::kShardHeaderSize;
  const auto& shards = index.shards();
  const size_t num_fields = index.fields().size();
  if (index.entry_size() < stoker::dataset::kShardEntryBaseSize + 4 * num_fields) {
    ShardIndexFuzzFail("entry size too small");
  }
  uint64_t table_samples = 0;
  for (const auto& s : shards) {
    if (s.size < kShardHeaderSize) ShardIndexFuzzFail("shard smaller than its header");
    table_samples += s.samples;
  }
  if (table_samples != index.num_samples()) ShardIndexFuzzFail("shard table and num_samples differ");
  for (const auto& f : index.fields()) {
    if (f.name.empty()) ShardIndexFuzzFail("field without a name");
    if (stoker::dataset::FieldKindCode(f.kind) == 0) ShardIndexFuzzFail("field of kind auto");
  }

  std::vector<uint32_t> lengths;
  size_t shard = 0;
  uint64_t in_shard = 0;
  uint64_t prev_end = 0;
  for (uint64_t i = 0; i < index.num_samples(); ++i) {
    while (in_shard == shards[shard].samples) {
      ++shard;
      in_shard = 0;
      prev_end = kShardHeaderSize;
    }
    if (in_shard == 0) prev_end = kShardHeaderSize;
    ++in_shard;
    const ShardEntry e = index.entry(i);
    if (e.shard != shard) ShardIndexFuzzFail("entry not in the shard the table says");
    if (e.offset < prev_end) ShardIndexFuzzFail("record overlaps the previous one or the header");
    if (e.offset > shards[shard].size || shards[shard].size - e.offset < e.length) {
      ShardIndexFuzzFail("record past the shard's end");
    }
    prev_end = e.offset + e.length;
    if (static_cast<uint32_t>(e.image_format) > 4) ShardIndexFuzzFail("unknown image format");
    if (e.scan_offset != 0 && e.scan_offset >= e.image_length) ShardIndexFuzzFail("scan offset past the image");
    uint64_t end = e.image_length;  // where the next present field must start
    for (size_t f = 0; f < num_fields; ++f) {
      const std::optional<FieldRange> r = index.field_range(i, f);
      lengths.push_back(r ? r->length : kFieldMissing);
      if (!r) continue;
      if (r->offset != end) ShardIndexFuzzFail("field does not start where the previous one ends");
      end += r->length;
      if (end > e.length) ShardIndexFuzzFail("field past the record's end");
    }
    if (end != e.length) ShardIndexFuzzFail("image and fields do not fill the record");
  }
  return lengths;
}

void CheckRoundTrip(const ShardIndex& index, const std::vector<uint32_t>& lengths) {
  const size_t num_fields = index.fields().size();
  stoker::dataset::ShardIndexBuilder builder(index.classes(), index.fields());
  for (const auto& s : index.shards()) builder.AddShard(s.size, s.samples);
  for (uint64_t i = 0; i < index.num_samples(); ++i) {
    builder.Add(index.entry(i), std::span<const uint32_t>(lengths).subspan(i * num_fields, num_fields));
  }
  const std::string bytes = builder.Finish();
  auto again = stoker::dataset::ParseShardIndex(bytes, kIndexName);
  if (!again.ok()) ShardIndexFuzzFail("the index written again does not parse", again.status().ToString());
  if (index.entry_size() == stoker::dataset::kShardEntryBaseSize + 4 * num_fields &&
      bytes != index.bytes()) {
    ShardIndexFuzzFail("the index written again has other bytes");
  }
  if (again->num_samples() != index.num_samples() || again->classes() != index.classes() ||
      again->fields().size() != num_fields || again->shards().size() != index.shards().size()) {
    ShardIndexFuzzFail("the index written again differs");
  }
  for (size_t f = 0; f < num_fields; ++f) {
    if (again->fields()[f].name != index.fields()[f].name || again->fields()[f].kind != index.fields()[f].kind) {
      ShardIndexFuzzFail("a field differs when written again");
    }
  }
  for (uint64_t i = 0; i < index.num_samples(); ++i) {
    if (!SameEntry(again->entry(i), index.entry(i))) ShardIndexFuzzFail("an entry differs when written again");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 1) && bytes.size() >= stoker::dataset::kShardIndexTrailerSize) {
    const size_t at = bytes.size() - stoker::dataset::kShardIndexTrailerSize;
    const uint32_t crc = stoker::dataset::Crc32c({reinterpret_cast<const uint8_t*>(bytes.data()), at});
    for (int i = 0; i < 4; ++i) bytes[at + i] = static_cast<char>((crc >> (8 * i)) & 0xFF);
  }

  // The same bytes as a shard's first bytes, of shard number data[0].
  const std::string shard_name = "fuzz/" + stoker::dataset::ShardName(data[0]);
  const stoker::Status header =
      stoker::dataset::CheckShardHeader({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()},
                                        data[0], shard_name);
  if (!header.ok()) CheckShardIndexError(header, shard_name);

  auto index = stoker::dataset::ParseShardIndex(bytes, kIndexName);
  if (!index.ok()) {
    CheckShardIndexError(index.status(), kIndexName);
    return 0;
  }
  if (index->bytes() != bytes) ShardIndexFuzzFail("the index does not keep its bytes");
  CheckRoundTrip(*index, CheckShardIndex(*index));
  return 0;
}
