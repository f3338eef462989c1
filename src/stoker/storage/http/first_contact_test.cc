// TLS, certificate and name-resolution failures: at an endpoint that never
// answered, one Unavailable error and no retry (the pass ends, whatever
// on_error says); once it has answered, one request's error. And plain
// http(s) reads following redirects.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <string>

#include "stoker/storage/http/http_storage.h"
#include "stoker/storage/http/mock_transport.h"
#include "stoker/storage/http/retry.h"
#include "stoker/storage/s3/s3_storage.h"

namespace stoker::storage::http {
namespace {

Response TlsFailure(const std::string& message, bool first_contact) {
  Response r;
  r.error = NetError::kTls;
  r.error_message = message;
  r.first_contact = first_contact;
  return r;
}

Response Ok(const std::string& body) {
  Response r;
  r.status = 200;
  r.body.assign(body.begin(), body.end());
  return r;
}

Response Redirect(int status, const std::string& location) {
  Response r;
  r.status = status;
  r.headers.emplace_back("location", location);
  return r;
}

std::string Text(const Bytes& b) { return std::string(b.begin(), b.end()); }

TEST(FirstContact, OnlyTlsAndResolveFailuresAtANewOriginCount) {
  EXPECT_TRUE(IsFirstContactFailure(TlsFailure("x", true)));
  EXPECT_FALSE(IsFirstContactFailure(TlsFailure("x", false)));
  Response resolve;
  resolve.error = NetError::kResolve;
  resolve.first_contact = true;
  EXPECT_TRUE(IsFirstContactFailure(resolve));
  EXPECT_FALSE(IsTransient(resolve));  // first contact: not retried
  resolve.first_contact = false;
  EXPECT_TRUE(IsTransient(resolve));   // a name that resolved before: retried
  Response refused;
  refused.error = NetError::kConnect;
  refused.first_contact = true;  // not a TLS or name failure: retried as before
  EXPECT_FALSE(IsFirstContactFailure(refused));
  EXPECT_TRUE(IsTransient(refused));
  EXPECT_FALSE(IsTransient(TlsFailure("x", false)));
}

TEST(FirstContact, ReasonsInWords) {
  const auto why = [](const std::string& m) { return DescribeNetFailure(TlsFailure(m, true)); };
  EXPECT_EQ(why("SSL certificate problem: certificate has expired")
                .find("the server's certificate has expired: SSL certificate problem"),
            0u);
  EXPECT_NE(why("SSL certificate problem: unable to get local issuer certificate").find("unknown CA"),
            std::string::npos);
  EXPECT_NE(why("SSL certificate problem: self-signed certificate in certificate chain")
                .find("unknown CA"),
            std::string::npos);
  EXPECT_NE(why("SSL: no alternative certificate subject name matches target host name '127.0.0.1'")
                .find("wrong host name"),
            std::string::npos);
  EXPECT_NE(why("OpenSSL SSL_connect: wrong version number").find("the TLS handshake failed"),
            std::string::npos);
}

TEST(FirstContact, OriginOfAUrl) {
  EXPECT_EQ(OriginOf("HTTPS://Example.COM:8443/a/b?x=1"), "https://example.com:8443");
  EXPECT_EQ(OriginOf("http://user:pw@host/x"), "http://host");
  EXPECT_EQ(OriginOf("https://host"), "https://host");
  EXPECT_EQ(OriginOf("https://[::1]:9000/k"), "https://[::1]:9000");
}

TEST(FirstContact, HttpStorageFailsOnceUnavailableAndDoesNotRetry) {
  auto mock = std::make_unique<MockTransport>([](const Request&) {
    return TlsFailure("SSL certificate problem: unable to get local issuer certificate", true);
  });
  auto state = mock->state();
  HttpStorage storage(std::move(mock), DispatcherOptions{.retry = {.max_attempts = 0}});
  auto r = storage.Read("https://data.example:8443/a/1.jpg");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  const std::string& m = r.status().message();
  EXPECT_NE(m.find("https://data.example:8443/a/1.jpg"), std::string::npos) << m;
  EXPECT_NE(m.find("at https://data.example:8443"), std::string::npos) << m;
  EXPECT_NE(m.find("unknown CA"), std::string::npos) << m;
  EXPECT_EQ(state->sent().size(), 1u);  // no retry
}

TEST(FirstContact, AfterAnAnswerATlsFailureIsOneRequestsIoError) {
  auto mock = std::make_unique<MockTransport>([](const Request&) {
    return TlsFailure("SSL certificate problem: certificate has expired", false);
  });
  auto state = mock->state();
  HttpStorage storage(std::move(mock), DispatcherOptions{.retry = {.max_attempts = 0}});
  auto r = storage.Read("https://data.example/a/1.jpg");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIOError);
  EXPECT_NE(r.status().message().find("has expired"), std::string::npos) << r.status().message();
  EXPECT_EQ(state->sent().size(), 1u);  // a certificate does not fix itself: no retry
}

TEST(FirstContact, S3ReplyNamesTheEndpoint) {
  s3::S3Config cfg;
  cfg.endpoint_url = "https://minio.internal:9000";
  const auto v = s3::ClassifyS3Reply(
      TlsFailure("SSL: no alternative certificate subject name matches target host name 'x'", true),
      "s3://b/k", s3::S3Uri{"b", "k"}, cfg);
  EXPECT_EQ(v.kind, Verdict::kFail);
  EXPECT_EQ(v.status.code(), StatusCode::kUnavailable);
  EXPECT_NE(v.status.message().find("at https://minio.internal:9000"), std::string::npos)
      << v.status.message();
  EXPECT_NE(v.status.message().find("wrong host name"), std::string::npos);
  EXPECT_NE(v.status.message().find("bucket 'b', key 'k'"), std::string::npos);
}

TEST(Redirects, AreFollowedAbsoluteRootedAndRelative) {
  auto mock = std::make_unique<MockTransport>([](const Request& r) {
    if (r.url == "https://a.example/start.jpg") return Redirect(301, "https://b.example/x/one.jpg");
    if (r.url == "https://b.example/x/one.jpg") return Redirect(302, "two.jpg");
    if (r.url == "https://b.example/x/two.jpg") return Redirect(307, "/y/three.jpg#frag");
    if (r.url == "https://b.example/y/three.jpg") return Redirect(308, "//c.example/four.jpg");
    if (r.url == "https://c.example/four.jpg") return Ok("image bytes");
    Response nf;
    nf.status = 404;
    return nf;
  });
  auto state = mock->state();
  HttpStorage storage(std::move(mock));
  auto r = storage.Read("https://a.example/start.jpg");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Text(*r), "image bytes");
  EXPECT_EQ(state->sent().size(), 5u);
  EXPECT_EQ(storage.counters().bytes_read, 11);
}

TEST(Redirects, LoopsAndOtherSchemesEndInAClearError) {
  auto mock = std::make_unique<MockTransport>([](const Request& r) {
    if (r.url.find("/ftp") != std::string::npos) return Redirect(302, "ftp://files.example/x");
    return Redirect(302, "/loop");
  });
  auto state = mock->state();
  HttpStorage storage(std::move(mock));
  auto loop = storage.Read("http://a.example/start");
  ASSERT_FALSE(loop.ok());
  EXPECT_NE(loop.status().message().find("http://a.example/start (redirected to "
                                         "http://a.example/loop): more than 5 redirects"),
            std::string::npos)
      << loop.status().message();
  EXPECT_EQ(state->sent().size(), 6u);  // the request and 5 hops
  auto ftp = storage.Read("http://a.example/ftp");
  ASSERT_FALSE(ftp.ok());
  EXPECT_NE(ftp.status().message().find("not an http(s) URL"), std::string::npos);
}

TEST(Redirects, ToA404IsNotFoundNamingBoth) {
  auto mock = std::make_unique<MockTransport>([](const Request& r) {
    if (r.url == "http://a.example/old") return Redirect(302, "/new");
    Response nf;
    nf.status = 404;
    return nf;
  });
  HttpStorage storage(std::move(mock));
  auto r = storage.Read("http://a.example/old");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("http://a.example/old (redirected to http://a.example/new): "
                                      "HTTP 404"),
            std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace stoker::storage::http
