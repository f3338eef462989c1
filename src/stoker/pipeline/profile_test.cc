// The pass's meters and the profile against storages whose limit is known
// by construction (the fault-injecting wrapper of src/stoker/storage/testing
// over an in-memory store, registered under a scheme of the test's own):
// the bottleneck named, the fault paths counted. No assertion on time.
#include <gtest/gtest.h>
#include <jpeglib.h>

#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "stoker/loader.h"
#include "stoker/storage/registry.h"
#include "stoker/storage/testing/fault_storage.h"
#include "stoker/storage/testing/memory_storage.h"

namespace stoker {
namespace {

using storage::testing::FaultRule;
using storage::testing::FaultStorage;
using storage::testing::MemoryStorage;

std::string Jpeg(int w, int h, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
  for (auto& p : px) p = static_cast<uint8_t>(rng());
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* out = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &out, &size);
  c.image_width = static_cast<JDIMENSION>(w);
  c.image_height = static_cast<JDIMENSION>(h);
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = &px[static_cast<size_t>(c.next_scanline) * w * 3];
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  std::string bytes(reinterpret_cast<char*>(out), size);
  jpeg_destroy_compress(&c);
  free(out);
  return bytes;
}

constexpr int kImages = 48;

// A fault storage over 48 noisy 96 x 96 JPEGs (about 20 KB each) in two
// classes, opened by Loader::Open under `scheme`.
std::shared_ptr<FaultStorage> Register(const std::string& scheme) {
  auto mem = std::make_shared<MemoryStorage>();
  for (int i = 0; i < kImages; ++i) {
    char key[64];
    std::snprintf(key, sizeof key, "%s://ds/c%d/%03d.jpg", scheme.c_str(), i % 2, i);
    mem->Put(key, Jpeg(96, 96, static_cast<unsigned>(i)));
  }
  auto fault = std::make_shared<FaultStorage>(mem);
  storage::RegisterStorage(scheme, [fault](const std::string&, const storage::StorageOptions&)
                                       -> Result<std::shared_ptr<storage::Storage>> {
    return std::shared_ptr<storage::Storage>(fault);
  });
  return fault;
}

LoaderOptions Options(const std::string& scheme) {
  LoaderOptions o;
  o.uri = scheme + "://ds/";
  o.batch_size = 8;
  o.threads = 2;
  o.transform.size = 16;
  o.shuffle = true;
  o.lookahead = false;
  return o;
}

struct Outcome {
  int64_t samples = 0;
  ProfileReport profile;
  LoaderStats stats;
};

Outcome Drain(const LoaderOptions& o) {
  auto loader = Loader::Open(o);
  EXPECT_TRUE(loader.ok()) << loader.status().ToString();
  Outcome out;
  if (!loader.ok()) return out;
  while (true) {
    auto b = (*loader)->Next();
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    if (!b.ok() || !b->has_value()) break;
    out.samples += (*b)->size();
  }
  out.profile = (*loader)->Profile();
  out.stats = (*loader)->stats();
  return out;
}

double ShareSum(const ProfileReport& p) {
  double sum = 0;
  for (const auto& s : p.stages) sum += s.wait_share;
  return sum;
}

TEST(ProfilePipeline, ALinkOf200KBPerSecondIsFetchBound) {
  auto fault = Register("bwtest");
  fault->SetBandwidth(200'000);  // ~10 images/s; decoding 16 px crops is ~1000x faster
  Outcome r = Drain(Options("bwtest"));
  EXPECT_EQ(r.samples, kImages);
  EXPECT_EQ(r.profile.bottleneck, "fetch") << r.profile.summary;
  EXPECT_NEAR(ShareSum(r.profile), 1.0, 1e-9);
  EXPECT_GT(fault->counts().delayed, 0);
}

TEST(ProfilePipeline, LatencyWithTwoRequestsInFlightIsFetchBoundAndCapped) {
  auto fault = Register("lattest");
  fault->AddRule(FaultRule{.latency = std::chrono::milliseconds(40)});
  LoaderOptions o = Options("lattest");
  o.max_in_flight = 2;
  Outcome r = Drain(o);
  EXPECT_EQ(r.samples, kImages);
  EXPECT_EQ(r.profile.bottleneck, "fetch") << r.profile.summary;
  EXPECT_EQ(r.profile.max_in_flight, 2);
  EXPECT_GT(r.profile.io_mean_in_flight, 0);
  EXPECT_LE(r.profile.io_mean_in_flight, 2.0);
  // Every read waited the injected 40 ms at least.
  EXPECT_GE(r.profile.io_latency_p50_ms, 40);
  for (const auto& q : r.stats.queues) {
    if (q.name == "in_flight") {
      EXPECT_EQ(q.capacity, 2);
    }
  }
}

TEST(ProfilePipeline, InjectedErrorsAndCutBodiesAreSkippedAndCountedByKind) {
  auto fault = Register("errtest");
  // Samples 003 and 017: unavailable storage would end the pass, so inject
  // per-sample errors: an I/O error, and a body cut to 100 bytes (corrupt).
  fault->AddRule(FaultRule{.uri_contains = "/003.jpg", .error = IOError("injected")});
  fault->AddRule(FaultRule{.uri_contains = "/017.jpg", .cut_to = 100});
  Outcome r = Drain(Options("errtest"));
  EXPECT_EQ(r.samples, kImages - 2);
  EXPECT_EQ(r.stats.samples_skipped, 2);
  int64_t by_kind = 0;
  for (const auto& [kind, n] : r.stats.errors_by_kind) by_kind += n;
  EXPECT_EQ(by_kind, 2);
  EXPECT_EQ(fault->counts().errors, 1);
  EXPECT_EQ(fault->counts().cut, 1);
  // Fetch counts only reads that returned bytes; decode only images made.
  std::map<std::string, int64_t> items;
  for (const auto& s : r.stats.stages) items[s.name] = s.items;
  EXPECT_EQ(items["fetch"], kImages - 1);
  EXPECT_EQ(items["decode"], kImages - 2);
}

}  // namespace
}  // namespace stoker
