// The on-disk format of shard datasets (docs/shard-format.md): the index
// object `index.stoker` and the header of each shard file. Pure codec: bytes
// in, bytes out, no Storage and no I/O, so the converter that writes a
// dataset and the reader that opens one share exactly this code.
//
// A ShardIndex keeps the index object's bytes as they were read and decodes
// an entry only when asked, so an open dataset costs entry_size bytes per
// sample (56 + 4 per extra field) and nothing else per sample.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "stoker/base/crc32c.h"
#include "stoker/options.h"
#include "stoker/status.h"

namespace stoker::dataset {

// The index object's name in the dataset's folder or S3 prefix. It is
// written last, so a folder without it is not a shard dataset.
constexpr const char* kShardIndexName = "index.stoker";

constexpr uint32_t kShardFormatVersion = 1;
constexpr size_t kShardHeaderSize = 16;       // a shard file's header
constexpr size_t kShardIndexHeaderSize = 64;  // the index's header
constexpr size_t kShardTableEntrySize = 16;   // one shard in the index's shard table
constexpr size_t kShardEntryBaseSize = 56;    // an entry without its field lengths
constexpr size_t kShardIndexTrailerSize = 16;
// A field length meaning "this sample lacks the field" (it takes no bytes).
constexpr uint32_t kFieldMissing = 0xFFFFFFFF;

// Shard k's object name: "shard-000042.stoker" (six digits at least; a k of
// 1,000,000 or more just has more).
std::string ShardName(uint32_t k);

// What a sample's image bytes are, as the converter found them.
enum class ImageFormat : uint32_t {
  kNone = 0,         // no image: image_length is 0
  kJpegRestart = 1,  // JPEG with a restart marker after every MCU and a row table
  kJpeg = 2,         // any other JPEG
  kPng = 3,
  kOther = 4,        // other bytes, decoded by content
};

// One sample as the index describes it, decoded from its entry.
struct ShardEntry {
  uint64_t offset = 0;  // the record's first byte in its shard file (>= kShardHeaderSize)
  uint64_t source = 0;  // the sample's position in the source dataset's listing
  int64_t label = 0;
  uint32_t shard = 0;
  uint32_t length = 0;        // the record's bytes: image, then the present fields
  uint32_t image_length = 0;  // the image's bytes, first in the record
  // Where the image starts in the record: always 0 in this format; a
  // WebDataset tar's sample (dataset.h, TarIndex) may keep it elsewhere.
  uint32_t image_offset = 0;
  // kJpegRestart: the offset in the image of its first entropy-coded byte
  // (after SOS); 0 for every other format.
  uint32_t scan_offset = 0;
  uint32_t width = 0;   // of the image as stored; 0 if unknown
  uint32_t height = 0;
  ImageFormat image_format = ImageFormat::kNone;
  uint32_t crc = 0;  // Crc32c of the record's bytes
};

// One row of the index's shard table.
struct ShardInfo {
  uint64_t size = 0;     // the whole shard file, its header included
  uint32_t samples = 0;  // entries (records) in it
};

// An extra field of every sample, besides its image and label.
struct ShardField {
  std::string name;
  FieldSpec::Kind kind = FieldSpec::Kind::kBytes;  // never kAuto
};

// Where one field's bytes lie within a sample's record.
struct FieldRange {
  uint32_t offset = 0;  // from the record's first byte
  uint32_t length = 0;
};

// The stable numbers the format stores for field kinds (1 int, 2 float,
// 3 text, 4 json, 5 bytes, 6 npy, 7 mask), independent of the enum's C++
// values. kAuto has none: FieldKindCode returns 0 for it, and
// FieldKindFromCode returns nullopt for 0 and every unknown number.
uint8_t FieldKindCode(FieldSpec::Kind kind);
std::optional<FieldSpec::Kind> FieldKindFromCode(uint8_t code);

// A parsed, fully checked index object (ParseShardIndex). Every entry's
// record lies inside its shard, after the shard's header, without
// overlapping its neighbours, and its image and fields add up to its length,
// so a reader may use the numbers without checking them again. Immutable;
// safe to read from several threads.
class ShardIndex {
 public:
  ShardIndex() = default;

  uint64_t num_samples() const { return num_samples_; }

  // Entry `i` (< num_samples()), in storage order: shard 0's records by
  // offset, then shard 1's, ... Decoded from the bytes on each call; no
  // allocation.
  ShardEntry entry(uint64_t i) const;

  // Where field `f` (< fields().size()) of entry `i` (< num_samples()) lies
  // within the entry's record, or nullopt if the sample lacks it. A present
  // field may have length 0.
  std::optional<FieldRange> field_range(uint64_t i, size_t f) const;

  const std::vector<ShardInfo>& shards() const { return shards_; }
  const std::vector<ShardField>& fields() const { return fields_; }
  // Class names by label; empty when the source had none (a manifest).
  const std::vector<std::string>& classes() const { return classes_; }
  // The index object exactly as parsed.
  const std::string& bytes() const { return bytes_; }
  // Bytes per entry: kShardEntryBaseSize + 4 * fields().size(), or more
  // for an index written by a later minor version (the rest is ignored).
  uint32_t entry_size() const { return entry_size_; }

 private:
  friend Result<ShardIndex> ParseShardIndex(std::string bytes, const std::string& name);

  const char* entry_data(uint64_t i) const;

  std::string bytes_;
  uint64_t num_samples_ = 0;
  size_t entries_offset_ = 0;  // of entry 0 in bytes_
  uint32_t entry_size_ = kShardEntryBaseSize;
  std::vector<ShardInfo> shards_;
  std::vector<ShardField> fields_;
  std::vector<std::string> classes_;
};

// Parses and checks an index object read from `name` (the URI, for
// messages). Checks everything docs/shard-format.md says a reader checks:
// the magic numbers, the version (kUnsupported for another one, and for
// flags this version does not know), the CRC, that the sections' sizes add
// up to the object's size exactly, the metadata strings and field kinds, and
// every entry against the shard table. Errors are kCorrupt otherwise, with
// `name`, the entry's number where one is at fault, and the reason.
// O(size of the object).
Result<ShardIndex> ParseShardIndex(std::string bytes, const std::string& name);

// Writes an index object: classes and fields first, then each shard's row
// (AddShard, in shard order) and each sample's entry (Add, in storage
// order), then Finish. Holds one buffer of entry bytes (entry_size per
// sample) and nothing else per sample. It writes what it is given without
// checking it: ParseShardIndex(Finish()) is the check.
class ShardIndexBuilder {
 public:
  ShardIndexBuilder(std::vector<std::string> classes, std::vector<ShardField> fields);

  // Appends shard number shards-so-far to the shard table.
  void AddShard(uint64_t size, uint32_t samples);

  // Appends one entry. `field_lengths` has one length per field, in the
  // fields' order, kFieldMissing for a field the sample lacks.
  void Add(const ShardEntry& entry, std::span<const uint32_t> field_lengths);

  // The whole index object. The builder is spent afterwards.
  std::string Finish();

 private:
  std::vector<std::string> classes_;
  std::vector<ShardField> fields_;
  std::string shard_table_;
  std::string entries_;
  uint64_t num_samples_ = 0;
  uint32_t num_shards_ = 0;
};

// The 16 bytes that start shard file `shard`.
std::string EncodeShardHeader(uint32_t shard);

// Checks that `first16` (the first bytes of the shard file `name`, at least
// 16 of them) are the header of shard number `shard` of this version:
// kCorrupt for too few bytes, a wrong magic number or another shard's
// number, kUnsupported for another version.
Status CheckShardHeader(std::span<const uint8_t> first16, uint32_t shard, const std::string& name);

// Crc32c: stoker/base/crc32c.h.
using ::stoker::Crc32c;

}  // namespace stoker::dataset
