#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include <unistd.h>

#include "stoker/storage/cache/cache_entry.h"
#include "stoker/storage/cache/caching_storage.h"
#include "stoker/storage/testing/memory_storage.h"

namespace stoker::storage::cache {
namespace {

namespace fs = std::filesystem;
using storage::testing::MemoryStorage;

std::span<const uint8_t> U(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
std::string S(const Bytes& b) { return std::string(b.begin(), b.end()); }

TEST(CacheEntry, RoundTripsAndRefusesEveryDamagedByte) {
  const std::string key = CacheKey("s3://b/k.jpg", 100, 50, false);
  EXPECT_EQ(key, "s3://b/k.jpg 100-150");
  EXPECT_EQ(CacheKey("s3://b/k.jpg", 0, 0, true), "s3://b/k.jpg");
  const std::string data = "the bytes of a sample";
  const std::string entry = EncodeEntry(key, U(data));
  ASSERT_EQ(entry.size(), kEntryHeaderSize + key.size() + data.size());
  auto got = DecodeEntry(U(entry), key, "e");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(std::string(got->begin(), got->end()), data);
  EXPECT_EQ(DecodeEntry(U(entry), "s3://b/other", "e").status().code(), StatusCode::kCorrupt);
  for (size_t i = 0; i < entry.size(); ++i) {
    for (uint8_t bit : {uint8_t{1}, uint8_t{0x80}}) {
      std::string bad = entry;
      bad[i] = static_cast<char>(bad[i] ^ bit);
      auto r = DecodeEntry(U(bad), key, "dir/ab/cd");
      ASSERT_FALSE(r.ok()) << "byte " << i;
      EXPECT_NE(r.status().message().find("dir/ab/cd"), std::string::npos);
    }
  }
  for (size_t n = 0; n < entry.size(); ++n) {
    EXPECT_FALSE(DecodeEntry(U(entry.substr(0, n)), key, "e").ok()) << n;
  }
  EXPECT_EQ(EntryPath(key).size(), 33u);
  EXPECT_EQ(EntryPath(key)[2], '/');
  EXPECT_NE(EntryPath(key), EntryPath(key + " "));
}

class CachingStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("stoker_cache_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    inner_ = std::make_shared<MemoryStorage>();
    for (int i = 0; i < kObjects; ++i) inner_->Put(Uri(i), Body(i));
  }
  void TearDown() override { fs::remove_all(dir_); }
  static std::string Uri(int i) { return "mem://b/o" + std::to_string(i); }
  static std::string Body(int i) { return std::string(1000, static_cast<char>('a' + i % 26)) + std::to_string(i); }
  std::shared_ptr<CachingStorage> Open(CacheOptions o) {
    auto s = CachingStorage::Open(inner_, o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? *s : nullptr;
  }
  // Reads every object once, in a fresh random order; the hits it took.
  int64_t Epoch(CachingStorage& s, uint32_t seed) {
    std::vector<int> order(kObjects);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937(seed));
    const int64_t before = s.counters().cache_hits;
    for (int i : order) {
      auto r = s.Read(Uri(i));
      EXPECT_TRUE(r.ok());
      EXPECT_EQ(S(*r), Body(i));
      s.Recycle(std::move(*r));
    }
    s.Flush();
    return s.counters().cache_hits - before;
  }
  static constexpr int kObjects = 200;
  fs::path dir_;
  std::shared_ptr<MemoryStorage> inner_;
};

TEST_F(CachingStorageTest, AMemoryBudgetKeepsItsShareAndEveryEpochHitsIt) {
  // Room for 30% of the objects (each ~1,003 bytes).
  auto s = Open({.memory_bytes = 60 * 1003 + 500});
  EXPECT_EQ(Epoch(*s, 1), 0);
  const int64_t kept = s->counters().cache_memory_bytes;
  EXPECT_LE(kept, 60 * 1003 + 500);
  const int64_t objects_kept = 60;  // the first 60 reads fit, no more
  for (uint32_t e = 2; e < 6; ++e) EXPECT_EQ(Epoch(*s, e), objects_kept) << e;
  const auto c = s->counters();
  EXPECT_EQ(c.cache_hits + c.cache_misses, 5 * kObjects);
  EXPECT_EQ(c.requests, c.cache_misses);  // a hit sends no request
  // Ranges are entries of their own.
  auto r = s->ReadRange(Uri(3), {10, 5});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(S(*r), Body(3).substr(10, 5));
}

TEST_F(CachingStorageTest, TheDiskIsSharedReusedAndWithinItsBudget) {
  const int64_t budget = 100 * (kEntryHeaderSize + 14 + 1003);  // about half
  {
    auto first = Open({.disk_bytes = budget, .dir = dir_.string()});
    EXPECT_EQ(Epoch(*first, 1), 0);
    const int64_t hits = Epoch(*first, 2);
    EXPECT_GE(hits, 95);
    EXPECT_LE(hits, 101);
  }
  EXPECT_EQ(fs::status(dir_).permissions() & fs::perms::all, fs::perms::owner_all);
  int64_t on_disk = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir_)) {
    const std::string rel = e.path().lexically_relative(dir_).string();
    if (e.is_regular_file() && rel.size() == 33) on_disk += static_cast<int64_t>(e.file_size());
  }
  EXPECT_LE(on_disk, budget);
  EXPECT_GT(on_disk, budget / 2);
  // Another storage on the same directory (another process of the node)
  // finds what the first kept.
  auto second = Open({.disk_bytes = budget, .dir = dir_.string()});
  const int64_t hits = Epoch(*second, 3);
  EXPECT_GE(hits, 95);
  EXPECT_EQ(second->counters().cache_disk_bytes, on_disk);
}

TEST_F(CachingStorageTest, ACorruptEntryIsCountedDeletedAndReadAgain) {
  auto s = Open({.disk_bytes = 1 << 20, .dir = dir_.string()});
  Epoch(*s, 1);
  // Damage every entry: flip a byte in its data, cut one short, empty one.
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir_)) {
    const std::string rel = e.path().lexically_relative(dir_).string();
    if (!e.is_regular_file() || rel.size() != 33) continue;
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    if (n % 3 == 0) {
      f.seekp(-3, std::ios::end);
      f.put('!');
      f.close();
    } else {
      f.close();
      fs::resize_file(e.path(), n % 3 == 1 ? 40 : 0);
    }
    ++n;
  }
  ASSERT_EQ(n, kObjects);
  auto again = Open({.disk_bytes = 1 << 20, .dir = dir_.string()});
  EXPECT_EQ(Epoch(*again, 2), 0);  // every read checked, none served
  EXPECT_EQ(again->counters().cache_corrupt, kObjects);
  EXPECT_EQ(Epoch(*again, 3), kObjects);  // kept again, whole
}

TEST_F(CachingStorageTest, BadDirectoriesAndBudgetsAreClearErrors) {
  fs::create_directories(dir_);
  std::ofstream(dir_ / "file") << "x";
  auto s = CachingStorage::Open(inner_, {.disk_bytes = 1000, .dir = (dir_ / "file").string()});
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find((dir_ / "file").string()), std::string::npos);
  s = CachingStorage::Open(inner_, {.memory_bytes = -1});
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(CachingStorageTest, TemporariesOfDeadProcessesAreRemoved) {
  fs::create_directories(dir_ / "tmp");
  // A pid that cannot be running (above the kernel's pid_max).
  std::ofstream(dir_ / "tmp" / "99999999-0") << "half an entry";
  std::ofstream(dir_ / "tmp" / (std::to_string(::getpid()) + "-7")) << "ours";
  auto s = Open({.disk_bytes = 1000, .dir = dir_.string()});
  EXPECT_FALSE(fs::exists(dir_ / "tmp" / "99999999-0"));
  EXPECT_TRUE(fs::exists(dir_ / "tmp" / (std::to_string(::getpid()) + "-7")));
}

}  // namespace
}  // namespace stoker::storage::cache
