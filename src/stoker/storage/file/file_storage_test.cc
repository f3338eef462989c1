#include "stoker/storage/file/file_storage.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace stoker::storage {
namespace {

namespace fs = std::filesystem;

class FileStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("stoker_file_storage_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const Bytes& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    return path;
  }

  static Bytes Random(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    Bytes b(n);
    for (auto& v : b) v = static_cast<uint8_t>(rng());
    return b;
  }

  fs::path dir_;
};

// Exact bytes for every size, whether the recycled buffer handed to the read
// is larger, smaller or exactly as large as the file (buffers are reused
// across reads of different files).
TEST_F(FileStorageTest, ReadsExactBytesWithRecycledBuffers) {
  FileStorage storage;
  const size_t sizes[] = {0, 1, 4096, 117 * 1024, 3, 200 * 1024, 117 * 1024, 0, 65536, 65537};
  for (int round = 0; round < 3; ++round) {
    uint32_t seed = 100 * round;
    for (size_t n : sizes) {
      const Bytes want = Random(n, ++seed);
      const std::string path = Write(std::to_string(seed) + ".bin", want);
      Result<Bytes> got = storage.Read(path);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_EQ(*got, want) << path << " (" << n << " bytes)";
      storage.Recycle(std::move(got).value());
    }
  }
  EXPECT_EQ(storage.counters().requests, 30);
}

// A FIFO (no writer: opening it would block) and a device (never ends) are
// refused, naming the path, without reading.
TEST_F(FileStorageTest, RefusesFilesThatAreNotRegular) {
  const std::string fifo = (dir_ / "pipe.jpg").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  FileStorage storage;
  Result<Bytes> got = storage.Read(fifo);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().ToString().find(fifo + ": not a regular file (a FIFO)"), std::string::npos)
      << got.status().ToString();
  got = storage.Read("/dev/zero");
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().ToString().find("a character device"), std::string::npos)
      << got.status().ToString();
}

TEST_F(FileStorageTest, ErrorsNameThePathAndTheReason) {
  FileStorage storage;
  const std::string missing = (dir_ / "missing.jpg").string();
  Result<Bytes> r = storage.Read(missing);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().ToString().find(missing), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().ToString().find("No such file"), std::string::npos) << r.status().ToString();

  const std::string dir = (dir_ / "dir.jpg").string();
  fs::create_directories(dir);
  r = storage.Read(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().ToString().find(dir), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().ToString().find("directory"), std::string::npos) << r.status().ToString();
}

// The names in `dir`, sorted.
std::vector<std::string> Names(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A writer writes to a hidden temporary file beside the target (created
// with its missing folders), which Commit renames over the target: until
// then the target is as it was.
TEST_F(FileStorageTest, WriterRenamesATemporaryFileIntoPlaceOnCommit) {
  FileStorage storage;
  const fs::path target = dir_ / "new" / "sub" / "shard-000000.stoker";
  const std::string uri = "file://" + target.string();
  const Bytes big = Random((3 << 20) + 5, 7);  // larger than the writer's buffer
  auto w = storage.OpenWriter(uri, {});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_TRUE((*w)->Append(std::string_view("head")).ok());
  ASSERT_TRUE((*w)->Append(std::span<const uint8_t>(big.data(), big.size())).ok());
  ASSERT_TRUE((*w)->Append(std::string_view("tail")).ok());
  EXPECT_EQ((*w)->size(), static_cast<int64_t>(big.size()) + 8);
  const auto during = Names(target.parent_path());
  ASSERT_EQ(during.size(), 1u);
  EXPECT_EQ(during[0].rfind(".shard-000000.stoker.tmp-", 0), 0u) << during[0];
  EXPECT_FALSE(fs::exists(target));
  ASSERT_TRUE((*w)->Commit().ok());
  EXPECT_EQ(Names(target.parent_path()), std::vector<std::string>{"shard-000000.stoker"});
  const std::string got = Slurp(target);
  EXPECT_TRUE(got == "head" + std::string(big.begin(), big.end()) + "tail") << got.size();
  struct stat st;
  ASSERT_EQ(::stat(target.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_EQ((*w)->Commit().code(), StatusCode::kInvalidArgument);  // once
  // A second writer replaces the object whole.
  const std::string plain = target.string();  // a plain path works as well
  ASSERT_TRUE(storage.Put(plain, std::span<const uint8_t>(big.data(), 10)).ok());
  EXPECT_EQ(Slurp(target), std::string(big.begin(), big.begin() + 10));
}

TEST_F(FileStorageTest, AbortAndAnUncommittedWriterLeaveTheEarlierFile) {
  FileStorage storage;
  const std::string path = Write("index.stoker", Random(100, 1));
  {
    auto w = storage.OpenWriter(path, {});
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(std::string_view("new bytes")).ok());
    ASSERT_TRUE((*w)->Abort().ok());
    EXPECT_TRUE((*w)->Abort().ok());
    EXPECT_FALSE((*w)->Append(std::string_view("x")).ok());
  }
  {
    auto w = storage.OpenWriter(path, {});
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(std::string_view("new bytes")).ok());
  }  // dropped uncommitted
  EXPECT_EQ(Names(dir_), std::vector<std::string>{"index.stoker"});
  const Bytes earlier = Random(100, 1);
  EXPECT_EQ(Slurp(path), std::string(earlier.begin(), earlier.end()));
}

TEST_F(FileStorageTest, WriteErrorsNameTheFile) {
  FileStorage storage;
  const std::string file = Write("plain", Random(3, 2));
  // A folder where a file is: its parent cannot be made.
  auto w = storage.OpenWriter(file + "/index.stoker", {});
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find(file), std::string::npos) << w.status().ToString();
  // A folder, not a file.
  w = storage.OpenWriter((dir_ / "folder/").string(), {});
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), StatusCode::kInvalidArgument);
  // A target that is a folder: the rename at Commit fails, naming it, and
  // leaves no temporary file.
  fs::create_directories(dir_ / "taken" / "inside");
  w = storage.OpenWriter((dir_ / "taken").string(), {});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_TRUE((*w)->Append(std::string_view("x")).ok());
  Status st = (*w)->Commit();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find((dir_ / "taken").string()), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("cannot rename into place"), std::string::npos) << st.ToString();
  EXPECT_EQ(Names(dir_), (std::vector<std::string>{"plain", "taken"}));
}

TEST_F(FileStorageTest, DeleteRemovesAndAMissingFileIsFine) {
  FileStorage storage;
  const std::string path = Write("old.stoker", Random(3, 3));
  ASSERT_TRUE(storage.Delete("file://" + path).ok());
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(storage.Delete(path).ok());
  EXPECT_TRUE(storage.Delete((dir_ / "no" / "such" / "dir").string()).ok());
  fs::create_directories(dir_ / "a_dir");
  Status st = storage.Delete((dir_ / "a_dir").string());
  ASSERT_FALSE(st.ok());  // not a file: refused, named
  EXPECT_NE(st.message().find((dir_ / "a_dir").string()), std::string::npos) << st.ToString();
}

}  // namespace
}  // namespace stoker::storage
