#include "stoker/storage/s3/s3_storage.h"

#include <gtest/gtest.h>

// GCC 12 reports a false -Wrestrict inside std::string when this file's
// tests inline it (GCC bug 105329).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wrestrict"
#endif

#include <atomic>
#include <cstdio>
#include <future>
#include <map>
#include <mutex>
#include <set>

#include "stoker/storage/http/mock_transport.h"
#include "stoker/storage/http/url.h"

namespace stoker::storage::s3 {
namespace {

using http::MockTransport;
using http::Request;
using http::Response;

constexpr char kSecret[] = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
constexpr char kToken[] = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN";

std::string S(const Bytes& b) { return std::string(b.begin(), b.end()); }

Response Xml(int status, const std::string& body) {
  Response r;
  r.status = status;
  r.headers.emplace_back("content-type", "application/xml");
  r.body.assign(body.begin(), body.end());
  return r;
}

Response ErrorReply(int status, const std::string& code, const std::string& message) {
  return Xml(status, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>" + code +
                         "</Code><Message>" + message +
                         "</Message><RequestId>REQ123</RequestId></Error>");
}

// A small in-memory S3 behind the mock transport: path-style GET (with
// Range), HEAD and ListObjectsV2 with pages of `page_size` keys. `fault`
// may answer a request instead (return status 0 to pass).
class FakeS3 {
 public:
  std::map<std::string, std::string> objects;  // "bucket/key" -> bytes
  std::set<std::string> buckets = {"bkt"};
  size_t page_size = 1000;
  bool honour_range = true;
  std::function<Response(const Request&)> fault;
  std::mutex mu;
  std::vector<std::string> seen_auth;

  Response Handle(const Request& req) {
    if (fault) {
      Response f = fault(req);
      if (f.status != 0 || f.error != http::NetError::kNone) return f;
    }
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& [k, v] : req.headers) {
      if (k == "Authorization") seen_auth.push_back(v);
    }
    const std::string prefix = "http://s3.test:9000/";
    EXPECT_EQ(req.url.rfind(prefix, 0), 0u) << req.url;
    std::string rest = req.url.substr(prefix.size());
    std::string query;
    if (auto q = rest.find('?'); q != std::string::npos) {
      query = rest.substr(q + 1);
      rest = rest.substr(0, q);
    }
    const auto slash = rest.find('/');
    const std::string bucket = rest.substr(0, slash);
    const std::string key =
        slash == std::string::npos ? "" : *http::UriDecode(rest.substr(slash + 1));
    if (!buckets.count(bucket)) {
      return ErrorReply(404, "NoSuchBucket", "The specified bucket does not exist");
    }
    if (slash == std::string::npos) return List(bucket, query);
    auto it = objects.find(bucket + "/" + key);
    if (it == objects.end()) {
      if (req.method == "HEAD") return Xml(404, "");
      return ErrorReply(404, "NoSuchKey", "The specified key does not exist.");
    }
    Response r;
    r.status = 200;
    r.headers.emplace_back("etag", "\"etag-" + key + "\"");
    std::string body = it->second;
    for (const auto& [k, v] : req.headers) {
      if (k == "Range" && honour_range) {
        // bytes=a-b or bytes=a-
        const auto dash = v.find('-');
        const size_t a = std::stoul(v.substr(6, dash - 6));
        size_t b = dash + 1 < v.size() ? std::stoul(v.substr(dash + 1)) : body.size() - 1;
        if (a >= body.size()) return ErrorReply(416, "InvalidRange", "The requested range is not satisfiable");
        b = std::min(b, body.size() - 1);
        body = body.substr(a, b - a + 1);
        r.status = 206;
      }
    }
    r.headers.emplace_back("content-length", std::to_string(body.size()));
    if (req.method != "HEAD") r.body.assign(body.begin(), body.end());
    return r;
  }

 private:
  Response List(const std::string& bucket, const std::string& query) {
    std::map<std::string, std::string> params;
    size_t p = 0;
    while (p < query.size()) {
      auto amp = query.find('&', p);
      if (amp == std::string::npos) amp = query.size();
      const std::string pair = query.substr(p, amp - p);
      const auto eq = pair.find('=');
      params[*http::UriDecode(pair.substr(0, eq))] = *http::UriDecode(pair.substr(eq + 1));
      p = amp + 1;
    }
    EXPECT_EQ(params["list-type"], "2");
    EXPECT_EQ(params["encoding-type"], "url");
    const std::string& prefix = params["prefix"];
    const std::string start = params["continuation-token"];  // token: "after:<key>"
    std::string xml = "<ListBucketResult><Name>" + bucket + "</Name><EncodingType>url</EncodingType>";
    size_t n = 0;
    std::string last;
    bool more = false;
    for (const auto& [full, data] : objects) {
      if (full.rfind(bucket + "/", 0) != 0) continue;
      const std::string key = full.substr(bucket.size() + 1);
      if (key.rfind(prefix, 0) != 0) continue;
      if (!start.empty() && key <= start.substr(6)) continue;
      if (n == page_size) {
        more = true;
        break;
      }
      xml += "<Contents><Key>" + http::UriEncode(key, true) + "</Key><Size>" +
             std::to_string(data.size()) + "</Size></Contents>";
      last = key;
      ++n;
    }
    xml += std::string("<IsTruncated>") + (more ? "true" : "false") + "</IsTruncated>";
    if (more) xml += "<NextContinuationToken>after:" + last + "</NextContinuationToken>";
    xml += "</ListBucketResult>";
    return Xml(200, xml);
  }
};

class S3StorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.endpoint_url = "http://s3.test:9000";
    config_.region = "us-east-1";
    config_.credentials = {"AKIDEXAMPLE", kSecret, kToken};
    config_.credentials_source = "environment";
    fake_.objects["bkt/train/cat/1.jpg"] = "cat-one";
    fake_.objects["bkt/train/dog/2.jpg"] = "dog-two";
    fake_.objects["bkt/other/x.jpg"] = "other";
  }

  std::shared_ptr<S3Storage> Open(S3Options options = {}) {
    options.dispatch.seed = 1;
    options.dispatch.retry.base_backoff = std::chrono::milliseconds(1);
    auto s = S3Storage::Create(
        config_, std::make_unique<MockTransport>([this](const Request& r) { return fake_.Handle(r); }),
        options);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return *s;
  }

  static void ExpectNoSecrets(const Status& st) {
    EXPECT_EQ(st.message().find(kSecret), std::string::npos) << st.message();
    EXPECT_EQ(st.message().find(kToken), std::string::npos) << st.message();
  }

  S3Config config_;
  FakeS3 fake_;
};

TEST_F(S3StorageTest, ReadsWholeObjectsSigned) {
  auto s = Open();
  auto r = s->Read("s3://bkt/train/cat/1.jpg");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(S(*r), "cat-one");
  const auto c = s->counters();
  EXPECT_EQ(c.requests, 1);
  EXPECT_EQ(c.bytes_read, 7);
  EXPECT_EQ(c.retries, 0);
  ASSERT_EQ(fake_.seen_auth.size(), 1u);
  EXPECT_EQ(fake_.seen_auth[0].rfind("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/", 0), 0u);
}

TEST_F(S3StorageTest, KeysWithOddCharactersRoundTrip) {
  const std::string key = "train/a b/c+d%20e/\xC3\xA9t\xC3\xA9 (1)~'*.jpg";
  fake_.objects["bkt/" + key] = "odd";
  auto s = Open();
  auto r = s->Read("s3://bkt/" + key);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(S(*r), "odd");
  auto listed = s->List("s3://bkt/train/");
  ASSERT_TRUE(listed.ok());
  bool found = false;
  for (const auto& o : *listed) found |= o.key == key.substr(6);
  EXPECT_TRUE(found);
}

TEST_F(S3StorageTest, ReadsRanges) {
  fake_.objects["bkt/blob"] = "0123456789";
  auto s = Open();
  auto r = s->ReadRange("s3://bkt/blob", {2, 3});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(S(*r), "234");
  r = s->ReadRange("s3://bkt/blob", {7, 100});  // past the end: what there is
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(S(*r), "789");
  r = s->ReadRange("s3://bkt/blob", {4, ByteRange::kToEnd});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(S(*r), "456789");
  r = s->ReadRange("s3://bkt/blob", {4, 0});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
  // Starting past the end: S3 answers 416 InvalidRange, which is no bytes.
  r = s->ReadRange("s3://bkt/blob", {20, 5});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->empty());
  r = s->ReadRange("s3://bkt/blob", {-1, 5});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  // A server that ignores Range: the slice is cut locally.
  fake_.honour_range = false;
  r = s->ReadRange("s3://bkt/blob", {2, 3});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(S(*r), "234");
}

TEST_F(S3StorageTest, Head) {
  auto s = Open();
  auto m = s->Head("s3://bkt/train/dog/2.jpg");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->size, 7);
  EXPECT_EQ(m->etag, "\"etag-train/dog/2.jpg\"");
  auto missing = s->Head("s3://bkt/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("HTTP 404 NotFound"), std::string::npos);
  EXPECT_NE(missing.status().message().find("bucket 'bkt', key 'nope'"), std::string::npos);
}

TEST_F(S3StorageTest, ListsAcrossPages) {
  for (int i = 0; i < 2503; ++i) {
    char key[64];
    std::snprintf(key, sizeof key, "bkt/big/c%d/%d.jpg", i % 3, 100000 + i);
    fake_.objects[key] = "x";
  }
  fake_.objects["bkt/big/c0/"] = "";  // a "folder" marker
  fake_.objects["bkt/bigger/no.jpg"] = "x";  // shares the prefix text, not the folder
  auto s = Open();
  auto listed = s->List("s3://bkt/big");  // no trailing slash: still the folder
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  ASSERT_EQ(listed->size(), 2503u);
  EXPECT_TRUE(std::is_sorted(listed->begin(), listed->end(),
                             [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; }));
  std::set<std::string> keys;
  for (const auto& o : *listed) {
    keys.insert(o.key);
    EXPECT_EQ(o.key.rfind("c", 0), 0u) << o.key;
    EXPECT_EQ(o.size, 1);
  }
  EXPECT_EQ(keys.size(), 2503u);
  EXPECT_EQ(s->counters().requests, 3);  // 1000 + 1000 + 503
  EXPECT_EQ(s->Join("s3://bkt/big", "c0/x.jpg"), "s3://bkt/big/c0/x.jpg");
  EXPECT_EQ(s->Join("s3://bkt/big/", "c0/x.jpg"), "s3://bkt/big/c0/x.jpg");
}

TEST_F(S3StorageTest, ListsTheWholeBucket) {
  auto s = Open();
  auto listed = s->List("s3://bkt");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 3u);
  EXPECT_EQ((*listed)[0].key, "other/x.jpg");
}

TEST_F(S3StorageTest, EmptyPrefixAndMissingBucketAreNotFound) {
  auto s = Open();
  auto listed = s->List("s3://bkt/nothing/here/");
  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.status().code(), StatusCode::kNotFound);
  EXPECT_NE(listed.status().message().find("s3://bkt/nothing/here/"), std::string::npos);
  listed = s->List("s3://nobucket/x/");
  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.status().code(), StatusCode::kNotFound);
  EXPECT_NE(listed.status().message().find("NoSuchBucket"), std::string::npos);
  EXPECT_NE(listed.status().message().find("bucket 'nobucket'"), std::string::npos);
}

TEST_F(S3StorageTest, BrokenListingsAreErrorsNotLoops) {
  fake_.fault = [](const Request& r) {
    if (r.url.find("list-type") == std::string::npos) return Response{};
    // Always truncated, always the same token.
    return Xml(200,
               "<ListBucketResult><IsTruncated>true</IsTruncated>"
               "<NextContinuationToken>same</NextContinuationToken>"
               "<Contents><Key>p/a</Key></Contents></ListBucketResult>");
  };
  auto s = Open();
  auto listed = s->List("s3://bkt/p/");
  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.status().code(), StatusCode::kCorrupt);
  fake_.fault = [](const Request&) { return Xml(200, "<ListBucketResult><Contents>"); };
  listed = s->List("s3://bkt/p/");
  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.status().code(), StatusCode::kCorrupt);
}

TEST_F(S3StorageTest, MissingKeyNamesBucketKeyCodeAndMessage) {
  auto s = Open();
  auto r = s->Read("s3://bkt/train/cat/missing.jpg");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  const std::string& m = r.status().message();
  EXPECT_NE(m.find("s3://bkt/train/cat/missing.jpg"), std::string::npos) << m;
  EXPECT_NE(m.find("HTTP 404 NoSuchKey: The specified key does not exist."), std::string::npos) << m;
  EXPECT_NE(m.find("bucket 'bkt', key 'train/cat/missing.jpg'"), std::string::npos) << m;
  EXPECT_NE(m.find("request id REQ123"), std::string::npos) << m;
  EXPECT_EQ(s->counters().retries, 0);
}

TEST_F(S3StorageTest, AccessDeniedIsPermissionDeniedWithoutSecrets) {
  fake_.fault = [](const Request&) {
    // A hostile server echoing secrets back must not get them into messages.
    return ErrorReply(403, "SignatureDoesNotMatch",
                      std::string("The request signature we calculated does not match ") + kSecret +
                          " " + kToken);
  };
  auto s = Open();
  auto r = s->Read("s3://bkt/train/cat/1.jpg");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(r.status().message().find("SignatureDoesNotMatch"), std::string::npos);
  EXPECT_NE(r.status().message().find("bucket 'bkt'"), std::string::npos);
  EXPECT_NE(r.status().message().find("credentials: environment"), std::string::npos);
  ExpectNoSecrets(r.status());
  EXPECT_EQ(s->counters().retries, 0);
  auto listed = s->List("s3://bkt/train/");
  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.status().code(), StatusCode::kPermissionDenied);
  ExpectNoSecrets(listed.status());
}

TEST_F(S3StorageTest, WrongRegionSaysWhichRegion) {
  fake_.fault = [](const Request&) {
    Response r = ErrorReply(301, "PermanentRedirect", "The bucket you are attempting to access must "
                                                      "be addressed using the specified endpoint.");
    r.headers.emplace_back("x-amz-bucket-region", "eu-west-1");
    return r;
  };
  auto s = Open();
  auto r = s->Read("s3://bkt/k");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("set AWS_REGION=eu-west-1"), std::string::npos)
      << r.status().message();
}

TEST_F(S3StorageTest, RetriesTransientFailures) {
  std::atomic<int> n{0};
  fake_.fault = [&n](const Request&) {
    switch (n++) {
      case 0: return ErrorReply(503, "SlowDown", "Please reduce your request rate.");
      case 1: return ErrorReply(500, "InternalError", "We encountered an internal error.");
      case 2: {
        Response r;
        r.error = http::NetError::kReset;
        r.error_message = "Connection reset by peer";
        return r;
      }
      case 3: {
        Response r;
        r.error = http::NetError::kTimeout;
        r.error_message = "Operation timed out";
        return r;
      }
      case 4: return ErrorReply(400, "RequestTimeout", "Your socket connection timed out.");
      case 5: return ErrorReply(502, "BadGateway", "");
      case 6: return ErrorReply(504, "GatewayTimeout", "");
      default: return Response{};
    }
  };
  auto s = Open();
  auto r = s->Read("s3://bkt/train/cat/1.jpg");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(S(*r), "cat-one");
  const auto c = s->counters();
  EXPECT_EQ(c.retries, 7);
  EXPECT_EQ(c.requests, 8);
  EXPECT_EQ(c.bytes_read, 7);
}

TEST_F(S3StorageTest, GivesUpWithTheLastReason) {
  fake_.fault = [](const Request&) { return ErrorReply(503, "SlowDown", "Please reduce your request rate."); };
  S3Options o;
  o.dispatch.retry.max_attempts = 4;
  auto s = Open(o);
  auto r = s->Read("s3://bkt/train/cat/1.jpg");
  ASSERT_FALSE(r.ok());
  // Only SlowDown for every attempt: the storage is unavailable, and the
  // message names the endpoint, bucket, key, reason and attempts.
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("HTTP 503 SlowDown"), std::string::npos);
  EXPECT_NE(r.status().message().find("bucket 'bkt', key 'train/cat/1.jpg'"), std::string::npos);
  EXPECT_NE(r.status().message().find("gave up after 4 attempts"), std::string::npos);
  EXPECT_NE(r.status().message().find("no answer from http://s3.test:9000"), std::string::npos)
      << r.status().message();
  EXPECT_EQ(s->counters().retries, 3);
}

TEST_F(S3StorageTest, ManyAsyncReadsEachDeliveredOnce) {
  for (int i = 0; i < 2000; ++i) fake_.objects["bkt/many/" + std::to_string(i)] = std::to_string(i);
  // The first attempt at every tenth key is refused, its retry served. (A
  // global "every tenth request" let one key's retries land on the refused
  // slot ten times running when the transport's order fell into step.)
  std::mutex fault_mu;
  std::set<std::string> refused;
  fake_.fault = [&](const Request& r) {
    const std::string number = r.url.substr(r.url.rfind('/') + 1);
    std::lock_guard<std::mutex> lock(fault_mu);
    return std::stoi(number) % 10 == 3 && refused.insert(r.url).second
               ? ErrorReply(503, "SlowDown", "slow down")
               : Response{};
  };
  auto s = Open();
  std::mutex mu;
  std::map<int, int> got;
  std::promise<void> all;
  std::atomic<int> left{2000};
  for (int i = 0; i < 2000; ++i) {
    s->ReadAsync("s3://bkt/many/" + std::to_string(i), [&, i](Result<Bytes> r) {
      {
        std::lock_guard<std::mutex> lock(mu);
        EXPECT_TRUE(r.ok()) << r.status().ToString();
        if (r.ok()) {
          EXPECT_EQ(S(*r), std::to_string(i));
        }
        ++got[i];
      }
      if (--left == 0) all.set_value();
    });
  }
  all.get_future().get();
  EXPECT_EQ(got.size(), 2000u);
  for (const auto& [i, count] : got) EXPECT_EQ(count, 1) << i;
  EXPECT_EQ(s->counters().retries, 200);
}

TEST_F(S3StorageTest, BadUrisFailWithoutARequest) {
  auto s = Open();
  EXPECT_EQ(s->Read("s3://bkt").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s->Read("s3://bkt/").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s->Read("s3:///k").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s->counters().requests, 0);
}

TEST_F(S3StorageTest, AnonymousRequestsCarryNoAuthorization) {
  config_.credentials = {};
  auto s = Open();
  ASSERT_TRUE(s->Read("s3://bkt/train/cat/1.jpg").ok());
  EXPECT_TRUE(fake_.seen_auth.empty());
}

TEST(Classify, MapsRepliesToVerdicts) {
  S3Config cfg;
  const S3Uri w{"b", "k"};
  auto v = ClassifyS3Reply(ErrorReply(404, "NoSuchKey", "gone"), "s3://b/k", w, cfg);
  EXPECT_EQ(v.kind, http::Verdict::kFail);
  EXPECT_EQ(v.status.code(), StatusCode::kNotFound);
  v = ClassifyS3Reply(ErrorReply(403, "AccessDenied", "no"), "s3://b/k", w, cfg);
  EXPECT_EQ(v.status.code(), StatusCode::kPermissionDenied);
  v = ClassifyS3Reply(ErrorReply(400, "ExpiredToken", "expired"), "s3://b/k", w, cfg);
  EXPECT_EQ(v.kind, http::Verdict::kFail);
  EXPECT_EQ(v.status.code(), StatusCode::kPermissionDenied);
  v = ClassifyS3Reply(ErrorReply(409, "OperationAborted", "busy"), "s3://b/k", w, cfg);
  EXPECT_EQ(v.kind, http::Verdict::kRetry);  // retried by its code
  v = ClassifyS3Reply(ErrorReply(503, "SlowDown", "x"), "s3://b/k", w, cfg);
  EXPECT_EQ(v.kind, http::Verdict::kRetry);
  Response html;
  html.status = 502;
  std::string page = "<html>Bad Gateway</html>";
  html.body.assign(page.begin(), page.end());
  v = ClassifyS3Reply(html, "s3://b/k", w, cfg);
  EXPECT_EQ(v.kind, http::Verdict::kRetry);
  EXPECT_NE(v.status.message().find("HTTP 502 BadGateway"), std::string::npos);
  Response other;
  other.error = http::NetError::kOther;
  other.error_message = "SSL certificate problem";
  v = ClassifyS3Reply(other, "s3://b/k", w, cfg);
  EXPECT_EQ(v.kind, http::Verdict::kFail);
  // Control characters from the server are neutralised.
  v = ClassifyS3Reply(ErrorReply(400, "Bad\x01Code", "line1\nline2\x1b[31m"), "s3://b/k", w, cfg);
  EXPECT_EQ(v.status.message().find('\n'), std::string::npos);
  EXPECT_EQ(v.status.message().find('\x1b'), std::string::npos);
  EXPECT_EQ(ClassifyS3Reply(Xml(206, ""), "s3://b/k", w, cfg).kind, http::Verdict::kDone);
}

// OpenStorage's scheme registry and per-URI routing.
TEST(OpenStorage, PicksTheBackendByScheme) {
  auto s3 = OpenStorage("s3://bkt/prefix/", {.endpoint_url = "http://127.0.0.1:9"});
  ASSERT_TRUE(s3.ok()) << s3.status().ToString();
  EXPECT_EQ((*s3)->Join("s3://bkt/prefix", "a/b.jpg"), "s3://bkt/prefix/a/b.jpg");
  EXPECT_TRUE(OpenStorage("https://example.com/data/m.csv").ok());
  auto gs = OpenStorage("gs://bucket/x");
  ASSERT_FALSE(gs.ok());
  EXPECT_EQ(gs.status().code(), StatusCode::kUnsupported);
  auto bad = OpenStorage("s3://bkt/", {.endpoint_url = "not a url"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

TEST(OpenStorage, RoutesEachUriToItsSchemesBackend) {
  const std::string path = ::testing::TempDir() + "/stoker_router_test.bin";
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fputs("local", f);
    std::fclose(f);
  }
  // A local dataset (say, a manifest) whose samples live elsewhere.
  auto st = OpenStorage(path, {.endpoint_url = "not a url"});
  ASSERT_TRUE(st.ok());
  auto local = (*st)->Read(path);
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(S(*local), "local");
  // The S3 backend opens on first use; its configuration error names the
  // problem, for this and every later s3:// sample, without a request.
  for (int i = 0; i < 2; ++i) {
    std::promise<Result<Bytes>> p;
    (*st)->ReadAsync("s3://bkt/k", [&p](Result<Bytes> r) { p.set_value(std::move(r)); });
    auto r = p.get_future().get();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  }
  auto other = (*st)->Read("ftp://h/x");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), StatusCode::kUnsupported);
  EXPECT_EQ((*st)->counters().requests, 1);  // the one local read
  std::remove(path.c_str());
}

}  // namespace
}  // namespace stoker::storage::s3
