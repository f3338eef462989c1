#include "stoker/dataset/tar.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <map>

#include "stoker/dataset/dataset.h"
#include "stoker/storage/testing/memory_storage.h"

namespace stoker::dataset {
namespace {

using storage::testing::MemoryStorage;

// A tar written byte by byte, as POSIX ustar, for the tests.
class TarBuilder {
 public:
  // A member; `type` '0' a file, '5' a directory, 'x' a pax header, 'L' a
  // GNU long name. `prefix`: the ustar prefix field.
  TarBuilder& Add(const std::string& name, const std::string& data, char type = '0',
                  const std::string& prefix = "", bool base256_size = false) {
    std::string h(kTarBlock, '\0');
    std::memcpy(&h[0], name.data(), std::min<size_t>(name.size(), 100));
    std::snprintf(&h[100], 8, "%07o", 0644);
    std::snprintf(&h[108], 8, "%07o", 0);
    std::snprintf(&h[116], 8, "%07o", 0);
    if (base256_size) {
      h[124] = static_cast<char>(0x80);
      uint64_t v = data.size();
      for (int i = 11; i >= 1; --i, v >>= 8) h[124 + i] = static_cast<char>(v & 0xFF);
    } else {
      std::snprintf(&h[124], 12, "%011llo", static_cast<unsigned long long>(data.size()));
    }
    std::snprintf(&h[136], 12, "%011o", 0);
    h[156] = type;
    std::memcpy(&h[257], "ustar\0" "00", 8);
    std::memcpy(&h[345], prefix.data(), std::min<size_t>(prefix.size(), 155));
    std::memset(&h[148], ' ', 8);
    unsigned sum = 0;
    for (unsigned char c : h) sum += c;
    std::snprintf(&h[148], 8, "%06o", sum);
    h[154] = '\0';
    h[155] = ' ';
    bytes_ += h;
    bytes_ += data;
    bytes_.append((kTarBlock - data.size() % kTarBlock) % kTarBlock, '\0');
    return *this;
  }
  TarBuilder& Pax(const std::string& key, const std::string& value) {
    std::string rec = " " + key + "=" + value + "\n";
    size_t len = rec.size() + 1;
    while (std::to_string(len).size() + rec.size() != len) ++len;
    return Add("PaxHeader", std::to_string(len) + rec, 'x');
  }
  std::string End() const { return bytes_ + std::string(2 * kTarBlock, '\0'); }
  std::string NoEnd() const { return bytes_; }

 private:
  std::string bytes_;
};

struct Walked {
  Status status;
  std::vector<TarFile> files;
};

Walked Walk(const std::string& tar) {
  Walked w;
  const TarReadAt read = [&](uint64_t offset, size_t length) -> Result<std::span<const uint8_t>> {
    if (offset >= tar.size()) return std::span<const uint8_t>();
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(tar.data()) + offset,
                                    std::min<size_t>(length, tar.size() - offset));
  };
  w.status = WalkTar(read, "t.tar", [&](const TarFile& f) {
    w.files.push_back(f);
    return Status::Ok();
  });
  return w;
}

std::string DataOf(const std::string& tar, const TarFile& f) { return tar.substr(f.data_offset, f.size); }

TEST(Tar, WalksFilesWithTheirDataAndSkipsOtherMembers) {
  const std::string tar = TarBuilder()
                              .Add("d/", "", '5')
                              .Add("d/a.jpg", std::string(700, 'j'))
                              .Add("d/a.cls", "3\n")
                              .Add("link", "", '2')
                              .Add("d/b.jpg", "")
                              .End();
  Walked w = Walk(tar);
  ASSERT_TRUE(w.status.ok()) << w.status.ToString();
  ASSERT_EQ(w.files.size(), 3u);
  EXPECT_EQ(w.files[0].path, "d/a.jpg");
  EXPECT_EQ(DataOf(tar, w.files[0]), std::string(700, 'j'));
  EXPECT_EQ(w.files[1].path, "d/a.cls");
  EXPECT_EQ(DataOf(tar, w.files[1]), "3\n");
  EXPECT_EQ(w.files[1].data_offset, w.files[1].header_offset + kTarBlock);
  EXPECT_EQ(w.files[2].path, "d/b.jpg");
  EXPECT_EQ(w.files[2].size, 0u);
}

TEST(Tar, LongNamesFromPaxGnuAndUstarPrefix) {
  const std::string long_name = std::string(150, 'n') + "/k.txt";
  const std::string tar = TarBuilder()
                              .Pax("path", long_name)
                              .Add("short", "pax")
                              .Add("././@LongLink", "gnu/" + std::string(120, 'g') + ".txt" + '\0', 'L')
                              .Add("cut", "gnu")
                              .Add("x.txt", "ustar", '0', "some/prefix")
                              .Add("big.bin", "256", '0', "", /*base256_size=*/true)
                              .End();
  Walked w = Walk(tar);
  ASSERT_TRUE(w.status.ok()) << w.status.ToString();
  ASSERT_EQ(w.files.size(), 4u);
  EXPECT_EQ(w.files[0].path, long_name);
  EXPECT_EQ(DataOf(tar, w.files[0]), "pax");
  EXPECT_EQ(w.files[1].path, "gnu/" + std::string(120, 'g') + ".txt");
  EXPECT_EQ(w.files[2].path, "some/prefix/x.txt");
  EXPECT_EQ(w.files[3].path, "big.bin");
  EXPECT_EQ(DataOf(tar, w.files[3]), "256");
}

TEST(Tar, PaxSizeOverridesTheHeader) {
  // A pax size record is what counts (the header's may be 0 for huge files).
  TarBuilder b;
  b.Pax("size", "5");
  std::string tar = b.NoEnd();
  const size_t header = tar.size();
  tar += TarBuilder().Add("f.txt", "hello").NoEnd();
  // Zero the following header's size field and fix its checksum.
  std::memset(&tar[header + 124], '0', 11);
  std::memset(&tar[header + 148], ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < kTarBlock; ++i) sum += static_cast<unsigned char>(tar[header + i]);
  std::snprintf(&tar[header + 148], 8, "%06o", sum);
  Walked w = Walk(tar + std::string(1024, '\0'));
  ASSERT_TRUE(w.status.ok()) << w.status.ToString();
  ASSERT_EQ(w.files.size(), 1u);
  EXPECT_EQ(w.files[0].size, 5u);
}

TEST(Tar, EndsOnABlockBoundaryWithoutTheMarker) {
  const std::string tar = TarBuilder().Add("a.txt", "x").NoEnd();
  Walked w = Walk(tar);
  ASSERT_TRUE(w.status.ok()) << w.status.ToString();
  EXPECT_EQ(w.files.size(), 1u);
}

TEST(Tar, BadInputNamesTheTarAndTheReason) {
  std::string tar = TarBuilder().Add("a.jpg", std::string(1000, 'a')).Add("b.jpg", "b").End();
  {  // a flipped byte in a header
    std::string bad = tar;
    bad[1536 + 10] ^= 1;  // in b.jpg's name
    Walked w = Walk(bad);
    EXPECT_EQ(w.status.code(), StatusCode::kCorrupt);
    EXPECT_NE(w.status.message().find("t.tar: at offset 1536"), std::string::npos) << w.status.ToString();
    EXPECT_NE(w.status.message().find("checksum"), std::string::npos);
    EXPECT_EQ(w.files.size(), 1u);
  }
  {  // cut inside the first member's data
    Walked w = Walk(tar.substr(0, 800));
    EXPECT_EQ(w.status.code(), StatusCode::kCorrupt);
    EXPECT_NE(w.status.message().find("'a.jpg' is cut off"), std::string::npos) << w.status.ToString();
  }
  {  // cut inside the second header
    Walked w = Walk(tar.substr(0, 1536 + 100));
    EXPECT_EQ(w.status.code(), StatusCode::kCorrupt);
    EXPECT_NE(w.status.message().find("cut short"), std::string::npos) << w.status.ToString();
  }
  {  // not a tar at all
    Walked w = Walk(std::string(2048, 'z'));
    EXPECT_EQ(w.status.code(), StatusCode::kCorrupt);
    EXPECT_NE(w.status.message().find("not a tar header"), std::string::npos);
  }
  {  // a pax record that does not parse
    Walked w = Walk(TarBuilder().Add("PaxHeader", "99 path=x\n", 'x').Add("a.txt", "a").End());
    EXPECT_EQ(w.status.code(), StatusCode::kCorrupt);
    EXPECT_NE(w.status.message().find("pax"), std::string::npos);
  }
}

TEST(Tar, KeysAsWebDatasetSplitsThem) {
  EXPECT_EQ(SplitTarKey("a/b/x.seg.PNG")->key, "a/b/x");
  EXPECT_EQ(SplitTarKey("a/b/x.seg.PNG")->ext, "seg.png");
  EXPECT_EQ(SplitTarKey("a.b/x.jpg")->key, "a.b/x");
  EXPECT_FALSE(SplitTarKey("a/noext"));
  EXPECT_FALSE(SplitTarKey("a/.hidden"));
  EXPECT_TRUE(IsTarMetadata("__index__"));
  EXPECT_FALSE(IsTarMetadata("d/__index__"));
}

std::vector<TarSample> Group(const std::vector<std::string>& paths, Status* status) {
  TarGrouper g("t.tar");
  std::vector<TarSample> out;
  uint64_t at = 0;
  for (const auto& p : paths) {
    auto r = g.Add(TarFile{p, at, at + kTarBlock, 1});
    at += 2 * kTarBlock;
    if (!r.ok()) {
      *status = r.status();
      return out;
    }
    if (*r) out.push_back(std::move(**r));
  }
  if (auto last = g.Finish()) out.push_back(std::move(*last));
  *status = Status::Ok();
  return out;
}

TEST(Tar, GroupsConsecutiveFilesByKey) {
  Status st;
  auto s = Group({"__meta__", "x/1.jpg", "x/1.cls", "x/2.jpg", "noext", "x/2.json", "x/3.png"}, &st);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].key, "x/1");
  ASSERT_EQ(s[0].members.size(), 2u);
  EXPECT_EQ(s[0].members[1].ext, "cls");
  EXPECT_EQ(s[1].key, "x/2");
  EXPECT_EQ(s[1].members.size(), 2u);  // a file without a dot between them is skipped
  EXPECT_EQ(s[2].key, "x/3");
}

TEST(Tar, DuplicatesAreErrors) {
  Status st;
  Group({"a.jpg", "a.cls", "a.jpg"}, &st);
  EXPECT_EQ(st.code(), StatusCode::kCorrupt);
  EXPECT_NE(st.message().find("'a.jpg' is there twice"), std::string::npos) << st.ToString();
  Group({"a.jpg", "b.jpg", "a.cls"}, &st);
  EXPECT_EQ(st.code(), StatusCode::kCorrupt);
  EXPECT_NE(st.message().find("duplicate key 'a'"), std::string::npos) << st.ToString();
}

TEST(Tar, ExpandsBracePatterns) {
  EXPECT_EQ(*ExpandBraces("s3://b/train-{000..002}.tar"),
            (std::vector<std::string>{"s3://b/train-000.tar", "s3://b/train-001.tar",
                                      "s3://b/train-002.tar"}));
  EXPECT_EQ(*ExpandBraces("{a,b}-{1..2}.tar"),
            (std::vector<std::string>{"a-1.tar", "a-2.tar", "b-1.tar", "b-2.tar"}));
  EXPECT_EQ(*ExpandBraces("x{8..10}"), (std::vector<std::string>{"x8", "x9", "x10"}));
  EXPECT_EQ(*ExpandBraces("x{3..1}"), (std::vector<std::string>{"x3", "x2", "x1"}));
  EXPECT_EQ(*ExpandBraces("{a,b{c,d}}"), (std::vector<std::string>{"a", "bc", "bd"}));
  EXPECT_EQ(*ExpandBraces("plain.tar"), (std::vector<std::string>{"plain.tar"}));
  EXPECT_EQ(*ExpandBraces("lit{x}.tar"), (std::vector<std::string>{"lit{x}.tar"}));
  EXPECT_EQ(ExpandBraces("bad{1..2").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ExpandBraces("{0..9999999}").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ExpandBraces("{0..999}{0..9999}").status().code(), StatusCode::kInvalidArgument);
}

class WebDatasetTest : public ::testing::Test {
 protected:
  // Two tars: 0 has samples a (jpg, cls 1, txt) and b (png, cls 2); 1 has
  // c (jpg, no cls, txt first) and d (jpg, cls 0).
  void SetUp() override {
    mem_.Put("mem://b/wds/s-0.tar", TarBuilder()
                                        .Add("a.jpg", "JPEG-A")
                                        .Add("a.cls", "1")
                                        .Add("a.txt", "text a")
                                        .Add("b.png", "PNG-B")
                                        .Add("b.cls", " 2\n")
                                        .End());
    mem_.Put("mem://b/wds/s-1.tar", TarBuilder()
                                        .Add("c.txt", "text c")
                                        .Add("c.jpg", "JPEG-C")
                                        .Add("d.jpg", "JPEG-D")
                                        .Add("d.cls", "0")
                                        .End());
  }
  std::string Record(const Dataset& d, uint64_t i) {
    const ShardEntry e = d.shards->entry(i);
    auto b = mem_.ReadRange(d.shards->shard_uris[e.shard],
                            {static_cast<int64_t>(e.offset), static_cast<int64_t>(e.length)});
    EXPECT_TRUE(b.ok());
    EXPECT_TRUE(d.shards->CheckRecord({b->data(), b->size()}, i).ok());
    return std::string(b->begin(), b->end());
  }
  MemoryStorage mem_;
};

TEST_F(WebDatasetTest, SamplesLabelsImagesFieldsAndKeys) {
  auto d = OpenDataset("mem://b/wds/s-{0..1}.tar", mem_, {{"txt", FieldSpec::Kind::kAuto},
                                                          {"__key__", FieldSpec::Kind::kAuto}});
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_EQ(d->size(), 4u);
  ASSERT_TRUE(d->shards && d->shards->tar);
  EXPECT_EQ(d->fields[0].kind, FieldSpec::Kind::kText);
  EXPECT_EQ(d->fields[1].kind, FieldSpec::Kind::kText);
  const std::vector<std::string> keys = {"a", "b", "c", "d"};
  const std::vector<int64_t> labels = {1, 2, -1, 0};
  const std::vector<std::string> images = {"JPEG-A", "PNG-B", "JPEG-C", "JPEG-D"};
  const std::vector<std::string> texts = {"text a", "", "text c", ""};
  for (uint64_t i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(d->shards->key(i), keys[i]);
    EXPECT_EQ(d->label(i), labels[i]);
    EXPECT_EQ(d->source(i), i);
    const std::string rec = Record(*d, i);
    const auto img = d->shards->Image({reinterpret_cast<const uint8_t*>(rec.data()), rec.size()}, i);
    EXPECT_EQ(std::string(img.begin(), img.end()), images[i]);
    const auto r = d->shards->field_range(i, d->shards->field_map[0]);
    if (texts[i].empty()) {
      EXPECT_FALSE(r);
    } else {
      ASSERT_TRUE(r);
      EXPECT_EQ(rec.substr(r->offset, r->length), texts[i]);
    }
    EXPECT_EQ(d->shards->field_map[1], Shards::kKeyField);
    EXPECT_NE(d->SampleName(i).find("sample '" + keys[i] + "'"), std::string::npos);
  }
  EXPECT_EQ(d->shards->entry(1).image_format, ImageFormat::kPng);
  EXPECT_EQ(d->shards->shard_table().size(), 2u);
  EXPECT_EQ(d->shards->shard_table()[0].samples, 2u);
  // Without the txt field, c's record is its image alone.
  auto plain = OpenDataset("mem://b/wds/s-{0..1}.tar", mem_);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(Record(*plain, 2), "JPEG-C");
}

TEST_F(WebDatasetTest, AFolderOfTarsAndAFilter) {
  auto d = OpenDataset("mem://b/wds", mem_, {}, [](const ShardColumns& c) {
    std::vector<uint8_t> keep;
    for (int64_t l : c.label) keep.push_back(l >= 1);
    return Result<std::vector<uint8_t>>(keep);
  });
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_EQ(d->size(), 2u);
  EXPECT_EQ(d->shards->key(0), "a");
  EXPECT_EQ(d->shards->key(1), "b");
  EXPECT_EQ(d->source(1), 1u);
}

TEST_F(WebDatasetTest, ALabelFieldOfAnotherName) {
  mem_.Put("mem://b/other/x.tar", TarBuilder().Add("k.jpg", "J").Add("k.id", "42").End());
  auto d = OpenDataset("mem://b/other/x.tar", mem_, {}, {}, "id");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->label(0), 42);
}

TEST_F(WebDatasetTest, BadTarsNameTheTarAndTheSample) {
  mem_.Put("mem://b/bad/label.tar", TarBuilder().Add("k.jpg", "J").Add("k.cls", "cat").End());
  auto d = OpenDataset("mem://b/bad/label.tar", mem_);
  EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("mem://b/bad/label.tar, sample 'k'"), std::string::npos)
      << d.status().ToString();
  const std::string whole = TarBuilder().Add("k.jpg", std::string(3000, 'j')).End();
  mem_.Put("mem://b/bad/cut.tar", whole.substr(0, 2000));
  d = OpenDataset("mem://b/bad/cut.tar", mem_);
  EXPECT_EQ(d.status().code(), StatusCode::kCorrupt);
  EXPECT_NE(d.status().message().find("mem://b/bad/cut.tar: 'k.jpg' is cut off"), std::string::npos)
      << d.status().ToString();
  d = OpenDataset("mem://b/bad/missing-{0..1}.tar", mem_);
  EXPECT_EQ(d.status().code(), StatusCode::kNotFound);
  EXPECT_NE(d.status().message().find("missing-0.tar"), std::string::npos) << d.status().ToString();
  mem_.Put("mem://b/bad/empty.tar", std::string(1024, '\0'));
  d = OpenDataset("mem://b/bad/empty.tar", mem_);
  EXPECT_EQ(d.status().code(), StatusCode::kNotFound);
  d = OpenDataset("mem://b/bad/x.tar.gz", mem_);
  EXPECT_FALSE(d.ok());
}

}  // namespace
}  // namespace stoker::dataset
