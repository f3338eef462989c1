// Convert into a local folder and into an s3:// prefix (the loopback object
// server of storage/testing, which takes S3's PutObject, multipart uploads
// and DeleteObject): the same bytes either way, the index written last by
// one PUT, shards larger than part_size uploaded in parts of exactly that
// size, a failed or stopped conversion leaving no index and no open upload,
// what an earlier conversion left cleared first (and nothing else), and a
// shard dataset never converted into its own prefix.
#include "stoker/convert.h"

#include <gtest/gtest.h>
#include <jpeglib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "stoker/decode/testing/test_jpeg.h"
#include "stoker/loader.h"
#include "stoker/storage/testing/object_server.h"

namespace stoker {
namespace {

namespace fs = std::filesystem;
using storage::testing::ObjectServer;

std::vector<uint8_t> EncodeJpeg(int w, int h, unsigned seed, unsigned noise) {
  return decode::testing::NoisyGradientJpeg(w, h, seed, noise);
}

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<std::string> Names(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

size_t Count(const std::vector<std::string>& log, const std::string& part) {
  return static_cast<size_t>(std::count_if(log.begin(), log.end(), [&](const std::string& l) {
    return l.find(part) != std::string::npos;
  }));
}

class ConvertTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("stoker_convert_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    ASSERT_TRUE(server_.ok());
  }
  void TearDown() override { fs::remove_all(root_); }

  // A folder of `n` images in three classes; `big`: 1024 x 1024 of pure
  // noise (about 1.5 MB each), else small ones.
  std::string Folder(const std::string& name, int n, bool big) {
    for (int i = 0; i < n; ++i) {
      const fs::path dir = root_ / name / ("class" + std::to_string(i % 3));
      fs::create_directories(dir);
      const auto bytes = big ? EncodeJpeg(1024, 1024, static_cast<unsigned>(i), 256)
                             : EncodeJpeg(40 + (i * 7) % 50, 30 + (i * 11) % 60,
                                          static_cast<unsigned>(i), 32);
      std::ofstream(dir / ("img" + std::to_string(100 + i) + ".jpg"), std::ios::binary)
          .write(reinterpret_cast<const char*>(bytes.data()),
                 static_cast<std::streamsize>(bytes.size()));
    }
    return (root_ / name).string();
  }

  ConvertOptions Options(const std::string& src, const std::string& dst) const {
    ConvertOptions c;
    c.src = src;
    c.dst = dst;
    c.threads = 2;
    c.endpoint_url = server_.origin();
    c.io.max_attempts = 2;
    return c;
  }

  // Every object of a local conversion is at `prefix` (a server path,
  // "/bkt/out/") with the same bytes, and nothing else is.
  void ExpectSameObjects(const fs::path& local, const std::string& prefix) {
    for (const std::string& name : Names(local)) {
      SCOPED_TRACE(name);
      const auto remote = server_.Get(prefix + name);
      ASSERT_TRUE(remote.has_value());
      EXPECT_TRUE(*remote == Slurp(local / name)) << remote->size() << " bytes";
    }
    EXPECT_FALSE(server_.Get(prefix + "shard-" + std::to_string(Names(local).size()) + ".stoker"));
  }

  // The indices and pixels of one epoch (sample order, a fixed crop).
  struct Epoch {
    std::vector<int64_t> indices, labels;
    std::vector<uint8_t> pixels;
  };
  Epoch Read(const std::string& uri) {
    LoaderOptions o;
    o.uri = uri;
    o.endpoint_url = server_.origin();
    o.batch_size = 5;
    o.threads = 2;
    o.order = LoaderOptions::Order::kSample;
    o.shuffle = true;
    o.seed = 3;
    o.transform.kind = TransformOptions::Kind::kVal;
    o.transform.size = 16;
    o.on_error = OnError::kRaise;
    Epoch e;
    auto loader = Loader::Open(o);
    EXPECT_TRUE(loader.ok()) << loader.status().ToString();
    if (!loader.ok()) return e;
    (*loader)->Start();
    for (;;) {
      auto batch = (*loader)->Next();
      EXPECT_TRUE(batch.ok()) << batch.status().ToString();
      if (!batch.ok() || !batch->has_value()) break;
      const Batch& x = **batch;
      e.indices.insert(e.indices.end(), x.indices_data(), x.indices_data() + x.size());
      e.labels.insert(e.labels.end(), x.labels_data(), x.labels_data() + x.size());
      const auto* p = static_cast<const uint8_t*>(x.images_data());
      e.pixels.insert(e.pixels.end(), p, p + x.size() * 3 * 16 * 16);
    }
    return e;
  }

  fs::path root_;
  ObjectServer server_;
};

TEST_F(ConvertTest, ToS3WritesTheLocalConversionsBytesAndTheIndexLast) {
  const std::string src = Folder("src", 23, /*big=*/false);
  ConvertOptions local = Options(src, (root_ / "local").string());
  local.shard_size = 16 << 10;  // several shards
  auto a = Convert(local);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_GT(a->shards, 1);
  ConvertOptions remote = local;
  remote.dst = "s3://bkt/out/";
  int calls = 0;
  auto b = Convert(remote, [&](const ConvertProgress&) { return ++calls > 0; });
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_GE(calls, 1);
  EXPECT_EQ(b->samples_done, 23);
  EXPECT_EQ(b->shards, a->shards);
  EXPECT_EQ(b->bytes_out, a->bytes_out);
  ExpectSameObjects(root_ / "local", "/bkt/out/");
  const auto log = server_.log();
  // The earlier index goes first (a listing follows), the index comes last
  // in one PUT; each shard is one PutObject (smaller than part_size).
  ASSERT_GE(log.size(), 3u);
  EXPECT_EQ(log.front(), "DELETE /bkt/out/index.stoker");
  EXPECT_EQ(log.back(), "PUT /bkt/out/index.stoker");
  EXPECT_EQ(Count(log, "PUT /bkt/out/shard-"), static_cast<size_t>(a->shards));
  EXPECT_EQ(Count(log, "uploadId"), 0u);
  // The Loader reads the prefix as it reads the folder.
  const Epoch x = Read((root_ / "local").string());
  const Epoch y = Read("s3://bkt/out/");
  EXPECT_EQ(y.indices, x.indices);
  EXPECT_EQ(y.labels, x.labels);
  EXPECT_EQ(y.pixels, x.pixels);
  EXPECT_EQ(y.indices.size(), 23u);
}

TEST_F(ConvertTest, ShardsLargerThanPartSizeGoInParts) {
  const std::string src = Folder("big", 12, /*big=*/true);
  ConvertOptions local = Options(src, (root_ / "local").string());
  auto a = Convert(local);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_EQ(a->shards, 1);
  const size_t shard = fs::file_size(root_ / "local" / "shard-000000.stoker");
  const size_t part = size_t{5} << 20;
  ASSERT_GT(shard, part) << "the images came out smaller than a part";
  ConvertOptions remote = local;
  remote.dst = "s3://bkt/big";
  remote.part_size = static_cast<int64_t>(part);
  auto b = Convert(remote);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  std::vector<size_t> parts(shard / part, part);
  if (shard % part) parts.push_back(shard % part);
  EXPECT_EQ(server_.completed_parts("/bkt/big/shard-000000.stoker"), parts);
  ExpectSameObjects(root_ / "local", "/bkt/big/");
  EXPECT_EQ(server_.open_uploads(), 0u);
  EXPECT_EQ(server_.log().back(), "PUT /bkt/big/index.stoker");
}

// A part refused mid-way: the error names the shard and S3's code; what an
// earlier conversion left is gone (its index first), the shard's upload is
// aborted, no index is written. Run again, it completes.
TEST_F(ConvertTest, AFailedConversionLeavesNoIndexAndNoUploadAndRunsAgain) {
  const std::string src = Folder("big", 12, /*big=*/true);
  ConvertOptions c = Options(src, "s3://bkt/big/");
  c.part_size = int64_t{5} << 20;
  ASSERT_TRUE(Convert(c).ok());  // an earlier, complete conversion
  ASSERT_TRUE(server_.Get("/bkt/big/index.stoker"));
  server_.Refuse("PUT", "partNumber=2", 403, "AccessDenied", /*times=*/1);
  auto r = Convert(c);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  const std::string& m = r.status().message();
  EXPECT_NE(m.find("s3://bkt/big/shard-000000.stoker: HTTP 403 AccessDenied"), std::string::npos) << m;
  EXPECT_NE(m.find("UploadPart 2"), std::string::npos) << m;
  EXPECT_FALSE(server_.Get("/bkt/big/index.stoker"));
  EXPECT_FALSE(server_.Get("/bkt/big/shard-000000.stoker"));
  EXPECT_EQ(server_.open_uploads(), 0u);
  EXPECT_EQ(Count(server_.log(), "DELETE /bkt/big/shard-000000.stoker?uploadId="), 1u);
  auto again = Convert(c);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(server_.Get("/bkt/big/index.stoker"));
  EXPECT_EQ(Read("s3://bkt/big/").indices.size(), 12u);
}

// Stopped by its progress callback with a shard's upload under way: the
// upload is aborted, nothing is left.
TEST_F(ConvertTest, AStoppedConversionAbortsTheShardsUpload) {
  const std::string src = Folder("big", 12, /*big=*/true);
  ConvertOptions c = Options(src, "s3://bkt/cut/");
  c.part_size = int64_t{5} << 20;
  auto r = Convert(c, [](const ConvertProgress&) { return false; });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCancelled);
  EXPECT_EQ(Count(server_.log(), "POST /bkt/cut/shard-000000.stoker?uploads"), 1u);
  EXPECT_EQ(server_.open_uploads(), 0u);
  EXPECT_EQ(Count(server_.log(), "DELETE /bkt/cut/shard-000000.stoker?uploadId="), 1u);
  EXPECT_FALSE(server_.Get("/bkt/cut/shard-000000.stoker"));
  EXPECT_FALSE(server_.Get("/bkt/cut/index.stoker"));
}

TEST_F(ConvertTest, AMissingBucketFailsAtOnceNamingIt) {
  server_.Refuse("", "/nobucket", 404, "NoSuchBucket");
  const std::string src = Folder("src", 4, /*big=*/false);
  auto r = Convert(Options(src, "s3://nobucket/out/"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("s3://nobucket/out/index.stoker: HTTP 404 NoSuchBucket"),
            std::string::npos)
      << r.status().message();
  EXPECT_EQ(server_.log(), std::vector<std::string>{"DELETE /nobucket/out/index.stoker"});
}

TEST_F(ConvertTest, NotIntoTheSourcesOwnPrefixButFromItElsewhere) {
  const std::string src = Folder("src", 7, /*big=*/false);
  ASSERT_TRUE(Convert(Options(src, "s3://bkt/shards")).ok());
  const size_t before = server_.log().size();
  for (const char* dst : {"s3://bkt/shards", "s3://bkt/shards/", "s3://bkt/shards//"}) {
    auto r = Convert(Options("s3://bkt/shards/", dst));
    ASSERT_FALSE(r.ok()) << dst;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("the source's own prefix"), std::string::npos)
        << r.status().message();
  }
  // Nothing written or deleted: only the source's index was read.
  const auto log = server_.log();
  for (size_t i = before; i < log.size(); ++i) EXPECT_EQ(log[i].rfind("GET ", 0), 0u) << log[i];
  auto r = Convert(Options("s3://bkt/shards/index.stoker", "s3://bkt/copy/"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->samples_done, 7);
  EXPECT_EQ(server_.Get("/bkt/copy/shard-000000.stoker"), server_.Get("/bkt/shards/shard-000000.stoker"));
}

TEST_F(ConvertTest, RefusesWhatItCannotWrite) {
  const std::string src = Folder("src", 2, /*big=*/false);
  auto r = Convert(Options(src, "https://example.com/shards/"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("a local folder or an s3:// prefix"), std::string::npos);
  ConvertOptions small = Options(src, "s3://bkt/x/");
  small.part_size = 1 << 20;
  r = Convert(small);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("5 MiB"), std::string::npos) << r.status().message();
  EXPECT_TRUE(server_.log().empty());
  // A folder that cannot be made: named, before any sample is read.
  std::ofstream(root_ / "file") << "x";
  r = Convert(Options(src, (root_ / "file" / "shards").string()));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("convert: cannot create " + (root_ / "file" / "shards").string()),
            std::string::npos)
      << r.status().message();
}

// Credentials that may write but not list: the conversion goes on (the
// listing only finds an earlier conversion's extra shards, which no index
// names).
TEST_F(ConvertTest, ADestinationThatCannotBeListedIsStillWritten) {
  const std::string src = Folder("src", 4, /*big=*/false);
  server_.Refuse("GET", "list-type=2", 403, "AccessDenied");
  auto r = Convert(Options(src, "s3://bkt/nolist/"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(server_.Get("/bkt/nolist/index.stoker"));
  EXPECT_EQ(Count(server_.log(), "GET /bkt?"), 1u);
}

// What an earlier conversion left in a folder (shards beyond this one's,
// temporaries of an interrupted one) goes; nothing else does.
TEST_F(ConvertTest, ClearsOnlyAnEarlierConversionsObjects) {
  const std::string src = Folder("src", 5, /*big=*/false);
  const fs::path dst = root_ / "dst";
  fs::create_directories(dst / "sub");
  for (const char* name : {"shard-000000.stoker", "shard-000099.stoker", "index.stoker",
                           "index.stoker.tmp", ".shard-000001.stoker.tmp-abc123",
                           ".index.stoker.tmp-XyZ789", "notes.txt", "shard-x.stoker",
                           "sub/shard-000000.stoker", "shard-000001.stoker.bak"}) {
    std::ofstream(dst / name) << "old";
  }
  auto r = Convert(Options(src, dst.string()));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Names(dst), (std::vector<std::string>{"index.stoker", "notes.txt", "shard-000000.stoker",
                                                  "shard-000001.stoker.bak", "shard-x.stoker",
                                                  "sub"}));
  EXPECT_EQ(Slurp(dst / "sub" / "shard-000000.stoker"), "old");
  EXPECT_NE(Slurp(dst / "shard-000000.stoker"), "old");
}

}  // namespace
}  // namespace stoker
