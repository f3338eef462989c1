// S3Storage's writes against the loopback object server
// (testing/object_server.h, which takes PutObject, multipart uploads and
// DeleteObject as S3 does and refuses a body whose signed SHA-256 is not
// its own), over both transports: one PutObject up to part_size, parts of
// exactly part_size above it, nothing visible before Commit, errors naming
// the object, the operation and S3's code, and an upload aborted on error,
// on Abort and on a writer dropped uncommitted. Then a canned server
// (MockTransport) for what the loopback one cannot say: a
// CompleteMultipartUpload answered 200 with an <Error>.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "stoker/storage/testing/pattern.h"
#include "stoker/storage/http/curl_transport.h"
#include "stoker/storage/http/epoll_transport.h"
#include "stoker/storage/http/mock_transport.h"
#include "stoker/storage/s3/s3_storage.h"
#include "stoker/storage/s3/sigv4.h"
#include "stoker/storage/s3/xml.h"
#include "stoker/storage/testing/object_server.h"

namespace stoker::storage::s3 {
namespace {

using testing::ObjectServer;

std::string S(const Bytes& b) { return std::string(b.begin(), b.end()); }

using storage::testing::Pattern;

S3Config TestConfig(const std::string& endpoint) {
  S3Config config;
  config.endpoint_url = endpoint;
  config.region = "us-east-1";
  config.credentials = {"AKIDEXAMPLE", "secret-key-for-tests", ""};
  config.credentials_source = "test";
  return config;
}

S3Options FastRetries() {
  S3Options options;
  options.dispatch.seed = 1;
  options.dispatch.retry.base_backoff = std::chrono::milliseconds(1);
  options.dispatch.retry.max_backoff = std::chrono::milliseconds(5);
  return options;
}

// Appends `bytes` to `w` in pieces of `piece` bytes (the last smaller).
Status AppendInPieces(ObjectWriter& w, const std::string& bytes, size_t piece) {
  for (size_t at = 0; at < bytes.size(); at += piece) {
    STOKER_RETURN_IF_ERROR(w.Append(std::string_view(bytes).substr(at, piece)));
  }
  return Status::Ok();
}

size_t Count(const std::vector<std::string>& log, const std::string& part) {
  return static_cast<size_t>(std::count_if(log.begin(), log.end(), [&](const std::string& l) {
    return l.find(part) != std::string::npos;
  }));
}

// GetParam(): libcurl's transport (true) or the epoll one.
class S3Writes : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.ok());
    auto s = S3Storage::Create(TestConfig(server_.origin()),
                               GetParam() ? http::NewCurlTransport() : http::NewTransport(),
                               FastRetries());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    storage_ = *s;
  }
  Result<std::unique_ptr<ObjectWriter>> Open(const std::string& uri, int64_t part_size,
                                             int in_flight = 2) {
    return storage_->OpenWriter(uri, {.part_size = part_size, .parts_in_flight = in_flight});
  }

  ObjectServer server_;
  std::shared_ptr<S3Storage> storage_;
};
INSTANTIATE_TEST_SUITE_P(Transports, S3Writes, ::testing::Bool(),
                         [](const auto& info) { return std::string(info.param ? "Curl" : "Epoll"); });

TEST_P(S3Writes, SmallObjectIsOnePutObjectAtCommit) {
  const std::string bytes = Pattern(40000, 1);
  auto w = Open("s3://bkt/out/small.bin", 65536);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_TRUE(AppendInPieces(**w, bytes, 999).ok());
  EXPECT_EQ((*w)->size(), 40000);
  EXPECT_TRUE(server_.log().empty());  // nothing sent before Commit
  ASSERT_TRUE((*w)->Commit().ok());
  EXPECT_EQ(server_.log(), std::vector<std::string>{"PUT /bkt/out/small.bin"});
  EXPECT_EQ(server_.Get("/bkt/out/small.bin"), bytes);
  auto r = storage_->Read("s3://bkt/out/small.bin");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(S(*r) == bytes);
  // Exactly part_size bytes: still one PutObject.
  auto exact = Open("s3://bkt/out/exact.bin", 65536);
  ASSERT_TRUE(exact.ok());
  ASSERT_TRUE((*exact)->Append(Pattern(65536, 2)).ok());
  ASSERT_TRUE((*exact)->Commit().ok());
  EXPECT_EQ(server_.log().back(), "PUT /bkt/out/exact.bin");
  EXPECT_EQ(server_.Get("/bkt/out/exact.bin"), Pattern(65536, 2));
  // An empty object.
  auto empty = Open("s3://bkt/out/empty.bin", 65536);
  ASSERT_TRUE(empty.ok());
  ASSERT_TRUE((*empty)->Commit().ok());
  EXPECT_EQ(server_.Get("/bkt/out/empty.bin"), "");
  EXPECT_EQ(Count(server_.log(), "uploadId"), 0u);
}

TEST_P(S3Writes, LargeObjectGoesInPartsOfExactlyPartSize) {
  const std::string bytes = Pattern(300000, 3);
  const std::string uri = "s3://bkt/out/shard-000000.stoker";
  server_.Put("/bkt/out/shard-000000.stoker", "the earlier object");
  auto w = Open(uri, 65536, 2);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_TRUE(AppendInPieces(**w, bytes, 7777).ok());
  // Parts went out while appending: of the four full ones sent, at most
  // two (parts_in_flight) may still be on the way. The object is still the
  // earlier one.
  EXPECT_GE(Count(server_.log(), "partNumber="), 2u);
  auto before = storage_->Read(uri);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(S(*before), "the earlier object");
  EXPECT_EQ(server_.open_uploads(), 1u);
  ASSERT_TRUE((*w)->Commit().ok());
  EXPECT_EQ(server_.completed_parts("/bkt/out/shard-000000.stoker"),
            (std::vector<size_t>{65536, 65536, 65536, 65536, 300000 - 4 * 65536}));
  EXPECT_TRUE(server_.Get("/bkt/out/shard-000000.stoker") == bytes);
  EXPECT_EQ(server_.open_uploads(), 0u);
  const auto log = server_.log();
  EXPECT_EQ(Count(log, "POST /bkt/out/shard-000000.stoker?uploads"), 1u);
  EXPECT_EQ(Count(log, "PUT /bkt/out/shard-000000.stoker?partNumber="), 5u);
  for (int n = 1; n <= 5; ++n) {
    EXPECT_EQ(Count(log, "?partNumber=" + std::to_string(n) + "&uploadId=upload-1"), 1u) << n;
  }
  EXPECT_EQ(log.back(), "POST /bkt/out/shard-000000.stoker?uploadId=upload-1");
  EXPECT_EQ(storage_->counters().retries, 0);
}

TEST_P(S3Writes, APartRefusedNamesTheObjectAndCodeAndAbortsTheUpload) {
  server_.Refuse("PUT", "partNumber=3", 403, "AccessDenied");
  const std::string uri = "s3://bkt/out/refused.bin";
  auto w = Open(uri, 10000, 1);  // one part at a time: part 3 fails before part 5 is sent
  ASSERT_TRUE(w.ok());
  Status st = AppendInPieces(**w, Pattern(100000, 4), 10000);
  if (st.ok()) st = (*w)->Commit();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kPermissionDenied) << st.ToString();
  const std::string& m = st.message();
  EXPECT_NE(m.find(uri), std::string::npos) << m;
  EXPECT_NE(m.find("HTTP 403 AccessDenied"), std::string::npos) << m;
  EXPECT_NE(m.find("UploadPart 3"), std::string::npos) << m;
  EXPECT_NE(m.find("key 'out/refused.bin'"), std::string::npos) << m;
  // The upload is gone, parts and all; nothing is at the URI.
  EXPECT_EQ(server_.open_uploads(), 0u);
  EXPECT_EQ(Count(server_.log(), "DELETE /bkt/out/refused.bin?uploadId=upload-1"), 1u);
  EXPECT_FALSE(server_.Get("/bkt/out/refused.bin"));
  EXPECT_EQ(Count(server_.log(), "POST /bkt/out/refused.bin?uploadId"), 0u);  // never completed
  // The writer keeps its error.
  EXPECT_EQ((*w)->Append("more").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ((*w)->Commit().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(storage_->counters().retries, 0);
}

TEST_P(S3Writes, MissingBucketIsNotFoundNamingIt) {
  server_.Refuse("", "/nobucket/", 404, "NoSuchBucket");
  const std::string small = "x";
  Status st = storage_->Put("s3://nobucket/out/index.stoker",
                            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(small.data()),
                                                     small.size()));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find("s3://nobucket/out/index.stoker: HTTP 404 NoSuchBucket"),
            std::string::npos)
      << st.message();
  EXPECT_NE(st.message().find("PutObject"), std::string::npos) << st.message();
  st = storage_->Delete("s3://nobucket/out/index.stoker");
  EXPECT_EQ(st.code(), StatusCode::kNotFound) << st.ToString();
  EXPECT_NE(st.message().find("NoSuchBucket"), std::string::npos) << st.message();
  auto w = Open("s3://nobucket/out/big.bin", 1000);
  ASSERT_TRUE(w.ok());
  st = AppendInPieces(**w, Pattern(5000, 5), 5000);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find("CreateMultipartUpload"), std::string::npos) << st.message();
}

TEST_P(S3Writes, TransientFailuresAreRetriedWithTheSameBytes) {
  server_.Refuse("PUT", "partNumber=2", 503, "SlowDown", 2);
  server_.Refuse("POST", "?uploadId=", 500, "InternalError", 1);
  server_.Refuse("POST", "?uploads", 503, "SlowDown", 1);
  const std::string bytes = Pattern(50000, 6);
  auto w = Open("s3://bkt/out/retried.bin", 20000);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(AppendInPieces(**w, bytes, 3000).ok());
  Status st = (*w)->Commit();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(server_.Get("/bkt/out/retried.bin") == bytes);
  EXPECT_EQ(server_.completed_parts("/bkt/out/retried.bin"), (std::vector<size_t>{20000, 20000, 10000}));
  EXPECT_EQ(storage_->counters().retries, 4);
}

TEST_P(S3Writes, AbortAndAnUncommittedWriterLeaveNothing) {
  server_.Put("/bkt/out/kept.bin", "earlier");
  {
    auto w = Open("s3://bkt/out/kept.bin", 10000);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(AppendInPieces(**w, Pattern(45000, 7), 4500).ok());
    EXPECT_EQ(server_.open_uploads(), 1u);
    ASSERT_TRUE((*w)->Abort().ok());
    EXPECT_EQ(server_.open_uploads(), 0u);
    EXPECT_TRUE((*w)->Abort().ok());  // again: nothing to do
    EXPECT_FALSE((*w)->Commit().ok());
  }
  EXPECT_EQ(server_.Get("/bkt/out/kept.bin"), "earlier");
  {
    auto w = Open("s3://bkt/out/dropped.bin", 10000);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(AppendInPieces(**w, Pattern(45000, 8), 4500).ok());
    EXPECT_EQ(server_.open_uploads(), 1u);
  }  // dropped uncommitted
  EXPECT_EQ(server_.open_uploads(), 0u);
  EXPECT_FALSE(server_.Get("/bkt/out/dropped.bin"));
  // Small writers never sent anything: aborting them sends nothing.
  const size_t before = server_.log().size();
  {
    auto w = Open("s3://bkt/out/tiny.bin", 10000);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append("tiny").ok());
  }
  EXPECT_EQ(server_.log().size(), before);
  EXPECT_FALSE(server_.Get("/bkt/out/tiny.bin"));
}

TEST_P(S3Writes, DeleteRemovesAndAMissingKeyIsFine) {
  server_.Put("/bkt/out/gone.bin", "x");
  ASSERT_TRUE(storage_->Delete("s3://bkt/out/gone.bin").ok());
  EXPECT_FALSE(server_.Get("/bkt/out/gone.bin"));
  EXPECT_TRUE(storage_->Delete("s3://bkt/out/gone.bin").ok());
  EXPECT_EQ(storage_->Read("s3://bkt/out/gone.bin").status().code(), StatusCode::kNotFound);
}

TEST_P(S3Writes, PutIsOneRequestWhateverTheSize) {
  const std::string bytes = Pattern(3 << 20, 9);
  ASSERT_TRUE(storage_
                  ->Put("s3://bkt/out/index.stoker",
                        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()),
                                                 bytes.size()))
                  .ok());
  EXPECT_EQ(server_.log(), std::vector<std::string>{"PUT /bkt/out/index.stoker"});
  EXPECT_TRUE(server_.Get("/bkt/out/index.stoker") == bytes);
}

TEST_P(S3Writes, PrefixesAndBadUrisAreRefusedWithoutARequest) {
  for (const char* uri : {"s3://bkt", "s3://bkt/", "s3://bkt/prefix/", "s3:///k"}) {
    EXPECT_EQ(storage_->OpenWriter(uri, {}).status().code(), StatusCode::kInvalidArgument) << uri;
    EXPECT_EQ(storage_->Delete(uri).code(), StatusCode::kInvalidArgument) << uri;
  }
  EXPECT_TRUE(server_.log().empty());
}

// ---- a canned server --------------------------------------------------------

// S3 may answer CompleteMultipartUpload 200 and then, in the body, an
// error: an InternalError is retried, another code fails the write. Every
// request carries its body's SHA-256 as signed.
TEST(S3WriterReplies, ErrorInsideA200CompleteReply) {
  std::mutex mu;
  int completes = 0;
  std::string complete_code = "InternalError";
  std::vector<std::string> requests;
  auto handler = [&](const http::Request& r) {
    std::lock_guard<std::mutex> lock(mu);
    std::string sha, auth;
    for (const auto& [k, v] : r.headers) {
      if (k == "x-amz-content-sha256") sha = v;
      if (k == "Authorization") auth = v;
    }
    EXPECT_EQ(sha, r.body ? Sha256Hex(*r.body) : std::string(kEmptySha256)) << r.url;
    EXPECT_NE(auth.find("SignedHeaders=host;x-amz-content-sha256;x-amz-date"), std::string::npos);
    requests.push_back(r.method + " " + r.url.substr(r.url.find("/bkt/")));
    http::Response resp;
    resp.status = 200;
    auto xml = [&resp](const std::string& s) { resp.body.assign(s.begin(), s.end()); };
    if (r.method == "POST" && r.url.find("?uploads") != std::string::npos) {
      xml("<InitiateMultipartUploadResult><UploadId>U1</UploadId></InitiateMultipartUploadResult>");
    } else if (r.method == "PUT") {
      resp.headers.emplace_back("etag", "\"e" + std::to_string(r.body->size()) + "\"");
    } else if (r.method == "POST") {
      EXPECT_EQ(*r.body, CompleteMultipartUploadXml({"\"e10\"", "\"e5\""}));
      if (completes++ == 0 || complete_code != "InternalError") {
        xml("<?xml version=\"1.0\"?><Error><Code>" + complete_code +
            "</Code><Message>We encountered an internal error.</Message></Error>");
      } else {
        xml("<CompleteMultipartUploadResult><ETag>\"x\"</ETag></CompleteMultipartUploadResult>");
      }
    } else {
      resp.status = 204;
    }
    return resp;
  };
  auto s = S3Storage::Create(TestConfig("http://s3.test:9000"),
                             std::make_unique<http::MockTransport>(handler), FastRetries());
  ASSERT_TRUE(s.ok());
  auto w = (*s)->OpenWriter("s3://bkt/k", {.part_size = 10, .parts_in_flight = 1});
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append("0123456789abcde").ok());
  ASSERT_TRUE((*w)->Commit().ok());
  EXPECT_EQ(completes, 2);
  EXPECT_EQ((*s)->counters().retries, 1);
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(requests, (std::vector<std::string>{"POST /bkt/k?uploads=",
                                                  "PUT /bkt/k?partNumber=1&uploadId=U1",
                                                  "PUT /bkt/k?partNumber=2&uploadId=U1",
                                                  "POST /bkt/k?uploadId=U1",
                                                  "POST /bkt/k?uploadId=U1"}));
    requests.clear();
    complete_code = "InvalidPart";
  }
  w = (*s)->OpenWriter("s3://bkt/k", {.part_size = 10, .parts_in_flight = 1});
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append("0123456789abcde").ok());
  Status st = (*w)->Commit();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("s3://bkt/k: HTTP 200 InvalidPart"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("CompleteMultipartUpload of 2 parts"), std::string::npos);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(requests.back(), "DELETE /bkt/k?uploadId=U1");  // aborted
}

}  // namespace
}  // namespace stoker::storage::s3
