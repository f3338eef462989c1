#include "stoker/storage/s3/request.h"

#include <gtest/gtest.h>

namespace stoker::storage::s3 {
namespace {

TEST(S3Uri, ParsesBucketAndKey) {
  auto u = ParseS3Uri("s3://bucket/prefix/a b/c.jpg");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->bucket, "bucket");
  EXPECT_EQ(u->key, "prefix/a b/c.jpg");
  u = ParseS3Uri("s3://bucket");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->key, "");
  u = ParseS3Uri("s3://bucket/");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->key, "");
  u = ParseS3Uri("s3://b/train/");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->key, "train/");
  // Keys are literal: no decoding, no dot segments removed.
  u = ParseS3Uri("s3://b/a/../%20x//y");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->key, "a/../%20x//y");
  EXPECT_EQ(FormatS3Uri("b", "k/x"), "s3://b/k/x");
}

TEST(S3Uri, RejectsWhatCannotBeABucket) {
  EXPECT_FALSE(ParseS3Uri("s3:///key").ok());
  EXPECT_FALSE(ParseS3Uri("s3://").ok());
  EXPECT_FALSE(ParseS3Uri("gs://bucket/key").ok());
  EXPECT_FALSE(ParseS3Uri("s3://buck?et/key").ok());
  EXPECT_FALSE(ParseS3Uri("s3://user@host/key").ok());
  EXPECT_FALSE(ParseS3Uri("s3://b/" + std::string(1025, 'k')).ok());
}

S3Config Config(const std::string& endpoint, const std::string& region = "us-east-1") {
  S3Config c;
  c.endpoint_url = endpoint;
  c.region = region;
  c.credentials = {"AKIDEXAMPLE", "secret", ""};
  return c;
}

std::string HeaderOf(const http::Request& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "<none>";
}

TEST(RequestBuilder, PathStyleForCustomEndpoints) {
  auto b = RequestBuilder::Create(Config("http://127.0.0.1:9000"));
  ASSERT_TRUE(b.ok());
  auto r = b->Build("GET", "my.bucket", "train/a b+c~.jpg", {}, {}, std::chrono::system_clock::now());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->url, "http://127.0.0.1:9000/my.bucket/train/a%20b%2Bc~.jpg");
  EXPECT_EQ(HeaderOf(*r, "Host"), "127.0.0.1:9000");
  EXPECT_NE(HeaderOf(*r, "Authorization").find("Credential=AKIDEXAMPLE/"), std::string::npos);
  EXPECT_EQ(HeaderOf(*r, "x-amz-content-sha256"), kEmptySha256);

  // A base path and a default port; dot segments survive.
  b = RequestBuilder::Create(Config("https://Storage.Example.com:443/s3/"));
  ASSERT_TRUE(b.ok());
  r = b->Build("GET", "b", "./x/../y", {{"list-type", "2"}}, {}, std::chrono::system_clock::now());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->url, "https://storage.example.com/s3/b/./x/../y?list-type=2");
  EXPECT_EQ(HeaderOf(*r, "Host"), "storage.example.com");
}

TEST(RequestBuilder, VirtualHostedForAws) {
  auto b = RequestBuilder::Create(Config("", "eu-west-1"));
  ASSERT_TRUE(b.ok());
  auto r = b->Build("GET", "my-bucket", "k", {}, {}, std::chrono::system_clock::now());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->url, "https://my-bucket.s3.eu-west-1.amazonaws.com/k");
  EXPECT_EQ(HeaderOf(*r, "Host"), "my-bucket.s3.eu-west-1.amazonaws.com");
  // Listing the bucket root.
  r = b->Build("GET", "my-bucket", "", {{"list-type", "2"}, {"prefix", "a/"}}, {},
               std::chrono::system_clock::now());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->url, "https://my-bucket.s3.eu-west-1.amazonaws.com/?list-type=2&prefix=a%2F");
  // Dots would break the TLS wildcard; upper case and '_' are not DNS names.
  EXPECT_EQ(b->ObjectUrl("my.bucket", "k"), "https://s3.eu-west-1.amazonaws.com/my.bucket/k");
  EXPECT_EQ(b->ObjectUrl("My_Bucket", "k"), "https://s3.eu-west-1.amazonaws.com/My_Bucket/k");
  EXPECT_EQ(b->ObjectUrl("ab", "k"), "https://s3.eu-west-1.amazonaws.com/ab/k");
  // China.
  b = RequestBuilder::Create(Config("", "cn-north-1"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->ObjectUrl("bkt", "k"), "https://bkt.s3.cn-north-1.amazonaws.com.cn/k");
}

TEST(RequestBuilder, AddressingStyleFromConfig) {
  S3Config c = Config("", "us-east-1");
  c.addressing = AddressingStyle::kPath;
  auto b = RequestBuilder::Create(c);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->ObjectUrl("bkt", "k"), "https://s3.us-east-1.amazonaws.com/bkt/k");
  c = Config("http://minio.local:9000");
  c.addressing = AddressingStyle::kVirtual;
  b = RequestBuilder::Create(c);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->ObjectUrl("bkt", "k"), "http://bkt.minio.local:9000/k");
}

TEST(RequestBuilder, SessionTokenIsSentAndSigned) {
  S3Config c = Config("http://h:1");
  c.credentials.session_token = "tok";
  auto b = RequestBuilder::Create(c);
  ASSERT_TRUE(b.ok());
  auto r = b->Build("GET", "b", "k", {}, {}, std::chrono::system_clock::now());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(HeaderOf(*r, "x-amz-security-token"), "tok");
  EXPECT_NE(HeaderOf(*r, "Authorization").find("x-amz-security-token"), std::string::npos);
}

TEST(RequestBuilder, RejectsBadRegionsAndEndpoints) {
  EXPECT_FALSE(RequestBuilder::Create(Config("", "us-east-1.evil.com/")).ok());
  EXPECT_FALSE(RequestBuilder::Create(Config("", "")).ok());
  EXPECT_FALSE(RequestBuilder::Create(Config("ftp://h")).ok());
  EXPECT_FALSE(RequestBuilder::Create(Config("127.0.0.1:9000")).ok());
  auto bad = RequestBuilder::Create(Config("http://AKID:SECRETVALUE@host:9000"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message().find("SECRETVALUE"), std::string::npos);
}

}  // namespace
}  // namespace stoker::storage::s3
