#include "stoker/storage/file/file_storage.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

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

}  // namespace
}  // namespace stoker::storage
