#include "stoker/storage/http/url.h"

#include <gtest/gtest.h>

namespace stoker::storage::http {
namespace {

TEST(Url, UriEncodeFollowsSigV4) {
  EXPECT_EQ(UriEncode("AZaz09-_.~", false), "AZaz09-_.~");
  EXPECT_EQ(UriEncode("a b+c/d=e&f%", false), "a%20b%2Bc%2Fd%3De%26f%25");
  EXPECT_EQ(UriEncode("a b/c", true), "a%20b/c");
  EXPECT_EQ(UriEncode("\xE1\x88\xB4", true), "%E1%88%B4");
  EXPECT_EQ(UriEncode(std::string("\0", 1), true), "%00");
}

TEST(Url, UriDecode) {
  EXPECT_EQ(*UriDecode("a%20b%2Fc%e2%9c%93"), "a b/c\xE2\x9C\x93");
  EXPECT_EQ(*UriDecode("a+b"), "a+b");
  EXPECT_EQ(*UriDecode("a+b", true), "a b");
  EXPECT_FALSE(UriDecode("%").has_value());
  EXPECT_FALSE(UriDecode("%4").has_value());
  EXPECT_FALSE(UriDecode("%zz").has_value());
  EXPECT_FALSE(UriDecode("ab%").has_value());
}

TEST(Url, ParsesEndpoints) {
  auto u = ParseUrl("http://127.0.0.1:9000");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->scheme, "http");
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 9000);
  EXPECT_EQ(u->path, "");
  EXPECT_EQ(u->Authority(), "127.0.0.1:9000");
  u = ParseUrl("HTTPS://S3.Example.COM:443/base/");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->Origin(), "https://s3.example.com");
  EXPECT_EQ(u->path, "/base");
  u = ParseUrl("http://[::1]:9000/");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "[::1]");
  EXPECT_EQ(u->Authority(), "[::1]:9000");
  u = ParseUrl("http://host:80");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->Authority(), "host");
}

TEST(Url, RejectsBadEndpointsWithoutEchoingSecrets) {
  for (const char* bad : {"", "127.0.0.1:9000", "ftp://h", "http://", "http://:9000",
                          "http://h:0", "http://h:70000", "http://h:9x", "http://h/?q=1",
                          "http://h#f", "http://[::1", "http://h h", "http://[::1]x"}) {
    EXPECT_FALSE(ParseUrl(bad).ok()) << bad;
  }
  auto u = ParseUrl("https://AKIDEXAMPLE:wJalrXUtnFEMI@host/");
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.status().message().find("wJalrXUtnFEMI"), std::string::npos);
  EXPECT_EQ(u.status().message().find("AKIDEXAMPLE"), std::string::npos);
}

// Found by uri_fuzz: "127.:01.0.1" was taken as the host, a host with a ':'
// that curl would split into host "127." and port "01.0.1".
TEST(Url, FuzzFindingColonInHostIsRefused) {
  for (const char* bad : {"http://127.:01.0.1://bucketin/train/", "http://a:b:80", "http://h]:80",
                          "http://[::1]]", "http://[[::1]", "http://[::1/x]:80", "http://[g::1]",
                          "http://a[b"}) {
    auto u = ParseUrl(bad);
    ASSERT_FALSE(u.ok()) << bad << " parsed as host " << u->host;
    EXPECT_NE(u.status().message().find("endpoint URL"), std::string::npos) << u.status().ToString();
  }
  // What stays accepted: IPv6 literals (with a port or not) and an empty port.
  for (const char* good : {"http://[::1]", "http://[2001:db8::7]:9000/b", "http://[::ffff:1.2.3.4]",
                           "http://host:/"}) {
    EXPECT_TRUE(ParseUrl(good).ok()) << good;
  }
}

}  // namespace
}  // namespace stoker::storage::http
