// The Loader end to end through the C++ API: coverage, determinism across
// thread counts, restart mid-epoch, bad files. Also what the sanitizer
// builds (make test-asan, test-tsan) run the pipeline's threads through.
#include "stoker/loader.h"

#include <gtest/gtest.h>
#include <jpeglib.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

namespace stoker {
namespace {
namespace fs = std::filesystem;

std::vector<uint8_t> EncodeJpeg(int w, int h, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        px[(static_cast<size_t>(y) * w + x) * 3 + c] =
            static_cast<uint8_t>((x * (c + 1) + y * (3 - c) + rng() % 32) & 0xFF);
  jpeg_compress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&cinfo);
  unsigned char* out = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &out, &size);
  cinfo.image_width = static_cast<JDIMENSION>(w);
  cinfo.image_height = static_cast<JDIMENSION>(h);
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 90, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = &px[static_cast<size_t>(cinfo.next_scanline) * w * 3];
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  std::vector<uint8_t> bytes(out, out + size);
  jpeg_destroy_compress(&cinfo);
  free(out);
  return bytes;
}

class LoaderTest : public ::testing::Test {
 protected:
  static constexpr int kImages = 23;

  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("stoker_loader_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    for (int i = 0; i < kImages; ++i) {
      fs::path dir = root_ / ("class" + std::to_string(i % 3));
      fs::create_directories(dir);
      auto bytes = EncodeJpeg(40 + (i * 7) % 50, 30 + (i * 11) % 60, static_cast<unsigned>(i));
      std::ofstream(dir / ("img" + std::to_string(100 + i) + ".jpg"), std::ios::binary)
          .write(reinterpret_cast<const char*>(bytes.data()),
                 static_cast<std::streamsize>(bytes.size()));
    }
  }
  void TearDown() override { fs::remove_all(root_); }

  LoaderOptions Options(int threads) const {
    LoaderOptions o;
    o.uri = root_.string();
    o.batch_size = 4;
    o.shuffle = true;
    o.seed = 5;
    o.threads = threads;
    o.prefetch_batches = 2;
    o.transform.kind = TransformOptions::Kind::kTrain;
    o.transform.size = 16;
    return o;
  }

  struct Epoch {
    std::vector<int64_t> indices;
    std::vector<uint8_t> pixels;
  };

  static Epoch Run(Loader& loader, int64_t epoch, int64_t max_batches = -1) {
    Epoch e;
    loader.SetEpoch(epoch);
    loader.Start();
    for (int64_t b = 0; max_batches < 0 || b < max_batches; ++b) {
      auto batch = loader.Next();
      EXPECT_TRUE(batch.ok()) << batch.status().ToString();
      if (!batch.ok() || !batch->has_value()) break;
      const Batch& x = **batch;
      e.indices.insert(e.indices.end(), x.indices_data(), x.indices_data() + x.size());
      const auto* p = static_cast<const uint8_t*>(x.images_data());
      e.pixels.insert(e.pixels.end(), p, p + x.size() * 3 * 16 * 16);
    }
    return e;
  }

  fs::path root_;
};

TEST_F(LoaderTest, EverySampleOncePerEpochAndSameBatchesForAnyThreadCount) {
  std::vector<Epoch> runs;
  for (int threads : {1, 2, 5}) {
    auto loader = Loader::Open(Options(threads));
    ASSERT_TRUE(loader.ok()) << loader.status().ToString();
    EXPECT_EQ((*loader)->num_batches(), 6);
    runs.push_back(Run(**loader, 3));
    std::vector<int64_t> sorted = runs.back().indices;
    std::sort(sorted.begin(), sorted.end());
    ASSERT_EQ(sorted.size(), static_cast<size_t>(kImages));
    for (int i = 0; i < kImages; ++i) EXPECT_EQ(sorted[i], i);
  }
  for (size_t r = 1; r < runs.size(); ++r) {
    EXPECT_EQ(runs[r].indices, runs[0].indices);
    EXPECT_TRUE(runs[r].pixels == runs[0].pixels) << "thread count changed the pixels";
  }
}

TEST_F(LoaderTest, RestartMidEpochAndStopAreClean) {
  auto loader = Loader::Open(Options(3));
  ASSERT_TRUE(loader.ok());
  Epoch part = Run(**loader, 0, 2);  // leave with batches still in flight
  EXPECT_EQ(part.indices.size(), 8u);
  Epoch full = Run(**loader, 0);
  EXPECT_EQ(full.indices.size(), static_cast<size_t>(kImages));
  EXPECT_TRUE(std::equal(part.indices.begin(), part.indices.end(), full.indices.begin()));
  (*loader)->Stop();
  auto after = (*loader)->Next();
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(after->has_value());
}

TEST_F(LoaderTest, BadFilesAreSkippedAndCountedOrRaised) {
  std::ofstream(root_ / "class0" / "zz_bad.jpg") << "not a jpeg";
  {
    auto loader = Loader::Open(Options(2));
    ASSERT_TRUE(loader.ok());
    Epoch e = Run(**loader, 0);
    EXPECT_EQ(e.indices.size(), static_cast<size_t>(kImages));
    auto stats = (*loader)->stats();
    EXPECT_EQ(stats.samples_skipped, 1);
    EXPECT_EQ(stats.samples_delivered, kImages);
    EXPECT_EQ(stats.errors_by_kind["unsupported"], 1);
  }
  LoaderOptions o = Options(2);
  o.on_error = OnError::kRaise;
  auto loader = Loader::Open(o);
  ASSERT_TRUE(loader.ok());
  (*loader)->Start();
  bool raised = false;
  for (int b = 0; b < 10; ++b) {
    auto batch = (*loader)->Next();
    if (!batch.ok()) {
      raised = true;
      EXPECT_NE(batch.status().message().find("zz_bad.jpg"), std::string::npos)
          << batch.status().ToString();
      break;
    }
    if (!batch->has_value()) break;
  }
  EXPECT_TRUE(raised);
}

TEST_F(LoaderTest, ABatchOfOnlyBadFilesIsNotDelivered) {
  // Unshuffled, batch 4: listing positions 0-3 are class0's first four
  // files; make them all bad. No empty batch comes out, nothing is lost.
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(root_ / "class0")) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (int i = 0; i < 4; ++i) std::ofstream(files[i], std::ios::trunc) << "bad";
  LoaderOptions o = Options(2);
  o.shuffle = false;
  auto loader = Loader::Open(o);
  ASSERT_TRUE(loader.ok());
  (*loader)->Start();
  std::vector<int64_t> indices;
  int batches = 0;
  while (true) {
    auto batch = (*loader)->Next();
    ASSERT_TRUE(batch.ok()) << batch.status().ToString();
    if (!batch->has_value()) break;
    EXPECT_GT((*batch)->size(), 0);
    indices.insert(indices.end(), (*batch)->indices_data(),
                   (*batch)->indices_data() + (*batch)->size());
    ++batches;
  }
  std::vector<int64_t> want;
  for (int64_t i = 4; i < kImages; ++i) want.push_back(i);
  EXPECT_EQ(indices, want);
  EXPECT_EQ(batches, 5);  // of 6: the first held only bad files
  auto stats = (*loader)->stats();
  EXPECT_EQ(stats.samples_skipped, 4);
  EXPECT_EQ(stats.batches_delivered, 5);
  // The state after the last batch is the end of the epoch.
  EXPECT_EQ((*loader)->state().position, 0);
  EXPECT_EQ((*loader)->state().epoch, 1);
}

}  // namespace
}  // namespace stoker
