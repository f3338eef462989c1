#include "stoker/storage/s3/sigv4.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "stoker/storage/http/url.h"
#include "stoker/storage/s3/request.h"
#include "stoker/storage/s3/xml.h"

namespace stoker::storage::s3 {
namespace {

namespace fs = std::filesystem;

// AWS's published vectors live beside the repository, read in place:
// <repo>/../shared/testdata/aws-sigv4. The repository root is found from this
// file's own path; STOKER_SIGV4_TESTDATA overrides.
fs::path VectorDir() {
  if (const char* env = std::getenv("STOKER_SIGV4_TESTDATA")) return env;
  fs::path here = fs::path(__FILE__);
  fs::path repo = here.parent_path().parent_path().parent_path().parent_path().parent_path();
  return repo / ".." / "shared" / "testdata" / "aws-sigv4";
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The value of "key" in the vectors' flat context.json (strings and bools).
std::string JsonField(const std::string& json, const std::string& key) {
  const auto k = json.find("\"" + key + "\"");
  if (k == std::string::npos) return "";
  auto p = json.find(':', k) + 1;
  while (p < json.size() && (json[p] == ' ' || json[p] == '\n')) ++p;
  if (json[p] == '"') {
    const auto end = json.find('"', p + 1);
    return json.substr(p + 1, end - p - 1);
  }
  const auto end = json.find_first_of(",}\n", p);
  return json.substr(p, end - p);
}

// RFC 3986 remove_dot_segments plus collapsing repeated slashes: the
// "normalize" the generic vectors ask for (S3 itself never normalises).
std::string NormalizePath(const std::string& path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= path.size()) {
    auto j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    std::string seg = path.substr(i, j - i);
    if (seg == "..") {
      if (!out.empty()) out.pop_back();
    } else if (!seg.empty() && seg != ".") {
      out.push_back(seg);
    }
    i = j + 1;
  }
  std::string result;
  for (const auto& s : out) result += "/" + s;
  const bool trailing = path.size() > 1 && (path.back() == '/' || path.ends_with("/.") ||
                                            path.ends_with("/.."));
  if (result.empty() || trailing) result += "/";
  return result;
}

struct Vector {
  SigningRequest request;
  Credentials credentials;
};

Vector LoadVector(const fs::path& dir) {
  const std::string ctx = ReadFile(dir / "context.json");
  const std::string raw = ReadFile(dir / "request.txt");
  Vector v;
  v.credentials.access_key_id = JsonField(ctx, "access_key_id");
  v.credentials.secret_access_key = JsonField(ctx, "secret_access_key");
  v.credentials.session_token = JsonField(ctx, "token");
  v.request.region = JsonField(ctx, "region");
  v.request.service = JsonField(ctx, "service");
  std::string ts = JsonField(ctx, "timestamp");  // 2015-08-30T12:36:00Z
  std::string amz;
  for (char c : ts) {
    if (c != '-' && c != ':') amz += c;
  }
  v.request.amz_date = amz;

  // Request line, headers (folded lines continue the previous value), body.
  std::vector<std::string> lines;
  size_t pos = 0;
  size_t body_at = std::string::npos;
  while (pos < raw.size()) {
    auto nl = raw.find('\n', pos);
    if (nl == std::string::npos) nl = raw.size();
    std::string line = raw.substr(pos, nl - pos);
    pos = nl + 1;
    if (!lines.empty() && line.empty()) {
      body_at = pos;
      break;
    }
    lines.push_back(line);
  }
  const std::string body = body_at < raw.size() ? raw.substr(body_at) : "";
  const std::string& rl = lines.at(0);
  v.request.method = rl.substr(0, rl.find(' '));
  std::string target = rl.substr(rl.find(' ') + 1, rl.rfind(' ') - rl.find(' ') - 1);
  std::string path = target.substr(0, target.find('?'));
  if (target.find('?') != std::string::npos) {
    std::string q = target.substr(target.find('?') + 1);
    size_t qp = 0;
    while (qp <= q.size()) {
      auto amp = q.find('&', qp);
      if (amp == std::string::npos) amp = q.size();
      std::string pair = q.substr(qp, amp - qp);
      if (!pair.empty()) {
        auto eq = pair.find('=');
        std::string k = pair.substr(0, eq);
        std::string val = eq == std::string::npos ? "" : pair.substr(eq + 1);
        v.request.query.emplace_back(*http::UriDecode(k), *http::UriDecode(val));
      }
      qp = amp + 1;
    }
  }
  if (JsonField(ctx, "normalize") == "true") path = NormalizePath(path);
  v.request.canonical_uri = http::UriEncode(path, true);
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string& l = lines[i];
    if (!l.empty() && (l[0] == ' ' || l[0] == '\t')) {
      v.request.headers.back().second += "\n" + l;
      continue;
    }
    auto colon = l.find(':');
    v.request.headers.emplace_back(l.substr(0, colon), l.substr(colon + 1));
  }
  v.request.headers.emplace_back("X-Amz-Date", amz);
  if (!v.credentials.session_token.empty() && JsonField(ctx, "omit_session_token") != "true") {
    v.request.headers.emplace_back("X-Amz-Security-Token", v.credentials.session_token);
  }
  v.request.payload_hash = Sha256Hex(body);
  if (JsonField(ctx, "sign_body") == "true") {
    v.request.headers.emplace_back("X-Amz-Content-Sha256", v.request.payload_hash);
  }
  return v;
}

std::string Chomp(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

TEST(SigV4, AwsPublishedVectors) {
  const fs::path dir = VectorDir();
  if (!fs::is_directory(dir)) {
    GTEST_SKIP() << "AWS SigV4 test vectors not found at " << dir
                 << " (set STOKER_SIGV4_TESTDATA to their folder)";
  }
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_directory() || !fs::exists(entry.path() / "header-signature.txt")) continue;
    SCOPED_TRACE(entry.path().filename().string());
    Vector v = LoadVector(entry.path());
    Signature s = SignV4(v.request, v.credentials);
    EXPECT_EQ(s.canonical_request, Chomp(ReadFile(entry.path() / "header-canonical-request.txt")));
    EXPECT_EQ(s.string_to_sign, Chomp(ReadFile(entry.path() / "header-string-to-sign.txt")));
    EXPECT_EQ(s.signature, Chomp(ReadFile(entry.path() / "header-signature.txt")));
    const std::string signed_request = ReadFile(entry.path() / "header-signed-request.txt");
    EXPECT_NE(signed_request.find("Authorization:" + s.authorization + "\n"), std::string::npos)
        << s.authorization;
    ++checked;
  }
  EXPECT_GE(checked, 30);
}

TEST(SigV4, HashesAndHmac) {
  EXPECT_EQ(Sha256Hex(""), kEmptySha256);
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // RFC 4231 test case 2.
  EXPECT_EQ(HexEncode(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(AmzDate(std::chrono::system_clock::from_time_t(1440938160)), "20150830T123600Z");
}

TEST(SigV4, CanonicalQueryEncodesAndSorts) {
  EXPECT_EQ(CanonicalQuery({{"prefix", "a b/c"}, {"list-type", "2"}, {"continuation-token", "x+y=="}}),
            "continuation-token=x%2By%3D%3D&list-type=2&prefix=a%20b%2Fc");
  EXPECT_EQ(CanonicalQuery({}), "");
}

// The same S3 request signed by botocore's S3SigV4Auth (values computed once
// by botocore_vectors.py beside this file) and by stoker's RequestBuilder.
struct BotoCase {
  const char* name;
  const char* method;
  const char* endpoint;  // "" for AWS
  const char* bucket;
  const char* key;
  QueryParams query;
  http::Headers extra;
  const char* region;
  bool token;
  const char* expected;
  std::shared_ptr<const std::string> body = nullptr;  // writes
};

std::shared_ptr<const std::string> Repeat(std::string_view piece, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += piece;
  return std::make_shared<const std::string>(std::move(s));
}

TEST(SigV4, BotocoreAgrees) {
  const auto when = std::chrono::system_clock::from_time_t(1705321845);  // 2024-01-15T12:30:45Z
  const BotoCase cases[] = {
      {"path_style_get", "GET", "http://127.0.0.1:9000", "my-bucket",
       "train/cls a/img+1 (copy)~\xC3\xBC.jpg", {}, {}, "us-east-1", false,
       "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240115/us-east-1/s3/aws4_request, "
       "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
       "Signature=5519948398662958dceba4cb603f36220c8035f119b6230f63ba31763d9f1948"},
      {"range_with_token", "GET", "http://localhost:5000", "data", "shards/train-000001.tar", {},
       {{"Range", "bytes=1024-2047"}}, "eu-west-1", true,
       "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240115/eu-west-1/s3/aws4_request, "
       "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date;x-amz-security-token, "
       "Signature=a8f70bb62ef8bb001b389d0bf3b1b2e4626f52483a425ae23ace08ea4ce2cebe"},
      {"virtual_hosted_list", "GET", "", "my-bucket", "",
       {{"list-type", "2"}, {"encoding-type", "url"}, {"prefix", "train/"},
        {"continuation-token", "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="}},
       {}, "eu-central-1", false,
       "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240115/eu-central-1/s3/aws4_request, "
       "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
       "Signature=c9a455c61bf366ac52829468ecd677af231bea35b07e220925af53df716522c3"},
      {"head", "HEAD", "http://127.0.0.1:9000", "b", "k", {}, {}, "us-east-1", false,
       "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240115/us-east-1/s3/aws4_request, "
       "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
       "Signature=a611fa2198fd205b190e4399420e30165e9b0fe4a18aafb6ac35359847d4b7b4"},
      // Writes: botocore hashed each body itself.
      {"put_object", "PUT", "http://127.0.0.1:9000", "data", "out/shard-000000.stoker", {}, {},
       "us-east-1", false,
       "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240115/us-east-1/s3/aws4_request, "
       "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
       "Signature=67109e2a2660394b2f226eb0504d87ba46d9978a3c18d998bb50108fcfbe859b",
       Repeat(std::string_view("shard bytes\x00\x01\xff", 14), 100)},
      {"upload_part_with_token", "PUT", "http://localhost:5000", "data", "out/index.stoker",
       {{"partNumber", "2"}, {"uploadId", "VXBsb2FkIElE+/="}}, {}, "eu-west-1", true,
       "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240115/eu-west-1/s3/aws4_request, "
       "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, "
       "Signature=e88b81f04faaffb587cbce50f82b1f5c8d7f074767e8819364020cc6d3356e5c",
       Repeat("part two ", 1000)},
      {"create_multipart_upload", "POST", "http://127.0.0.1:9000", "b", "k", {{"uploads", ""}}, {},
       "us-east-1", false,
       "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240115/us-east-1/s3/aws4_request, "
       "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
       "Signature=f676a44a926ef89d409e3576ea5befb6a8650c863693947081bc6e349cd6e98c",
       std::make_shared<const std::string>()},
      // The body is CompleteMultipartUploadXml's: botocore signed the same bytes.
      {"complete_multipart_upload", "POST", "http://127.0.0.1:9000", "b", "k",
       {{"uploadId", "VXBsb2FkIElE+/="}}, {}, "us-east-1", false,
       "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240115/us-east-1/s3/aws4_request, "
       "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
       "Signature=4e5257867f5b4786ded30156a03cc5e35c660d1bb087f3ddcfe794a704203ab6",
       std::make_shared<const std::string>(
           CompleteMultipartUploadXml({"\"etag-1\"", "\"etag-2\""}))},
      {"delete", "DELETE", "http://127.0.0.1:9000", "b", "k", {{"uploadId", "abc"}}, {},
       "us-east-1", false,
       "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240115/us-east-1/s3/aws4_request, "
       "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
       "Signature=0ecdc6631c6d4def4e19d7ae66c30352629316a0bccd79d4e20f821b852948c1"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    S3Config cfg;
    cfg.region = c.region;
    cfg.endpoint_url = c.endpoint;
    cfg.credentials = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                       c.token ? "IQoJb3JpZ2luX2VjEXAMPLE/token+with=odd/chars" : ""};
    auto b = RequestBuilder::Create(cfg);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    auto req = c.body ? b->Build(c.method, c.bucket, c.key, c.query, c.extra, when, c.body,
                                 Sha256Hex(*c.body))
                      : b->Build(c.method, c.bucket, c.key, c.query, c.extra, when);
    ASSERT_TRUE(req.ok());
    std::string auth, sha;
    for (const auto& [k, v] : req->headers) {
      if (k == "Authorization") auth = v;
      if (k == "x-amz-content-sha256") sha = v;
    }
    EXPECT_EQ(auth, c.expected);
    // The hash sent is the one signed, and the body goes with the request.
    EXPECT_EQ(sha, c.body ? Sha256Hex(*c.body) : std::string(kEmptySha256));
    EXPECT_EQ(req->body, c.body);
  }
}

// AWS's own example of a signed S3 PUT (the S3 API reference, "Signature
// Calculations for the Authorization Header: Transferring Payload in a
// Single Chunk", example "PUT Object"), built by RequestBuilder: its
// canonical request signs the body's SHA-256, and its signature is AWS's.
TEST(SigV4, AwsS3PutObjectExample) {
  const std::string body = "Welcome to Amazon S3.";
  EXPECT_EQ(Sha256Hex(body), "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  S3Config cfg;
  cfg.region = "us-east-1";
  cfg.endpoint_url = "https://s3.amazonaws.com";
  cfg.addressing = AddressingStyle::kVirtual;
  cfg.credentials = {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
  auto b = RequestBuilder::Create(cfg);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  const auto when = std::chrono::system_clock::from_time_t(1369353600);  // 2013-05-24T00:00:00Z
  auto req = b->Build("PUT", "examplebucket", "test$file.text", {},
                      {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                       {"x-amz-storage-class", "REDUCED_REDUNDANCY"}},
                      when, std::make_shared<const std::string>(body), Sha256Hex(body));
  ASSERT_TRUE(req.ok()) << req.status().ToString();
  EXPECT_EQ(req->url, "https://examplebucket.s3.amazonaws.com/test%24file.text");
  std::string auth;
  for (const auto& [k, v] : req->headers) {
    if (k == "Authorization") auth = v;
  }
  EXPECT_EQ(auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
            "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
  // The same request given to the signer by hand, with AWS's canonical request.
  SigningRequest s;
  s.method = "PUT";
  s.canonical_uri = "/test%24file.text";
  s.headers = {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
               {"Host", "examplebucket.s3.amazonaws.com"},
               {"x-amz-content-sha256", Sha256Hex(body)},
               {"x-amz-date", "20130524T000000Z"},
               {"x-amz-storage-class", "REDUCED_REDUNDANCY"}};
  s.payload_hash = Sha256Hex(body);
  s.amz_date = "20130524T000000Z";
  s.region = "us-east-1";
  s.service = "s3";
  const Signature sig = SignV4(s, cfg.credentials);
  EXPECT_EQ(sig.canonical_request,
            "PUT\n/test%24file.text\n\n"
            "date:Fri, 24 May 2013 00:00:00 GMT\n"
            "host:examplebucket.s3.amazonaws.com\n"
            "x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\n"
            "x-amz-date:20130524T000000Z\n"
            "x-amz-storage-class:REDUCED_REDUNDANCY\n\n"
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n"
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  EXPECT_EQ(sig.signature, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

TEST(SigV4, AnonymousRequestsAreUnsigned) {
  S3Config cfg;
  cfg.endpoint_url = "http://127.0.0.1:9000";
  auto b = RequestBuilder::Create(cfg);
  ASSERT_TRUE(b.ok());
  auto req = b->Build("GET", "b", "k", {}, {}, std::chrono::system_clock::now());
  ASSERT_TRUE(req.ok());
  for (const auto& [k, v] : req->headers) {
    EXPECT_NE(k, "Authorization");
    EXPECT_NE(k, "x-amz-date");
  }
  EXPECT_EQ(req->url, "http://127.0.0.1:9000/b/k");
}

}  // namespace
}  // namespace stoker::storage::s3
