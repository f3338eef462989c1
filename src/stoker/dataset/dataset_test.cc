#include "stoker/dataset/dataset.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <sys/stat.h>

#include "stoker/storage/file/file_storage.h"

namespace stoker::dataset {
namespace {
namespace fs = std::filesystem;

class DatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("stoker_dataset_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  void Touch(const std::string& rel, const std::string& content = "x") {
    fs::create_directories((root_ / rel).parent_path());
    std::ofstream(root_ / rel) << content;
  }
  fs::path root_;
  storage::FileStorage storage_;
};

TEST_F(DatasetTest, ImageFolderSortsClassesAndFiles) {
  Touch("dog/b.jpg");
  Touch("dog/a.JPEG");
  Touch("cat/z.png");
  Touch("cat/sub/y.jpg");  // nested files belong to their top-level class
  Touch("cat/notes.txt");  // not an image extension
  Touch("readme.jpg");     // not inside a class folder
  // An empty folder is no class (object stores have no empty folders).
  fs::create_directories(root_ / "empty");
  auto ds = ListImageFolder(root_.string(), storage_);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  EXPECT_EQ(ds->classes, (std::vector<std::string>{"cat", "dog"}));
  ASSERT_EQ(ds->samples.size(), 4u);
  EXPECT_EQ(ds->samples[0].uri, (root_ / "cat/sub/y.jpg").string());
  EXPECT_EQ(ds->samples[1].uri, (root_ / "cat/z.png").string());
  EXPECT_EQ(ds->samples[2].uri, (root_ / "dog/a.JPEG").string());
  EXPECT_EQ(ds->samples[3].uri, (root_ / "dog/b.jpg").string());
  EXPECT_EQ(ds->samples[0].label, 0);
  EXPECT_EQ(ds->samples[3].label, 1);
}

TEST_F(DatasetTest, EmptyFolderIsAnErrorNamingIt) {
  auto ds = ListImageFolder(root_.string(), storage_);
  ASSERT_FALSE(ds.ok());
  EXPECT_NE(ds.status().message().find(root_.string()), std::string::npos);
}

TEST_F(DatasetTest, MissingFolderIsNotFound) {
  auto ds = OpenDataset((root_ / "nope").string(), storage_);
  ASSERT_FALSE(ds.ok());
  EXPECT_EQ(ds.status().code(), StatusCode::kNotFound);
}

TEST_F(DatasetTest, CsvManifestResolvesRelativePaths) {
  Touch("m.csv", "path,label\nimgs/a.jpg,3\n\n\"/abs/b,c.jpg\",1\r\nfile:///x/y.png, 2 \n");
  auto ds = OpenDataset((root_ / "m.csv").string(), storage_);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  ASSERT_EQ(ds->samples.size(), 3u);
  EXPECT_EQ(ds->samples[0].uri, (root_ / "imgs/a.jpg").string());
  EXPECT_EQ(ds->samples[0].label, 3);
  EXPECT_EQ(ds->samples[1].uri, "/abs/b,c.jpg");
  EXPECT_EQ(ds->samples[2].uri, "file:///x/y.png");
  EXPECT_EQ(ds->samples[2].label, 2);
}

TEST_F(DatasetTest, CsvColumnsInAnyOrder) {
  auto ds = ParseCsvManifest("label,extra,path\n7,q,a.jpg\n", "m.csv", "/base", storage_);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  EXPECT_EQ(ds->samples[0].uri, "/base/a.jpg");
  EXPECT_EQ(ds->samples[0].label, 7);
}

TEST_F(DatasetTest, CsvBadLabelNamesTheLine) {
  auto ds = ParseCsvManifest("path,label\na.jpg,1\nb.jpg,cat\n", "m.csv", "/b", storage_);
  ASSERT_FALSE(ds.ok());
  EXPECT_EQ(ds.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(ds.status().message().find("m.csv:3"), std::string::npos) << ds.status().message();
  EXPECT_NE(ds.status().message().find("cat"), std::string::npos);
}

TEST_F(DatasetTest, CsvFieldCountMustMatchTheHeader) {
  // "label,path" then an unquoted comma in the path: taking the first two
  // fields would silently load "b" instead of "b, c.jpg".
  auto more = ParseCsvManifest("label,path\n1,a.jpg\n2,b, c.jpg\n", "m.csv", "/b", storage_);
  ASSERT_FALSE(more.ok());
  EXPECT_EQ(more.status().message(),
            "m.csv:3: expected 2 fields as in the header, got 3 (quote a path that contains a "
            "comma)");
  auto fewer = ParseCsvManifest("path,label,split\na.jpg,1\n", "m.csv", "/b", storage_);
  ASSERT_FALSE(fewer.ok());
  EXPECT_EQ(fewer.status().message(), "m.csv:2: expected 3 fields as in the header, got 2");
}

TEST_F(DatasetTest, CsvNeedsHeader) {
  auto ds = ParseCsvManifest("a.jpg,1\n", "m.csv", "/b", storage_);
  ASSERT_FALSE(ds.ok());
  EXPECT_NE(ds.status().message().find("header"), std::string::npos);
}

TEST_F(DatasetTest, JsonlManifest) {
  auto ds = ParseJsonlManifest(
      "{\"path\": \"a\\u00e9.jpg\", \"label\": 4, \"meta\": {\"k\": [1, \"}\"]}}\n\n"
      "  {\"label\":0,\"path\":\"/abs/b.jpg\"}\n",
      "m.jsonl", "/base", storage_);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  ASSERT_EQ(ds->samples.size(), 2u);
  EXPECT_EQ(ds->samples[0].uri, "/base/a\xc3\xa9.jpg");
  EXPECT_EQ(ds->samples[0].label, 4);
  EXPECT_EQ(ds->samples[1].uri, "/abs/b.jpg");
}

TEST_F(DatasetTest, JsonlErrorsNameTheLine) {
  for (const char* bad : {"{\"path\": \"a.jpg\"}", "{\"label\": 1}", "[1,2]",
                          "{\"path\": \"a.jpg\", \"label\": -1}", "{\"path\": 3, \"label\": 1}",
                          "{\"path\": \"a.jpg\", \"label\": 1"}) {
    auto ds = ParseJsonlManifest(std::string("{\"path\":\"ok.jpg\",\"label\":0}\n") + bad,
                                 "m.jsonl", "/b", storage_);
    ASSERT_FALSE(ds.ok()) << bad;
    EXPECT_NE(ds.status().message().find("m.jsonl:2"), std::string::npos)
        << bad << " -> " << ds.status().message();
  }
}

TEST_F(DatasetTest, JsonlByteOrderMarkAndCrlf) {
  auto ds = ParseJsonlManifest(
      "\xEF\xBB\xBF{\"path\": \"a.jpg\", \"label\": 1}\r\n\r\n{\"path\": \"b,c.jpg\", \"label\": 2}\r\n",
      "m.jsonl", "/base", storage_);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  ASSERT_EQ(ds->samples.size(), 2u);
  EXPECT_EQ(ds->samples[0].uri, "/base/a.jpg");
  EXPECT_EQ(ds->samples[1].uri, "/base/b,c.jpg");
  EXPECT_EQ(ds->samples[1].label, 2);
  // A BOM is only a BOM at the start of the file.
  auto mid = ParseJsonlManifest("{\"path\": \"a.jpg\", \"label\": 1}\n\xEF\xBB\xBF{}\n", "m.jsonl",
                                "/base", storage_);
  ASSERT_FALSE(mid.ok());
  EXPECT_NE(mid.status().message().find("m.jsonl:2"), std::string::npos) << mid.status().message();
}

TEST_F(DatasetTest, JsonlTextAfterTheObjectIsAnError) {
  // Two objects on one line (a lost newline) must not lose the second.
  for (const char* bad : {"{\"path\": \"a.jpg\", \"label\": 1}{\"path\": \"b.jpg\", \"label\": 2}",
                          "{\"path\": \"a.jpg\", \"label\": 1} x"}) {
    auto ds = ParseJsonlManifest(bad, "m.jsonl", "/b", storage_);
    ASSERT_FALSE(ds.ok()) << bad;
    EXPECT_EQ(ds.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(ds.status().message().find("m.jsonl:1: unexpected text after the JSON object"),
              std::string::npos)
        << ds.status().message();
  }
  EXPECT_TRUE(ParseJsonlManifest("{\"path\": \"a.jpg\", \"label\": 1}  \t\r\n", "m.jsonl", "/b",
                                 storage_)
                  .ok());
}

TEST_F(DatasetTest, CsvByteOrderMarkCrlfAndQuotedCommas) {
  auto ds = ParseCsvManifest("\xEF\xBB\xBFpath,label\r\n\"x, y.jpg\",3\r\n\r\n\"q\"\"uote.jpg\",4\r\n",
                             "m.csv", "/base", storage_);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  ASSERT_EQ(ds->samples.size(), 2u);
  EXPECT_EQ(ds->samples[0].uri, "/base/x, y.jpg");
  EXPECT_EQ(ds->samples[0].label, 3);
  EXPECT_EQ(ds->samples[1].uri, "/base/q\"uote.jpg");
}

TEST_F(DatasetTest, ImageFolderDoesNotFollowASymlinkLoop) {
  Touch("c/a.jpg");
  Touch("c/sub/b.jpg");
  fs::create_directory_symlink("..", root_ / "c/sub/up");  // back to c/
  fs::create_directory_symlink(root_ / "c/sub", root_ / "c/alias");  // not a loop: listed twice
  auto ds = ListImageFolder(root_.string(), storage_);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  std::vector<std::string> uris;
  for (const auto& s : ds->samples) uris.push_back(s.uri.substr(root_.string().size()));
  EXPECT_EQ(uris, (std::vector<std::string>{"/c/a.jpg", "/c/alias/b.jpg", "/c/sub/b.jpg"}));
}

TEST_F(DatasetTest, ImageFolderKeepsNonUtf8NamesAsBytes) {
  const std::string name = "caf\xE9.jpg";  // Latin-1, not valid UTF-8
  Touch("c/" + name, "bytes");
  auto ds = ListImageFolder(root_.string(), storage_);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  ASSERT_EQ(ds->samples.size(), 1u);
  EXPECT_EQ(ds->samples[0].uri, (root_ / "c" / name).string());
  auto bytes = storage_.Read(ds->samples[0].uri);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  EXPECT_EQ(bytes->size(), 5u);
}

TEST_F(DatasetTest, FileStorageReadsExactBytesAndNamesMissingFiles) {
  std::string content("\x00\x01\xff binary", 10);
  Touch("f.bin", content);
  auto bytes = storage_.Read((root_ / "f.bin").string());
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(std::string(bytes->begin(), bytes->end()), content);
  auto via_uri = storage_.Read("file://" + (root_ / "f.bin").string());
  ASSERT_TRUE(via_uri.ok());
  EXPECT_EQ(via_uri->size(), content.size());
  auto missing = storage_.Read((root_ / "missing.jpg").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("missing.jpg"), std::string::npos);
  auto dir = storage_.Read(root_.string());
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.status().message().find("directory"), std::string::npos);
  // Neither hangs: a FIFO with no writer, a device that never ends.
  ASSERT_EQ(::mkfifo((root_ / "fifo.jpg").c_str(), 0644), 0);
  auto fifo = storage_.Read((root_ / "fifo.jpg").string());
  ASSERT_FALSE(fifo.ok());
  EXPECT_EQ(fifo.status().message(), (root_ / "fifo.jpg").string() + ": not a regular file (a FIFO)");
  fs::create_symlink("/dev/zero", root_ / "zero.jpg");
  auto zero = storage_.Read((root_ / "zero.jpg").string());
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(zero.status().message().find("not a regular file (a character device)"),
            std::string::npos);
  auto c = storage_.counters();
  EXPECT_EQ(c.bytes_read, 20);
}

TEST_F(DatasetTest, FolderFieldsGroupFilesByNameUpToTheFirstDot) {
  Touch("cat/a.jpg");
  Touch("cat/a.txt");
  Touch("cat/a.seg.png");
  Touch("cat/b.png");  // the image of its group: "png" is no field here
  Touch("cat/b.txt");
  Touch("cat/c.txt");  // a field without an image: no sample
  Touch("dog/d.jpeg");
  const std::vector<FieldSpec> fields = {{"txt", FieldSpec::Kind::kAuto},
                                         {"seg.png", FieldSpec::Kind::kAuto}};
  auto ds = ListImageFolder(root_.string(), storage_, fields);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  ASSERT_EQ(ds->fields.size(), 2u);
  EXPECT_EQ(ds->fields[0].kind, FieldSpec::Kind::kText);
  EXPECT_EQ(ds->fields[1].kind, FieldSpec::Kind::kMask);
  EXPECT_TRUE(ds->fields[0].file && ds->fields[1].file);
  ASSERT_EQ(ds->samples.size(), 3u);
  EXPECT_EQ(ds->samples[0].uri, (root_ / "cat/a.jpg").string());
  EXPECT_EQ(ds->samples[0].fields[0], (root_ / "cat/a.txt").string());
  EXPECT_EQ(ds->samples[0].fields[1], (root_ / "cat/a.seg.png").string());
  EXPECT_EQ(ds->samples[1].uri, (root_ / "cat/b.png").string());
  EXPECT_EQ(ds->samples[1].fields[0], (root_ / "cat/b.txt").string());
  EXPECT_FALSE(ds->samples[1].fields[1].has_value());
  EXPECT_EQ(ds->samples[2].uri, (root_ / "dog/d.jpeg").string());
  EXPECT_FALSE(ds->samples[2].fields[0].has_value());
  EXPECT_EQ(ds->samples[2].label, 1);
}

TEST_F(DatasetTest, ManifestFieldKindsFromTheValues) {
  using K = FieldSpec::Kind;
  auto csv = ParseCsvManifest("path,label,i,f,t,p\na.jpg,0,1,1,x,q.npy\nb.jpg,1,-2,2.5,3,\n",
                              "m.csv", "/b", storage_,
                              {{"i", K::kAuto}, {"f", K::kAuto}, {"t", K::kAuto}, {"p", K::kNpy}});
  ASSERT_TRUE(csv.ok()) << csv.status().ToString();
  EXPECT_EQ(csv->fields[0].kind, K::kInt);
  EXPECT_EQ(csv->fields[1].kind, K::kFloat);
  EXPECT_EQ(csv->fields[2].kind, K::kText);
  EXPECT_EQ(csv->fields[3].kind, K::kNpy);
  EXPECT_TRUE(csv->fields[3].file);
  EXPECT_EQ(csv->samples[0].fields[3], "/b/q.npy");
  EXPECT_FALSE(csv->samples[1].fields[3].has_value());  // an empty path: missing
  EXPECT_EQ(csv->samples[1].fields[1], "2.5");

  auto jsonl = ParseJsonlManifest(
      "{\"path\": \"a.jpg\", \"label\": 0, \"s\": \"12\", \"n\": 3, \"o\": {\"k\": [1]}, \"m\": 1}\n"
      "{\"path\": \"b.jpg\", \"label\": 1, \"s\": \"x\\u00e9\", \"n\": null, \"o\": 2, \"m\": \"one\"}\n",
      "m.jsonl", "/b", storage_,
      {{"s", K::kAuto}, {"n", K::kAuto}, {"o", K::kAuto}, {"m", K::kAuto}});
  ASSERT_TRUE(jsonl.ok()) << jsonl.status().ToString();
  EXPECT_EQ(jsonl->fields[0].kind, K::kText);  // JSON strings stay text, digits or not
  EXPECT_EQ(jsonl->fields[1].kind, K::kInt);
  EXPECT_EQ(jsonl->fields[2].kind, K::kJson);
  EXPECT_EQ(jsonl->fields[3].kind, K::kJson);  // a number and a string: JSON text
  EXPECT_EQ(jsonl->samples[1].fields[0], "x\xc3\xa9");
  EXPECT_FALSE(jsonl->samples[1].fields[1].has_value());  // null
  EXPECT_EQ(jsonl->samples[0].fields[2], "{\"k\": [1]}");
  EXPECT_EQ(jsonl->samples[1].fields[3], "\"one\"");
}

TEST_F(DatasetTest, ManifestFieldErrorsNameTheLine) {
  using K = FieldSpec::Kind;
  auto bad_int = ParseCsvManifest("path,label,n\na.jpg,0,1\nb.jpg,1,1.5\n", "m.csv", "/b",
                                  storage_, {{"n", K::kInt}});
  ASSERT_FALSE(bad_int.ok());
  EXPECT_EQ(bad_int.status().message(), "m.csv:3: field 'n' (int): '1.5' is not an integer");
  auto not_text = ParseJsonlManifest("{\"path\": \"a.jpg\", \"label\": 0, \"t\": [1]}\n", "m.jsonl",
                                     "/b", storage_, {{"t", K::kText}});
  ASSERT_FALSE(not_text.ok());
  EXPECT_EQ(not_text.status().message(), "m.jsonl:1: field 't' (text): [1] is not a string");
  auto no_col = ParseCsvManifest("path,label\na.jpg,0\n", "m.csv", "/b", storage_,
                                 {{"caption", K::kAuto}});
  ASSERT_FALSE(no_col.ok());
  EXPECT_EQ(no_col.status().message(),
            "m.csv:1: no column 'caption' for field 'caption' (columns: path, label)");
}

}  // namespace
}  // namespace stoker::dataset
