#include "stoker/dataset/shard_format.h"

#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

// The fuzz target's body, built into the tests under another name so that
// the tests run it (ShardFormat.FuzzTargetBody...) also where no clang
// builds the libFuzzer binary.
#define LLVMFuzzerTestOneInput ShardIndexFuzzTestOneInput
#include "stoker/dataset/shard_index_fuzz.cc"
#undef LLVMFuzzerTestOneInput

namespace stoker::dataset {
namespace {

const std::string kName = "s3://bucket/ds/index.stoker";

// "53 54 4b" -> the bytes; spaces and newlines are ignored.
std::string Hex(std::string_view hex) {
  std::string out;
  int hi = -1;
  for (char c : hex) {
    if (c == ' ' || c == '\n') continue;
    const int v = c <= '9' ? c - '0' : c - 'a' + 10;
    if (hi < 0) {
      hi = v;
    } else {
      out += static_cast<char>(hi * 16 + v);
      hi = -1;
    }
  }
  EXPECT_EQ(hi, -1) << "odd number of hex digits";
  return out;
}

std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

void Put32(std::string& s, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) s[at + i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}

void Put64(std::string& s, size_t at, uint64_t v) {
  Put32(s, at, static_cast<uint32_t>(v));
  Put32(s, at + 4, static_cast<uint32_t>(v >> 32));
}

// Writes the right CRC into the trailer of `s`, so that a deliberately
// inconsistent index reaches the check behind the CRC.
std::string Reseal(std::string s) {
  const size_t at = s.size() - kShardIndexTrailerSize;
  Put32(s, at, Crc32c(AsBytes(std::string_view(s).substr(0, at))));
  return s;
}

ShardEntry Entry(uint64_t offset, uint32_t length, uint32_t image_length, uint32_t shard = 0) {
  ShardEntry e;
  e.offset = offset;
  e.length = length;
  e.image_length = image_length;
  e.shard = shard;
  e.image_format = ImageFormat::kOther;
  return e;
}

// The example of docs/shard-format.md, written with the builder.
std::string ExampleIndex() {
  ShardIndexBuilder b({"cat"}, {{"txt", FieldSpec::Kind::kText}});
  b.AddShard(27, 2);
  ShardEntry e0 = Entry(16, 7, 5);
  e0.source = 1;
  e0.crc = Crc32c(AsBytes("hellohi"));
  const uint32_t txt[] = {2};
  b.Add(e0, txt);
  ShardEntry e1 = Entry(23, 4, 4);
  e1.source = 0;
  e1.label = -1;
  e1.width = 2;
  e1.height = 3;
  e1.image_format = ImageFormat::kPng;
  e1.crc = Crc32c(AsBytes("\x89PNG"));
  const uint32_t missing[] = {kFieldMissing};
  b.Add(e1, missing);
  return b.Finish();
}

// Offsets in the example (docs/shard-format.md).
constexpr size_t kExampleMeta = 80;
constexpr size_t kExampleEntry0 = 95;
constexpr size_t kExampleEntry1 = 155;

// An index of one field ("txt"), one shard of `shard_size` bytes, and the
// given entries, each with field length `txt` (kFieldMissing: absent).
std::string OneShard(const std::vector<std::pair<ShardEntry, uint32_t>>& entries,
                     uint64_t shard_size = 100) {
  ShardIndexBuilder b({}, {{"txt", FieldSpec::Kind::kText}});
  b.AddShard(shard_size, static_cast<uint32_t>(entries.size()));
  for (const auto& [e, txt] : entries) {
    const uint32_t lengths[] = {txt};
    b.Add(e, lengths);
  }
  return b.Finish();
}

// Parses `bytes`, expects it refused with `code` and a message naming the
// object and holding `reason`.
void ExpectRefused(const std::string& bytes, const std::string& reason,
                   StatusCode code = StatusCode::kCorrupt) {
  auto index = ParseShardIndex(bytes, kName);
  ASSERT_FALSE(index.ok()) << "accepted; expected: " << reason;
  EXPECT_EQ(index.status().code(), code) << index.status().ToString();
  EXPECT_EQ(index.status().message().rfind(kName + ": ", 0), 0u) << index.status().ToString();
  EXPECT_NE(index.status().message().find(reason), std::string::npos)
      << index.status().ToString() << "\nexpected: " << reason;
}

void ExpectSameEntry(const ShardEntry& got, const ShardEntry& want, uint64_t i) {
  SCOPED_TRACE("entry " + std::to_string(i));
  EXPECT_EQ(got.offset, want.offset);
  EXPECT_EQ(got.source, want.source);
  EXPECT_EQ(got.label, want.label);
  EXPECT_EQ(got.shard, want.shard);
  EXPECT_EQ(got.length, want.length);
  EXPECT_EQ(got.image_length, want.image_length);
  EXPECT_EQ(got.scan_offset, want.scan_offset);
  EXPECT_EQ(got.width, want.width);
  EXPECT_EQ(got.height, want.height);
  EXPECT_EQ(got.image_format, want.image_format);
  EXPECT_EQ(got.crc, want.crc);
}

TEST(ShardFormat, ShardNamesHaveSixDigitsAtLeast) {
  EXPECT_EQ(ShardName(0), "shard-000000.stoker");
  EXPECT_EQ(ShardName(42), "shard-000042.stoker");
  EXPECT_EQ(ShardName(999999), "shard-999999.stoker");
  EXPECT_EQ(ShardName(1000000), "shard-1000000.stoker");
  EXPECT_EQ(ShardName(4294967295u), "shard-4294967295.stoker");
  EXPECT_STREQ(kShardIndexName, "index.stoker");
}

TEST(ShardFormat, Crc32cIsCastagnolis) {
  EXPECT_EQ(Crc32c(AsBytes("")), 0u);
  EXPECT_EQ(Crc32c(AsBytes("123456789")), 0xe3069283u);  // the CRC-32C check value
  EXPECT_EQ(Crc32c(AsBytes("hellohi")), 0xf288fe21u);    // a bitwise reference
  // Every length around the 8-byte steps, against the bitwise definition.
  std::string data;
  for (int n = 0; n < 40; ++n) {
    uint32_t c = 0xFFFFFFFFu;
    for (unsigned char b : data) {
      c ^= b;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1) ? 0x82F63B78u : 0u);
    }
    EXPECT_EQ(Crc32c(AsBytes(data)), ~c) << "length " << n;
    data.push_back(static_cast<char>(n * 37 + 11));
  }
}

TEST(ShardFormat, FieldKindsHaveStableNumbers) {
  const std::pair<FieldSpec::Kind, uint8_t> kinds[] = {
      {FieldSpec::Kind::kInt, 1},   {FieldSpec::Kind::kFloat, 2}, {FieldSpec::Kind::kText, 3},
      {FieldSpec::Kind::kJson, 4},  {FieldSpec::Kind::kBytes, 5}, {FieldSpec::Kind::kNpy, 6},
      {FieldSpec::Kind::kMask, 7}};
  for (const auto& [kind, code] : kinds) {
    EXPECT_EQ(FieldKindCode(kind), code);
    EXPECT_EQ(FieldKindFromCode(code), kind);
  }
  EXPECT_EQ(FieldKindCode(FieldSpec::Kind::kAuto), 0);
  EXPECT_EQ(FieldKindFromCode(0), std::nullopt);
  for (int code = 8; code < 256; ++code) EXPECT_EQ(FieldKindFromCode(static_cast<uint8_t>(code)), std::nullopt);
}

TEST(ShardFormat, ShardHeaderBytesAndChecks) {
  const std::string header = EncodeShardHeader(7);
  EXPECT_EQ(header, Hex("53544b5348415244 01000000 07000000"));
  EXPECT_TRUE(CheckShardHeader(AsBytes(header), 7, "shard-000007.stoker").ok());
  // More bytes than the header (the start of a shard file) are fine.
  EXPECT_TRUE(CheckShardHeader(AsBytes(header + "record"), 7, "shard-000007.stoker").ok());

  auto expect = [](std::string_view bytes, StatusCode code, const std::string& reason) {
    const Status st = CheckShardHeader(AsBytes(bytes), 7, "x/shard-000007.stoker");
    EXPECT_EQ(st.code(), code) << st.ToString();
    EXPECT_EQ(st.message().rfind("x/shard-000007.stoker: ", 0), 0u) << st.ToString();
    EXPECT_NE(st.message().find(reason), std::string::npos) << st.ToString();
  };
  expect(std::string_view(header).substr(0, 15), StatusCode::kCorrupt, "short shard: 15 bytes");
  expect("", StatusCode::kCorrupt, "short shard: 0 bytes");
  expect(EncodeShardHeader(6), StatusCode::kCorrupt, "holds shard 6, expected shard 7");
  std::string other = header;
  other[3] = 'X';
  expect(other, StatusCode::kCorrupt, "bad magic");
  other = header;
  Put32(other, 8, 2);
  expect(other, StatusCode::kUnsupported, "unsupported shard version 2");
}

// The example of docs/shard-format.md, byte for byte, written by hand from
// the document (the CRC-32Cs from a bitwise reference).
TEST(ShardFormat, ExactBytesOfASmallIndex) {
  const std::string expected = Hex(
      // header
      "53544b494e444558 01000000 40000000 0200000000000000 01000000 01000000 3c000000"
      "01000000 0f00000000000000 00000000 000000000000000000000000"
      // shard table
      "1b00000000000000 02000000 00000000"
      // metadata: "cat", then kind 3 "txt"
      "03000000 636174 03 03000000 747874"
      // entry 0
      "1000000000000000 0100000000000000 0000000000000000 00000000 07000000 05000000"
      "00000000 00000000 00000000 04000000 21fe88f2 02000000"
      // entry 1
      "1700000000000000 0000000000000000 ffffffffffffffff 00000000 04000000 04000000"
      "00000000 02000000 03000000 03000000 2c9b7c18 ffffffff"
      // trailer
      "a60fd0d1 00000000 53544b494e444558");
  ASSERT_EQ(expected.size(), 231u);
  const std::string bytes = ExampleIndex();
  ASSERT_EQ(bytes.size(), expected.size());
  for (size_t i = 0; i < bytes.size(); ++i) {
    EXPECT_EQ(static_cast<uint8_t>(bytes[i]), static_cast<uint8_t>(expected[i])) << "byte " << i;
  }

  auto index = ParseShardIndex(expected, kName);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(index->bytes(), expected);
  EXPECT_EQ(index->num_samples(), 2u);
  EXPECT_EQ(index->entry_size(), 60u);
  EXPECT_EQ(index->classes(), std::vector<std::string>{"cat"});
  ASSERT_EQ(index->fields().size(), 1u);
  EXPECT_EQ(index->fields()[0].name, "txt");
  EXPECT_EQ(index->fields()[0].kind, FieldSpec::Kind::kText);
  ASSERT_EQ(index->shards().size(), 1u);
  EXPECT_EQ(index->shards()[0].size, 27u);
  EXPECT_EQ(index->shards()[0].samples, 2u);
  const ShardEntry e0 = index->entry(0);
  EXPECT_EQ(e0.offset, 16u);
  EXPECT_EQ(e0.source, 1u);
  EXPECT_EQ(e0.length, 7u);
  EXPECT_EQ(e0.image_length, 5u);
  EXPECT_EQ(e0.image_format, ImageFormat::kOther);
  EXPECT_EQ(e0.crc, 0xf288fe21u);
  const ShardEntry e1 = index->entry(1);
  EXPECT_EQ(e1.offset, 23u);
  EXPECT_EQ(e1.label, -1);
  EXPECT_EQ(e1.width, 2u);
  EXPECT_EQ(e1.height, 3u);
  EXPECT_EQ(e1.image_format, ImageFormat::kPng);
  const auto txt = index->field_range(0, 0);
  ASSERT_TRUE(txt.has_value());
  EXPECT_EQ(txt->offset, 5u);
  EXPECT_EQ(txt->length, 2u);
  EXPECT_EQ(index->field_range(1, 0), std::nullopt);

  // The shard file the example describes: its header and the records at
  // the entries' offsets.
  const std::string shard = EncodeShardHeader(0) + "hellohi" + "\x89PNG";
  ASSERT_EQ(shard.size(), index->shards()[0].size);
  EXPECT_EQ(shard.substr(e0.offset + txt->offset, txt->length), "hi");
  EXPECT_EQ(Crc32c(AsBytes(std::string_view(shard).substr(e1.offset, e1.length))), e1.crc);
}

TEST(ShardFormat, RoundTripWithSeveralShardsClassesAndFields) {
  const std::vector<std::string> classes = {"cat", "dog", "", "caf\xc3\xa9"};
  const std::vector<ShardField> fields = {{"txt", FieldSpec::Kind::kText},
                                          {"seg.png", FieldSpec::Kind::kMask},
                                          {"score", FieldSpec::Kind::kFloat}};
  struct Sample {
    ShardEntry entry;
    std::vector<uint32_t> fields;
  };
  std::vector<Sample> samples;
  std::vector<ShardInfo> shards;
  // Shard 0: three records back to back; shard 1: none; shard 2: two, the
  // first of length 0, with a gap after it.
  uint64_t at = kShardHeaderSize;
  auto add = [&](uint32_t shard, uint32_t image, ImageFormat format, std::vector<uint32_t> lens) {
    uint32_t length = image;
    for (uint32_t n : lens) length += n == kFieldMissing ? 0 : n;
    ShardEntry e = Entry(at, length, image, shard);
    e.image_format = format;
    e.source = 1000 - samples.size();
    e.label = static_cast<int64_t>(samples.size()) - 2;
    e.width = 640 + shard;
    e.height = 480;
    e.crc = 0x01020304u * (samples.size() + 1);
    if (format == ImageFormat::kJpegRestart) e.scan_offset = 600;
    samples.push_back({e, lens});
    at += length;
  };
  add(0, 1000, ImageFormat::kJpegRestart, {12, 3000, 8});
  add(0, 500, ImageFormat::kJpeg, {kFieldMissing, kFieldMissing, kFieldMissing});
  add(0, 0, ImageFormat::kNone, {0, kFieldMissing, 8});
  shards.push_back({at, 3});
  shards.push_back({kShardHeaderSize, 0});
  at = kShardHeaderSize;
  add(2, 0, ImageFormat::kNone, {kFieldMissing, 0, kFieldMissing});
  at += 10;  // a gap: readers do not depend on records being back to back
  add(2, 77, ImageFormat::kPng, {5, kFieldMissing, 8});
  shards.push_back({at + 3, 2});

  ShardIndexBuilder b(classes, fields);
  for (const ShardInfo& s : shards) b.AddShard(s.size, s.samples);
  for (const Sample& s : samples) b.Add(s.entry, s.fields);
  const std::string bytes = b.Finish();

  auto index = ParseShardIndex(bytes, kName);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(index->bytes(), bytes);
  EXPECT_EQ(index->classes(), classes);
  ASSERT_EQ(index->fields().size(), fields.size());
  for (size_t f = 0; f < fields.size(); ++f) {
    EXPECT_EQ(index->fields()[f].name, fields[f].name);
    EXPECT_EQ(index->fields()[f].kind, fields[f].kind);
  }
  ASSERT_EQ(index->shards().size(), shards.size());
  for (size_t k = 0; k < shards.size(); ++k) {
    EXPECT_EQ(index->shards()[k].size, shards[k].size);
    EXPECT_EQ(index->shards()[k].samples, shards[k].samples);
  }
  EXPECT_EQ(index->entry_size(), kShardEntryBaseSize + 4 * fields.size());
  ASSERT_EQ(index->num_samples(), samples.size());
  // Header, 3 shard rows, the class names ("café" has 5 bytes), the
  // fields (kind, length, name), 5 entries of 56 + 3 * 4 bytes, trailer.
  EXPECT_EQ(bytes.size(), 64 + 3 * 16 + (4 * 4 + 3 + 3 + 0 + 5) + (3 * 5 + 3 + 7 + 5) + 5 * 68 + 16);
  for (uint64_t i = 0; i < samples.size(); ++i) {
    ExpectSameEntry(index->entry(i), samples[i].entry, i);
    uint32_t offset = samples[i].entry.image_length;
    for (size_t f = 0; f < fields.size(); ++f) {
      const auto r = index->field_range(i, f);
      if (samples[i].fields[f] == kFieldMissing) {
        EXPECT_EQ(r, std::nullopt) << "entry " << i << " field " << f;
        continue;
      }
      ASSERT_TRUE(r.has_value()) << "entry " << i << " field " << f;
      EXPECT_EQ(r->offset, offset) << "entry " << i << " field " << f;
      EXPECT_EQ(r->length, samples[i].fields[f]) << "entry " << i << " field " << f;
      offset += r->length;
    }
  }
  // Exact field ranges of the first sample: 1000 image bytes, then 12, 3000, 8.
  EXPECT_EQ(index->field_range(0, 1)->offset, 1012u);
  EXPECT_EQ(index->field_range(0, 2)->offset, 4012u);
  EXPECT_EQ(index->field_range(4, 2)->offset, 82u);
}

TEST(ShardFormat, EmptyIndexRoundTrips) {
  const std::string bytes = ShardIndexBuilder({}, {}).Finish();
  EXPECT_EQ(bytes.size(), 80u);
  auto index = ParseShardIndex(bytes, kName);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(index->num_samples(), 0u);
  EXPECT_TRUE(index->shards().empty());
  EXPECT_TRUE(index->fields().empty());
  EXPECT_TRUE(index->classes().empty());
  EXPECT_EQ(index->entry_size(), kShardEntryBaseSize);
}

// A later minor version may append bytes to each entry; this reader skips
// them. A smaller entry_size than the fields need is refused.
TEST(ShardFormat, LargerEntrySizeFromALaterMinorVersionIsAccepted) {
  const std::string plain = ExampleIndex();
  std::string wide = plain.substr(0, kExampleEntry0);
  wide += plain.substr(kExampleEntry0, 60) + "ABCDEFGH";
  wide += plain.substr(kExampleEntry1, 60) + "IJKLMNOP";
  wide += plain.substr(plain.size() - kShardIndexTrailerSize);
  Put32(wide, 32, 68);  // entry_size
  auto index = ParseShardIndex(Reseal(wide), kName);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  auto want = ParseShardIndex(plain, kName);
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(index->entry_size(), 68u);
  for (uint64_t i = 0; i < 2; ++i) ExpectSameEntry(index->entry(i), want->entry(i), i);
  EXPECT_EQ(index->field_range(0, 0)->length, 2u);
  EXPECT_EQ(index->field_range(1, 0), std::nullopt);

  std::string narrow = plain.substr(0, kExampleEntry0);
  narrow += plain.substr(kExampleEntry0, 56) + plain.substr(kExampleEntry1, 56);
  narrow += plain.substr(plain.size() - kShardIndexTrailerSize);
  Put32(narrow, 32, 56);
  ExpectRefused(Reseal(narrow), "entry size 56 is less than the 60 that 1 fields need");
}

TEST(ShardFormat, EveryTruncationIsRefused) {
  const std::string bytes = ExampleIndex();
  for (size_t n = 0; n < bytes.size(); ++n) {
    SCOPED_TRACE("first " + std::to_string(n) + " bytes");
    auto index = ParseShardIndex(bytes.substr(0, n), kName);
    ASSERT_FALSE(index.ok());
    EXPECT_EQ(index.status().code(), StatusCode::kCorrupt) << index.status().ToString();
    EXPECT_EQ(index.status().message().rfind(kName + ": ", 0), 0u) << index.status().ToString();
    const std::string reason = n < 80 ? "short object" : "bad trailer magic";
    EXPECT_NE(index.status().message().find(reason), std::string::npos) << index.status().ToString();
  }
}

TEST(ShardFormat, EveryFlippedByteIsRefused) {
  const std::string bytes = ExampleIndex();
  const size_t trailer = bytes.size() - kShardIndexTrailerSize;
  for (size_t i = 0; i < bytes.size(); ++i) {
    SCOPED_TRACE("byte " + std::to_string(i));
    std::string flipped = bytes;
    flipped[i] = static_cast<char>(flipped[i] ^ 0x20);
    if (i < 8) {
      ExpectRefused(flipped, "bad magic");
    } else if (i < 12) {
      ExpectRefused(flipped, "unsupported shard index version", StatusCode::kUnsupported);
    } else if (i < trailer + 4) {  // everything the CRC covers, and the CRC itself
      ExpectRefused(flipped, "CRC mismatch");
    } else if (i < trailer + 8) {
      ExpectRefused(flipped, "reserved trailer bytes are not zero");
    } else {
      ExpectRefused(flipped, "bad trailer magic");
    }
  }
}

// Each header inconsistency, with the CRC made right so that the check
// behind it fires.
TEST(ShardFormat, BadHeadersAreRefused) {
  const std::string good = ExampleIndex();
  auto patched32 = [&](size_t at, uint32_t v) {
    std::string s = good;
    Put32(s, at, v);
    return Reseal(s);
  };
  auto patched64 = [&](size_t at, uint64_t v) {
    std::string s = good;
    Put64(s, at, v);
    return Reseal(s);
  };
  ExpectRefused(patched32(8, 2), "unsupported shard index version 2 (this stoker reads version 1)",
                StatusCode::kUnsupported);
  ExpectRefused(patched32(8, 0), "unsupported shard index version 0", StatusCode::kUnsupported);
  ExpectRefused(patched32(12, 72), "header size 72, version 1 has 64");
  ExpectRefused(patched32(48, 1), "unknown flags 00000001", StatusCode::kUnsupported);
  ExpectRefused(patched32(48, 0x80000000u), "unknown flags 80000000", StatusCode::kUnsupported);
  for (size_t at = 52; at < 64; ++at) {
    std::string s = good;
    s[at] = 1;
    ExpectRefused(Reseal(s), "reserved header bytes are not zero");
  }
  ExpectRefused(patched32(32, 59), "entry size 59 is less than the 60 that 1 fields need");
  ExpectRefused(patched32(28, 2), "entry size 60 is less than the 64 that 2 fields need");
  ExpectRefused(patched32(28, 0xFFFFFFFFu), "entry size 60 is less than the 17179869236");

  // Sizes that do not add up to the object's 231 bytes.
  const std::string sizes = "sizes do not add up";
  ExpectRefused(patched64(16, 3), sizes);  // num_samples
  ExpectRefused(patched64(16, 1), sizes);
  ExpectRefused(patched32(24, 2), sizes);  // num_shards
  ExpectRefused(patched32(24, 0), sizes);
  ExpectRefused(patched64(40, 14), sizes);  // meta_size
  ExpectRefused(patched64(40, 16), sizes);
  ExpectRefused(patched32(32, 64), sizes);  // entry_size
  // Products and sums that overflow 64 bits, some of them wrapping to
  // small numbers.
  // 2 + 2^62 entries of 60 bytes wrap to the 120 bytes of 2 entries.
  ExpectRefused(patched64(16, 2 + (uint64_t{1} << 62)), sizes);
  ExpectRefused(patched64(16, std::numeric_limits<uint64_t>::max() / 60 + 1), sizes);
  ExpectRefused(patched64(40, std::numeric_limits<uint64_t>::max()), sizes);
  {
    // 2^58 entries of 60 bytes (15 * 2^60, no overflow) and 2^60 + 135
    // bytes of metadata: the sum wraps to exactly the object's 231 bytes.
    std::string s = good;
    Put64(s, 16, uint64_t{1} << 58);
    Put64(s, 40, (uint64_t{1} << 60) + 135);
    ExpectRefused(Reseal(s), sizes);
  }
  // A byte more or less before the trailer.
  std::string longer = good;
  longer.insert(longer.size() - kShardIndexTrailerSize, 1, '\0');
  ExpectRefused(Reseal(longer), sizes);
  std::string shorter = good;
  shorter.erase(shorter.size() - kShardIndexTrailerSize - 1, 1);
  ExpectRefused(Reseal(shorter), sizes);
}

TEST(ShardFormat, BadTrailersAreRefused) {
  const std::string good = ExampleIndex();
  const size_t trailer = good.size() - kShardIndexTrailerSize;
  std::string s = good;
  Put32(s, trailer + 4, 1);
  ExpectRefused(s, "reserved trailer bytes are not zero");
  s = good;
  s[trailer + 8] = 's';
  ExpectRefused(s, "bad trailer magic");
  s = good;
  Put32(s, trailer, Crc32c(AsBytes(std::string_view(good).substr(0, trailer))) ^ 1);
  ExpectRefused(s, "CRC mismatch: the trailer says d1d00fa7, the bytes give d1d00fa6");
  ExpectRefused("STKSHARD" + good.substr(8), "bad magic: not a stoker shard index");
}

TEST(ShardFormat, BadShardTablesAreRefused) {
  const std::string good = ExampleIndex();
  std::string s = good;
  Put32(s, 64 + 12, 1);
  ExpectRefused(Reseal(s), "shard 0: reserved bytes are not zero");

  ShardIndexBuilder small({}, {});
  small.AddShard(16, 0);
  small.AddShard(15, 0);
  ExpectRefused(small.Finish(), "shard 1: size 15 is less than its 16-byte header");

  // The table holds 3 samples, the entries are 2.
  s = good;
  Put32(s, 64 + 8, 3);
  ExpectRefused(Reseal(s), "the shard table holds 3 samples, the header says 2");
  s = good;
  Put32(s, 64 + 8, 1);
  ExpectRefused(Reseal(s), "the shard table holds 1 samples, the header says 2");
}

TEST(ShardFormat, BadMetadataIsRefused) {
  const std::string good = ExampleIndex();
  auto patched32 = [&](size_t at, uint32_t v) {
    std::string s = good;
    Put32(s, at, v);
    return Reseal(s);
  };
  // The class name's length runs past the section (15 bytes), or to exactly
  // its end, leaving the field no room.
  ExpectRefused(patched32(kExampleMeta, 12), "class name 0 runs past the metadata section");
  ExpectRefused(patched32(kExampleMeta, 0xFFFFFFFFu), "class name 0 runs past the metadata section");
  ExpectRefused(patched32(kExampleMeta, 11), "1 fields do not fit in the 0 bytes of metadata");
  ExpectRefused(patched32(36, 2), "class name 1 runs past the metadata section");
  ExpectRefused(patched32(36, 0xFFFFFFFFu), "4294967295 class names do not fit in 15 bytes of metadata");
  // The field's name runs past the section; the field's kind is unknown.
  ExpectRefused(patched32(kExampleMeta + 8, 4), "field 0 runs past the metadata section");
  ExpectRefused(patched32(kExampleMeta + 8, 0x80000000u), "field 0 runs past the metadata section");
  // A class name of 2 bytes ("ca"): the field's kind is read from its third, 't'.
  ExpectRefused(patched32(kExampleMeta, 2), "field 0: unknown kind 116");
  {
    std::string s = good;
    s[kExampleMeta + 7] = 8;
    ExpectRefused(Reseal(s), "field 0: unknown kind 8");
    s[kExampleMeta + 7] = 0;
    ExpectRefused(Reseal(s), "field 0: unknown kind 0");
  }
  {
    std::string s = good;
    s.insert(kExampleEntry0, 1, 'x');
    Put64(s, 40, 16);
    ExpectRefused(Reseal(s), "1 bytes of metadata after the last field");
  }
  // Many fields and no entries: the sizes add up, the metadata cannot hold them.
  {
    std::string s = ShardIndexBuilder({}, {}).Finish();
    Put32(s, 28, 1000);
    Put32(s, 32, 56 + 4000);
    ExpectRefused(Reseal(s), "1000 fields do not fit in the 0 bytes of metadata after the class names");
  }
  // Made by the builder, which writes what it is given.
  ExpectRefused(ShardIndexBuilder({}, {{"x", FieldSpec::Kind::kAuto}}).Finish(), "field 0: unknown kind 0");
  ExpectRefused(ShardIndexBuilder({}, {{"", FieldSpec::Kind::kInt}}).Finish(), "field 0 has no name");
  ExpectRefused(ShardIndexBuilder({}, {{"a", FieldSpec::Kind::kInt}, {"b", FieldSpec::Kind::kInt},
                                       {"a", FieldSpec::Kind::kText}})
                    .Finish(),
                "two fields are named \"a\"");
}

TEST(ShardFormat, UnicodeAndOddStringsAreKept) {
  // Strings are bytes: UTF-8 is not checked, and a NUL is kept.
  const std::vector<std::string> classes = {std::string("a\0b", 3), "\xff\xfe", ""};
  const std::string bytes = ShardIndexBuilder(classes, {{"\xc3", FieldSpec::Kind::kBytes}}).Finish();
  auto index = ParseShardIndex(bytes, kName);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(index->classes(), classes);
  EXPECT_EQ(index->fields()[0].name, "\xc3");
}

TEST(ShardFormat, EntriesOutsideTheirShardAreRefused) {
  // Shard number past the table, and another shard than the table's.
  ExpectRefused(OneShard({{Entry(16, 4, 4, 1), kFieldMissing}}),
                "entry 0: shard 1 is not in the shard table (1 shards)");
  {
    ShardIndexBuilder b({}, {});
    b.AddShard(100, 1);
    b.AddShard(100, 1);
    b.Add(Entry(16, 4, 4, 0), {});
    b.Add(Entry(20, 4, 4, 0), {});
    ExpectRefused(b.Finish(), "entry 1: shard 0, but the shard table puts entry 1 in shard 1");
  }
  {
    ShardIndexBuilder b({}, {});
    b.AddShard(100, 1);
    b.AddShard(100, 1);
    b.Add(Entry(16, 4, 4, 1), {});
    b.Add(Entry(16, 4, 4, 0), {});
    ExpectRefused(b.Finish(), "entry 0: shard 1, but the shard table puts entry 0 in shard 0");
  }
  {
    // An empty shard between two: entry 1 belongs to shard 2.
    ShardIndexBuilder b({}, {});
    b.AddShard(100, 1);
    b.AddShard(16, 0);
    b.AddShard(100, 1);
    b.Add(Entry(16, 4, 4, 0), {});
    b.Add(Entry(16, 4, 4, 1), {});
    ExpectRefused(b.Finish(), "entry 1: shard 1, but the shard table puts entry 1 in shard 2");
  }
  // Inside the header; past the end, by offset or by length, and by a sum
  // that overflows.
  ExpectRefused(OneShard({{Entry(15, 4, 4), kFieldMissing}}),
                "entry 0: offset 15 is inside the shard's 16-byte header");
  ExpectRefused(OneShard({{Entry(0, 0, 0), kFieldMissing}}),
                "entry 0: offset 0 is inside the shard's 16-byte header");
  ExpectRefused(OneShard({{Entry(16, 85, 85), kFieldMissing}}),
                "entry 0: record [16, +85) runs past the end of shard 0 (100 bytes)");
  ExpectRefused(OneShard({{Entry(101, 0, 0), kFieldMissing}}),
                "entry 0: record [101, +0) runs past the end of shard 0 (100 bytes)");
  ExpectRefused(OneShard({{Entry(std::numeric_limits<uint64_t>::max() - 1, 4, 4), kFieldMissing}}),
                "runs past the end of shard 0");
  // A 4 GiB record in a shard of 2^64 - 1 bytes, and a record filling the
  // shard to its last byte are fine.
  EXPECT_TRUE(ParseShardIndex(OneShard({{Entry(90, 0xFFFFFFFFu, 0xFFFFFFFFu), kFieldMissing}},
                                       std::numeric_limits<uint64_t>::max()),
                              kName)
                  .ok());
  EXPECT_TRUE(ParseShardIndex(OneShard({{Entry(16, 84, 84), kFieldMissing}}), kName).ok());
  EXPECT_TRUE(ParseShardIndex(OneShard({{Entry(100, 0, 0), kFieldMissing}}), kName).ok());
}

TEST(ShardFormat, OverlappingOrUnorderedRecordsAreRefused) {
  ExpectRefused(OneShard({{Entry(16, 10, 10), kFieldMissing}, {Entry(25, 5, 5), kFieldMissing}}),
                "entry 1: record at offset 25 overlaps or precedes the previous record of its shard, "
                "which ends at 26");
  ExpectRefused(OneShard({{Entry(40, 10, 10), kFieldMissing}, {Entry(16, 5, 5), kFieldMissing}}),
                "entry 1: record at offset 16 overlaps or precedes");
  ExpectRefused(OneShard({{Entry(16, 0, 0), kFieldMissing},
                          {Entry(30, 10, 10), kFieldMissing},
                          {Entry(39, 0, 0), kFieldMissing}}),
                "entry 2: record at offset 39 overlaps");
  // Back to back, zero-length records sharing an offset, and gaps are fine.
  EXPECT_TRUE(ParseShardIndex(OneShard({{Entry(16, 10, 10), kFieldMissing},
                                        {Entry(26, 0, 0), kFieldMissing},
                                        {Entry(26, 0, 0), kFieldMissing},
                                        {Entry(26, 5, 5), kFieldMissing},
                                        {Entry(50, 1, 1), kFieldMissing}}),
                              kName)
                  .ok());
  // Each shard starts again after its header.
  ShardIndexBuilder b({}, {});
  b.AddShard(100, 1);
  b.AddShard(100, 1);
  b.Add(Entry(16, 80, 80, 0), {});
  b.Add(Entry(16, 80, 80, 1), {});
  EXPECT_TRUE(ParseShardIndex(b.Finish(), kName).ok());
}

TEST(ShardFormat, InconsistentImagesAndFieldsAreRefused) {
  ShardEntry e = Entry(16, 4, 4);
  e.image_format = static_cast<ImageFormat>(5);
  ExpectRefused(OneShard({{e, kFieldMissing}}), "entry 0: unknown image format 5");
  e.image_format = ImageFormat::kNone;
  ExpectRefused(OneShard({{e, kFieldMissing}}), "entry 0: no image (format 0) but an image length of 4");

  // scan_offset: only format 1 has one, and inside the image.
  e = Entry(16, 10, 10);
  e.image_format = ImageFormat::kJpeg;
  e.scan_offset = 3;
  ExpectRefused(OneShard({{e, kFieldMissing}}), "entry 0: scan offset 3 for an image of format 2");
  e.image_format = ImageFormat::kJpegRestart;
  e.scan_offset = 10;
  ExpectRefused(OneShard({{e, kFieldMissing}}), "entry 0: scan offset 10 is not inside the 10-byte image");
  e.scan_offset = 9;
  EXPECT_TRUE(ParseShardIndex(OneShard({{e, kFieldMissing}}), kName).ok());
  e.scan_offset = 0;
  EXPECT_TRUE(ParseShardIndex(OneShard({{e, kFieldMissing}}), kName).ok());

  // The image and the present fields must make the record's length exactly.
  ExpectRefused(OneShard({{Entry(16, 10, 6), 3}}),
                "entry 0: the image (6 bytes) and the fields make 9 bytes, the record has 10");
  ExpectRefused(OneShard({{Entry(16, 10, 6), 5}}), "the fields make 11 bytes, the record has 10");
  ExpectRefused(OneShard({{Entry(16, 10, 6), kFieldMissing}}), "the fields make 6 bytes, the record has 10");
  ExpectRefused(OneShard({{Entry(16, 10, 10), kFieldMissing}, {Entry(26, 4, 0), 0xFFFFFFFEu}}),
                "entry 1: the image (0 bytes) and the fields make 4294967294 bytes, the record has 4");
  EXPECT_TRUE(ParseShardIndex(OneShard({{Entry(16, 10, 6), 4}}), kName).ok());
}

// The fuzz target's body on valid indexes and on every truncation and byte
// flip of them, with and without its CRC fix-up: it must neither crash nor
// find a broken invariant (it aborts if it does).
TEST(ShardFormat, FuzzTargetBodyRunsOnSeedsAndMutations) {
  std::vector<std::string> seeds = {ExampleIndex(), ShardIndexBuilder({}, {}).Finish(),
                                    OneShard({{Entry(16, 10, 6), 4}, {Entry(26, 0, 0), 0}})};
  auto run = [](uint8_t control, const std::string& bytes) {
    const std::string input = std::string(1, static_cast<char>(control)) + bytes;
    return ShardIndexFuzzTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  };
  EXPECT_EQ(ShardIndexFuzzTestOneInput(nullptr, 0), 0);
  for (const std::string& seed : seeds) {
    for (uint8_t control : {0, 1}) {
      EXPECT_EQ(run(control, seed), 0);
      for (size_t n = 0; n < seed.size(); ++n) EXPECT_EQ(run(control, seed.substr(0, n)), 0);
      for (size_t i = 0; i < seed.size(); ++i) {
        for (uint8_t x : {0x01, 0x80, 0xff}) {
          std::string s = seed;
          s[i] = static_cast<char>(s[i] ^ x);
          EXPECT_EQ(run(control, s), 0);
        }
      }
    }
  }
}

}  // namespace
}  // namespace stoker::dataset
