#include "stoker/dataset/shard_format.h"


#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>

namespace stoker::dataset {
namespace {

constexpr char kIndexMagic[8] = {'S', 'T', 'K', 'I', 'N', 'D', 'E', 'X'};
constexpr char kShardMagic[8] = {'S', 'T', 'K', 'S', 'H', 'A', 'R', 'D'};

// Index header fields, by offset (docs/shard-format.md).
constexpr size_t kHdrVersion = 8;
constexpr size_t kHdrHeaderSize = 12;
constexpr size_t kHdrNumSamples = 16;
constexpr size_t kHdrNumShards = 24;
constexpr size_t kHdrNumFields = 28;
constexpr size_t kHdrEntrySize = 32;
constexpr size_t kHdrNumClasses = 36;
constexpr size_t kHdrMetaSize = 40;
constexpr size_t kHdrFlags = 48;
constexpr size_t kHdrReserved = 52;  // zero up to kShardIndexHeaderSize

// Entry fields, by offset.
constexpr size_t kEntOffset = 0;
constexpr size_t kEntSource = 8;
constexpr size_t kEntLabel = 16;
constexpr size_t kEntShard = 24;
constexpr size_t kEntLength = 28;
constexpr size_t kEntImageLength = 32;
constexpr size_t kEntScanOffset = 36;
constexpr size_t kEntWidth = 40;
constexpr size_t kEntHeight = 44;
constexpr size_t kEntImageFormat = 48;
constexpr size_t kEntCrc = 52;
constexpr size_t kEntFieldLengths = 56;

constexpr uint32_t kMaxImageFormat = static_cast<uint32_t>(ImageFormat::kOther);

uint32_t LoadU32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return uint32_t{u[0]} | uint32_t{u[1]} << 8 | uint32_t{u[2]} << 16 | uint32_t{u[3]} << 24;
}

uint64_t LoadU64(const char* p) { return uint64_t{LoadU32(p)} | uint64_t{LoadU32(p + 4)} << 32; }

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
}

void PutU64(std::string& out, uint64_t v) {
  PutU32(out, static_cast<uint32_t>(v));
  PutU32(out, static_cast<uint32_t>(v >> 32));
}

void PutString(std::string& out, const std::string& s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out += s;
}

uint32_t Crc32cOf(std::string_view bytes) {
  return Crc32c({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
}

// a + b, or false if it overflows.
bool AddTo(uint64_t& a, uint64_t b) { return !__builtin_add_overflow(a, b, &a); }

// Reads the metadata section's strings; never past its end.
class MetaReader {
 public:
  explicit MetaReader(std::string_view bytes) : bytes_(bytes) {}
  size_t left() const { return bytes_.size() - pos_; }
  size_t pos() const { return pos_; }
  bool U8(uint8_t& v) {
    if (left() < 1) return false;
    v = static_cast<uint8_t>(bytes_[pos_++]);
    return true;
  }
  bool String(std::string& s) {
    if (left() < 4) return false;
    const uint32_t n = LoadU32(bytes_.data() + pos_);
    if (n > left() - 4) return false;
    s.assign(bytes_.data() + pos_ + 4, n);
    pos_ += 4 + size_t{n};
    return true;
  }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
};

}  // namespace

std::string ShardName(uint32_t k) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "shard-%06u.stoker", k);
  return buf;
}

uint8_t FieldKindCode(FieldSpec::Kind kind) {
  switch (kind) {
    case FieldSpec::Kind::kAuto: return 0;
    case FieldSpec::Kind::kInt: return 1;
    case FieldSpec::Kind::kFloat: return 2;
    case FieldSpec::Kind::kText: return 3;
    case FieldSpec::Kind::kJson: return 4;
    case FieldSpec::Kind::kBytes: return 5;
    case FieldSpec::Kind::kNpy: return 6;
    case FieldSpec::Kind::kMask: return 7;
  }
  return 0;
}

std::optional<FieldSpec::Kind> FieldKindFromCode(uint8_t code) {
  switch (code) {
    case 1: return FieldSpec::Kind::kInt;
    case 2: return FieldSpec::Kind::kFloat;
    case 3: return FieldSpec::Kind::kText;
    case 4: return FieldSpec::Kind::kJson;
    case 5: return FieldSpec::Kind::kBytes;
    case 6: return FieldSpec::Kind::kNpy;
    case 7: return FieldSpec::Kind::kMask;
    default: return std::nullopt;
  }
}

// ---- ShardIndex ----

const char* ShardIndex::entry_data(uint64_t i) const {
  assert(i < num_samples_);
  return bytes_.data() + entries_offset_ + static_cast<size_t>(i) * entry_size_;
}

ShardEntry ShardIndex::entry(uint64_t i) const {
  const char* p = entry_data(i);
  ShardEntry e;
  e.offset = LoadU64(p + kEntOffset);
  e.source = LoadU64(p + kEntSource);
  e.label = static_cast<int64_t>(LoadU64(p + kEntLabel));
  e.shard = LoadU32(p + kEntShard);
  e.length = LoadU32(p + kEntLength);
  e.image_length = LoadU32(p + kEntImageLength);
  e.scan_offset = LoadU32(p + kEntScanOffset);
  e.width = LoadU32(p + kEntWidth);
  e.height = LoadU32(p + kEntHeight);
  e.image_format = static_cast<ImageFormat>(LoadU32(p + kEntImageFormat));
  e.crc = LoadU32(p + kEntCrc);
  return e;
}

std::optional<FieldRange> ShardIndex::field_range(uint64_t i, size_t f) const {
  assert(f < fields_.size());
  const char* p = entry_data(i);
  const uint32_t length = LoadU32(p + kEntFieldLengths + 4 * f);
  if (length == kFieldMissing) return std::nullopt;
  // Parsing checked that the image and the present fields add up to the
  // record's length (a uint32_t), so no sum here overflows.
  uint32_t offset = LoadU32(p + kEntImageLength);
  for (size_t g = 0; g < f; ++g) {
    const uint32_t n = LoadU32(p + kEntFieldLengths + 4 * g);
    if (n != kFieldMissing) offset += n;
  }
  return FieldRange{offset, length};
}

Result<ShardIndex> ParseShardIndex(std::string bytes, const std::string& name) {
  auto corrupt = [&name](const std::string& why) { return Corrupt(name + ": " + why); };
  const size_t size = bytes.size();
  const char* b = bytes.data();
  if (size < kShardIndexHeaderSize + kShardIndexTrailerSize) {
    return corrupt("short object: " + std::to_string(size) + " bytes, a shard index has at least " +
                   std::to_string(kShardIndexHeaderSize + kShardIndexTrailerSize));
  }
  if (std::memcmp(b, kIndexMagic, 8) != 0) return corrupt("bad magic: not a stoker shard index");
  const uint32_t version = LoadU32(b + kHdrVersion);
  if (version != kShardFormatVersion) {
    return Unsupported(name + ": unsupported shard index version " + std::to_string(version) +
                       " (this stoker reads version " + std::to_string(kShardFormatVersion) + ")");
  }
  const char* trailer = b + size - kShardIndexTrailerSize;
  if (std::memcmp(trailer + 8, kIndexMagic, 8) != 0) {
    return corrupt("bad trailer magic: the object is truncated or not a stoker shard index");
  }
  const uint32_t stored_crc = LoadU32(trailer);
  const uint32_t crc = Crc32cOf({b, size - kShardIndexTrailerSize});
  if (stored_crc != crc) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "CRC mismatch: the trailer says %08x, the bytes give %08x",
                  stored_crc, crc);
    return corrupt(buf);
  }
  if (LoadU32(trailer + 4) != 0) return corrupt("reserved trailer bytes are not zero");

  // The header.
  const uint32_t header_size = LoadU32(b + kHdrHeaderSize);
  const uint64_t num_samples = LoadU64(b + kHdrNumSamples);
  const uint32_t num_shards = LoadU32(b + kHdrNumShards);
  const uint32_t num_fields = LoadU32(b + kHdrNumFields);
  const uint32_t entry_size = LoadU32(b + kHdrEntrySize);
  const uint32_t num_classes = LoadU32(b + kHdrNumClasses);
  const uint64_t meta_size = LoadU64(b + kHdrMetaSize);
  const uint32_t flags = LoadU32(b + kHdrFlags);
  if (header_size != kShardIndexHeaderSize) {
    return corrupt("header size " + std::to_string(header_size) + ", version 1 has " +
                   std::to_string(kShardIndexHeaderSize));
  }
  if (flags != 0) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "unknown flags %08x (this stoker knows none)", flags);
    return Unsupported(name + ": " + buf);
  }
  for (size_t i = kHdrReserved; i < kShardIndexHeaderSize; ++i) {
    if (b[i] != 0) return corrupt("reserved header bytes are not zero");
  }
  const uint64_t min_entry_size = kShardEntryBaseSize + 4 * uint64_t{num_fields};
  if (entry_size < min_entry_size) {
    return corrupt("entry size " + std::to_string(entry_size) + " is less than the " +
                   std::to_string(min_entry_size) + " that " + std::to_string(num_fields) +
                   " fields need");
  }
  // header + shard table + metadata + entries + trailer == size, each step
  // guarded against overflow.
  uint64_t entries_bytes = 0;
  const bool entries_overflow = __builtin_mul_overflow(num_samples, uint64_t{entry_size}, &entries_bytes);
  uint64_t total = kShardIndexHeaderSize + kShardTableEntrySize * uint64_t{num_shards};
  const uint64_t meta_offset = total;
  if (entries_overflow || !AddTo(total, meta_size) || !AddTo(total, entries_bytes) ||
      !AddTo(total, kShardIndexTrailerSize) || total != size) {
    return corrupt("sizes do not add up: " + std::to_string(num_shards) + " shards, " +
                   std::to_string(meta_size) + " bytes of metadata and " +
                   std::to_string(num_samples) + " entries of " + std::to_string(entry_size) +
                   " bytes do not make the object's " + std::to_string(size) + " bytes");
  }

  ShardIndex index;
  index.num_samples_ = num_samples;
  index.entry_size_ = entry_size;
  index.entries_offset_ = static_cast<size_t>(meta_offset + meta_size);

  // The shard table.
  index.shards_.reserve(num_shards);
  uint64_t table_samples = 0;
  for (uint32_t k = 0; k < num_shards; ++k) {
    const char* p = b + kShardIndexHeaderSize + kShardTableEntrySize * k;
    ShardInfo info{LoadU64(p), LoadU32(p + 8)};
    if (LoadU32(p + 12) != 0) return corrupt("shard " + std::to_string(k) + ": reserved bytes are not zero");
    if (info.size < kShardHeaderSize) {
      return corrupt("shard " + std::to_string(k) + ": size " + std::to_string(info.size) +
                     " is less than its " + std::to_string(kShardHeaderSize) + "-byte header");
    }
    table_samples += info.samples;  // at most 2^32 shards of < 2^32 samples: no overflow
    index.shards_.push_back(info);
  }
  if (table_samples != num_samples) {
    return corrupt("the shard table holds " + std::to_string(table_samples) +
                   " samples, the header says " + std::to_string(num_samples));
  }

  // The metadata: class names, then fields. A string takes at least 4
  // bytes and a field 5, which bounds the counts before anything is
  // reserved for them.
  MetaReader meta({b + meta_offset, static_cast<size_t>(meta_size)});
  if (uint64_t{num_classes} * 4 > meta_size) {
    return corrupt(std::to_string(num_classes) + " class names do not fit in " +
                   std::to_string(meta_size) + " bytes of metadata");
  }
  index.classes_.resize(num_classes);
  for (uint32_t c = 0; c < num_classes; ++c) {
    if (!meta.String(index.classes_[c])) {
      return corrupt("class name " + std::to_string(c) + " runs past the metadata section");
    }
  }
  if (uint64_t{num_fields} * 5 > meta.left()) {
    return corrupt(std::to_string(num_fields) + " fields do not fit in the " +
                   std::to_string(meta.left()) + " bytes of metadata after the class names");
  }
  index.fields_.resize(num_fields);
  for (uint32_t f = 0; f < num_fields; ++f) {
    uint8_t code = 0;
    ShardField& field = index.fields_[f];
    if (!meta.U8(code)) return corrupt("field " + std::to_string(f) + " runs past the metadata section");
    const auto kind = FieldKindFromCode(code);
    if (!kind) return corrupt("field " + std::to_string(f) + ": unknown kind " + std::to_string(code));
    field.kind = *kind;
    if (!meta.String(field.name)) {
      return corrupt("field " + std::to_string(f) + " runs past the metadata section");
    }
    if (field.name.empty()) return corrupt("field " + std::to_string(f) + " has no name");
  }
  if (meta.left() != 0) {
    return corrupt(std::to_string(meta.left()) + " bytes of metadata after the last field");
  }
  {
    std::vector<std::string_view> names(index.fields_.size());
    for (size_t f = 0; f < names.size(); ++f) names[f] = index.fields_[f].name;
    std::sort(names.begin(), names.end());
    const auto dup = std::adjacent_find(names.begin(), names.end());
    if (dup != names.end()) return corrupt("two fields are named \"" + std::string(*dup) + "\"");
  }

  // The entries, against the shard table. Entries of shard k are the
  // table's samples of shards before k onwards; within a shard, records
  // start after the header and each starts where the previous one ended or
  // later.
  index.bytes_ = std::move(bytes);
  uint32_t shard = 0;
  uint64_t shard_left = num_shards > 0 ? index.shards_[0].samples : 0;
  uint64_t record_end = kShardHeaderSize;  // of the shard's previous record
  for (uint64_t i = 0; i < num_samples; ++i) {
    while (shard_left == 0) {  // the table holds num_samples samples: this ends
      ++shard;
      shard_left = index.shards_[shard].samples;
      record_end = kShardHeaderSize;
    }
    --shard_left;
    auto bad = [&](const std::string& why) { return corrupt("entry " + std::to_string(i) + ": " + why); };
    const char* p = index.entry_data(i);
    const ShardEntry e = index.entry(i);
    if (e.shard >= num_shards) {
      return bad("shard " + std::to_string(e.shard) + " is not in the shard table (" +
                 std::to_string(num_shards) + " shards)");
    }
    if (e.shard != shard) {
      return bad("shard " + std::to_string(e.shard) + ", but the shard table puts entry " +
                 std::to_string(i) + " in shard " + std::to_string(shard));
    }
    const uint64_t shard_size = index.shards_[shard].size;
    if (e.offset < kShardHeaderSize) {
      return bad("offset " + std::to_string(e.offset) + " is inside the shard's " +
                 std::to_string(kShardHeaderSize) + "-byte header");
    }
    if (e.offset > shard_size || e.length > shard_size - e.offset) {
      return bad("record [" + std::to_string(e.offset) + ", +" + std::to_string(e.length) +
                 ") runs past the end of shard " + std::to_string(shard) + " (" +
                 std::to_string(shard_size) + " bytes)");
    }
    if (e.offset < record_end) {
      return bad("record at offset " + std::to_string(e.offset) +
                 " overlaps or precedes the previous record of its shard, which ends at " +
                 std::to_string(record_end));
    }
    record_end = e.offset + e.length;
    const auto format = static_cast<uint32_t>(e.image_format);
    if (format > kMaxImageFormat) return bad("unknown image format " + std::to_string(format));
    if (e.image_format == ImageFormat::kNone && e.image_length != 0) {
      return bad("no image (format 0) but an image length of " + std::to_string(e.image_length));
    }
    if (e.scan_offset != 0 && e.image_format != ImageFormat::kJpegRestart) {
      return bad("scan offset " + std::to_string(e.scan_offset) + " for an image of format " +
                 std::to_string(format) + " (only format 1 has one)");
    }
    if (e.scan_offset != 0 && e.scan_offset >= e.image_length) {
      return bad("scan offset " + std::to_string(e.scan_offset) + " is not inside the " +
                 std::to_string(e.image_length) + "-byte image");
    }
    uint64_t sum = e.image_length;
    for (uint32_t f = 0; f < num_fields; ++f) {
      const uint32_t n = LoadU32(p + kEntFieldLengths + 4 * size_t{f});
      if (n != kFieldMissing) sum += n;  // < 2^32 fields of < 2^32 bytes: no overflow
    }
    if (sum != e.length) {
      return bad("the image (" + std::to_string(e.image_length) + " bytes) and the fields make " +
                 std::to_string(sum) + " bytes, the record has " + std::to_string(e.length));
    }
  }
  return index;
}

// ---- ShardIndexBuilder ----

ShardIndexBuilder::ShardIndexBuilder(std::vector<std::string> classes, std::vector<ShardField> fields)
    : classes_(std::move(classes)), fields_(std::move(fields)) {}

void ShardIndexBuilder::AddShard(uint64_t size, uint32_t samples) {
  PutU64(shard_table_, size);
  PutU32(shard_table_, samples);
  PutU32(shard_table_, 0);
  ++num_shards_;
}

void ShardIndexBuilder::Add(const ShardEntry& e, std::span<const uint32_t> field_lengths) {
  assert(field_lengths.size() == fields_.size());
  PutU64(entries_, e.offset);
  PutU64(entries_, e.source);
  PutU64(entries_, static_cast<uint64_t>(e.label));
  PutU32(entries_, e.shard);
  PutU32(entries_, e.length);
  PutU32(entries_, e.image_length);
  PutU32(entries_, e.scan_offset);
  PutU32(entries_, e.width);
  PutU32(entries_, e.height);
  PutU32(entries_, static_cast<uint32_t>(e.image_format));
  PutU32(entries_, e.crc);
  for (size_t f = 0; f < fields_.size(); ++f) {
    PutU32(entries_, f < field_lengths.size() ? field_lengths[f] : kFieldMissing);
  }
  ++num_samples_;
}

std::string ShardIndexBuilder::Finish() {
  std::string meta;
  for (const std::string& c : classes_) PutString(meta, c);
  for (const ShardField& f : fields_) {
    meta += static_cast<char>(FieldKindCode(f.kind));
    PutString(meta, f.name);
  }
  std::string out;
  out.reserve(kShardIndexHeaderSize + shard_table_.size() + meta.size() + entries_.size() +
              kShardIndexTrailerSize);
  out.append(kIndexMagic, 8);
  PutU32(out, kShardFormatVersion);
  PutU32(out, kShardIndexHeaderSize);
  PutU64(out, num_samples_);
  PutU32(out, num_shards_);
  PutU32(out, static_cast<uint32_t>(fields_.size()));
  PutU32(out, static_cast<uint32_t>(kShardEntryBaseSize + 4 * fields_.size()));
  PutU32(out, static_cast<uint32_t>(classes_.size()));
  PutU64(out, meta.size());
  PutU32(out, 0);  // flags
  out.resize(kShardIndexHeaderSize, '\0');
  out += shard_table_;
  out += meta;
  out += entries_;
  std::string().swap(entries_);
  PutU32(out, Crc32cOf(out));
  PutU32(out, 0);
  out.append(kIndexMagic, 8);
  return out;
}

// ---- Shard files ----

std::string EncodeShardHeader(uint32_t shard) {
  std::string out(kShardMagic, 8);
  PutU32(out, kShardFormatVersion);
  PutU32(out, shard);
  return out;
}

Status CheckShardHeader(std::span<const uint8_t> first16, uint32_t shard, const std::string& name) {
  if (first16.size() < kShardHeaderSize) {
    return Corrupt(name + ": short shard: " + std::to_string(first16.size()) + " bytes, its header has " +
                   std::to_string(kShardHeaderSize));
  }
  const char* p = reinterpret_cast<const char*>(first16.data());
  if (std::memcmp(p, kShardMagic, 8) != 0) return Corrupt(name + ": bad magic: not a stoker shard");
  const uint32_t version = LoadU32(p + 8);
  if (version != kShardFormatVersion) {
    return Unsupported(name + ": unsupported shard version " + std::to_string(version) +
                       " (this stoker reads version " + std::to_string(kShardFormatVersion) + ")");
  }
  const uint32_t number = LoadU32(p + 12);
  if (number != shard) {
    return Corrupt(name + ": holds shard " + std::to_string(number) + ", expected shard " +
                   std::to_string(shard));
  }
  return Status::Ok();
}

}  // namespace stoker::dataset
