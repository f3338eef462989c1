// Both transports (libcurl's and the epoll one) against a scripted HTTP
// server on loopback: stalls before the reply and inside its body are cut by
// the read timeout, a slow reply that keeps coming is not, a request's own
// deadline cuts an attempt, and a closed port is a connect error; request
// bodies go out whole with their length, an early reply to an upload is its
// answer, and an upload that keeps going is not a stall. Then the
// epoll transport's HTTP/1.1 on its own: keep-alive reuse, a stale reused
// connection, chunked, read-until-close and 1xx replies, HEAD, bodies in
// pieces and into recycled buffers, bad replies, hundreds in flight.
#include "stoker/storage/testing/pattern.h"
#include "stoker/storage/http/curl_transport.h"
#include "stoker/storage/http/epoll_transport.h"
#include "stoker/storage/http/retry.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace stoker::storage::http {
namespace {

using std::chrono::milliseconds;

// ---- TLS for the scripted server --------------------------------------------

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertFree {
  void operator()(X509* c) const { X509_free(c); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;

Key NewKey() { return Key(EVP_EC_gen("P-256")); }

// A certificate for `key`, signed by `issuer_key` (itself when no issuer
// certificate is given: a CA), valid from `from_days` to `to_days` from now.
Cert MakeCert(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key,
              const std::string& san, long from_days, long to_days) {
  Cert c(X509_new());
  X509_set_version(c.get(), 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(c.get()), ++serial);
  X509_gmtime_adj(X509_getm_notBefore(c.get()), from_days * 86400);
  X509_gmtime_adj(X509_getm_notAfter(c.get()), to_days * 86400);
  X509_set_pubkey(c.get(), key);
  X509_NAME* name = X509_get_subject_name(c.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(c.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : c.get(), c.get(), nullptr, nullptr, 0);
  const auto add = [&](int nid, const std::string& value) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    ASSERT_NE(ext, nullptr) << value;
    X509_add_ext(c.get(), ext, -1);
    X509_EXTENSION_free(ext);
  };
  if (issuer) {
    add(NID_subject_alt_name, san);
  } else {
    add(NID_basic_constraints, "critical,CA:TRUE");
    add(NID_key_usage, "critical,keyCertSign,cRLSign");
  }
  X509_sign(c.get(), issuer_key, EVP_sha256());
  return c;
}

// A test CA (written to a PEM file, the ca_bundle the client trusts) and
// server certificates: one for 127.0.0.1, one for another host name, an
// expired one, and one from a CA nobody trusts. Made by the test run; no
// certificate is kept in the tree.
struct TestPki {
  Key ca_key = NewKey();
  Cert ca = MakeCert(ca_key.get(), "stoker test CA", nullptr, ca_key.get(), "", -1, 30);
  Key other_ca_key = NewKey();
  Cert other_ca = MakeCert(other_ca_key.get(), "untrusted CA", nullptr, other_ca_key.get(), "", -1, 30);
  Key key = NewKey();
  Cert good = MakeCert(key.get(), "127.0.0.1", ca.get(), ca_key.get(), "IP:127.0.0.1,DNS:localhost", -1, 30);
  Cert wrong_host = MakeCert(key.get(), "wrong-host.invalid", ca.get(), ca_key.get(),
                             "DNS:wrong-host.invalid", -1, 30);
  Cert expired = MakeCert(key.get(), "127.0.0.1", ca.get(), ca_key.get(), "IP:127.0.0.1", -30, -1);
  Cert unknown_ca = MakeCert(key.get(), "127.0.0.1", other_ca.get(), other_ca_key.get(),
                             "IP:127.0.0.1", -1, 30);
  std::string ca_file;

  TestPki() {
    char path[] = "/tmp/stoker-test-ca-XXXXXX";
    const int fd = ::mkstemp(path);
    EXPECT_GE(fd, 0);
    ca_file = path;
    FILE* f = ::fdopen(fd, "w");
    PEM_write_X509(f, ca.get());
    std::fclose(f);
  }
  ~TestPki() { std::remove(ca_file.c_str()); }

  // A server context showing `cert`.
  SSL_CTX* Server(X509* cert) const {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(ctx, cert);
    SSL_CTX_use_PrivateKey(ctx, key.get());
    return ctx;
  }
};

const TestPki& Pki() {
  static const TestPki* pki = new TestPki;
  return *pki;
}

// One accepted connection, plain or TLS, as a server script sees it.
class Peer {
 public:
  Peer(int fd, SSL* ssl) : fd_(fd), ssl_(ssl) {}
  void Send(const std::string& s) {
    if (ssl_) {
      SSL_write(ssl_, s.data(), static_cast<int>(s.size()));
    } else {
      ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
    }
  }
  // The next request head ("" once the client closed the connection).
  std::string ReadHead() {
    std::string head;
    char c;
    while (head.find("\r\n\r\n") == std::string::npos && Recv(&c)) head += c;
    return head.find("\r\n\r\n") == std::string::npos ? "" : head;
  }
  // Up to `n` bytes (fewer if the client closes first), read at most
  // `piece` at a time.
  std::string ReadBytes(size_t n, size_t piece = size_t{1} << 16) {
    std::string out;
    std::vector<char> buf(piece);
    while (out.size() < n) {
      const int want = static_cast<int>(std::min(piece, n - out.size()));
      const int got = ssl_ ? SSL_read(ssl_, buf.data(), want)
                           : static_cast<int>(::recv(fd_, buf.data(), want, 0));
      if (got <= 0) break;
      out.append(buf.data(), static_cast<size_t>(got));
    }
    return out;
  }
  // The TLS suite negotiated ("" for plain http).
  std::string Cipher() const { return ssl_ ? SSL_get_cipher_name(ssl_) : ""; }
  // Everything until the client closes.
  void Drain() {
    char buf[4096];
    while ((ssl_ ? SSL_read(ssl_, buf, sizeof(buf)) : ::recv(fd_, buf, sizeof(buf), 0)) > 0) {
    }
  }

 private:
  bool Recv(char* c) { return ssl_ ? SSL_read(ssl_, c, 1) == 1 : ::recv(fd_, c, 1, 0) == 1; }
  int fd_;
  SSL* ssl_;
};

// Serves each connection on its own thread with `script(peer)` after reading
// the request head (unless `read_head` is false: the script reads requests
// itself, Peer::ReadHead). With `tls` (a server context, taken over), every
// connection is TLS: the handshake comes first, and the server counts
// handshakes and resumed sessions. Closes everything when destroyed.
class ScriptedServer {
 public:
  explicit ScriptedServer(std::function<void(Peer&)> script, bool read_head = true,
                          SSL_CTX* tls = nullptr)
      : script_(std::move(script)),
        read_head_(read_head),
        tls_(tls ? tls : https_by_default ? Pki().Server(Pki().good.get()) : nullptr) {
    std::signal(SIGPIPE, SIG_IGN);  // a client gone away: EPIPE, not the end of the test
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    EXPECT_EQ(::listen(listen_fd_, 1024), 0);  // room for HundredsInFlight
    accept_thread_ = std::thread([this] {
      while (true) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0 || stop_) {
          if (fd >= 0) ::close(fd);
          return;
        }
        ++accepted_;
        conn_threads_.emplace_back([this, fd] {
          SSL* ssl = nullptr;
          if (tls_) {
            ssl = SSL_new(tls_);
            SSL_set_fd(ssl, fd);
            if (SSL_accept(ssl) != 1) {  // the client refused the certificate
              SSL_free(ssl);
              ::close(fd);
              return;
            }
            ++handshakes_;
            if (SSL_session_reused(ssl)) ++resumed_;
          }
          Peer peer(fd, ssl);
          if (read_head_) peer.ReadHead();
          script_(peer);
          if (ssl) {
            SSL_shutdown(ssl);
            SSL_free(ssl);
          }
          ::close(fd);
        });
      }
    });
  }
  ~ScriptedServer() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    accept_thread_.join();
    for (auto& t : conn_threads_) t.join();
    ::close(listen_fd_);
    if (tls_) SSL_CTX_free(tls_);
  }
  std::string url() const {
    return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) + "/obj";
  }
  int port() const { return port_; }
  // Set by the fixtures that run a case over both schemes: servers made
  // without a context of their own speak TLS (the good certificate).
  static inline bool https_by_default = false;
  int accepted() const { return accepted_; }
  int handshakes() const { return handshakes_; }  // TLS handshakes completed
  int resumed() const { return resumed_; }        // of which resumed a session

 private:
  std::function<void(Peer&)> script_;
  const bool read_head_;
  SSL_CTX* const tls_;
  std::atomic<int> accepted_{0};
  std::atomic<int> handshakes_{0};
  std::atomic<int> resumed_{0};
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread accept_thread_;
  std::vector<std::thread> conn_threads_;  // touched by the accept thread only, until joined
};

const std::string kHead = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";

// A one-shot event between the test and a server script (a server-side
// hook): a stalled reply is held until the test opens the gate, which it
// does once the client has its answer. A client that got a timeout was
// therefore cut while the server still held the reply: nothing is timed.
// (A transport that never cut would hang; Send() below turns that into a
// failure.)
class Gate {
 public:
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

Response Send(Transport& t, Request r) {
  std::promise<Response> p;
  auto f = p.get_future();
  t.Send(std::move(r), std::chrono::nanoseconds(0), [&p](Response resp) { p.set_value(std::move(resp)); });
  // Only a guard against a hang: every case here ends in well under 5 s.
  if (f.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    ADD_FAILURE() << "no response within 30 s";
    std::abort();
  }
  return f.get();
}

Response Get(Transport& t, const std::string& url, milliseconds timeout = milliseconds(0)) {
  Request r;
  r.url = url;
  r.timeout = timeout;
  return Send(t, std::move(r));
}

// Trusts the test CA (Pki()).
CurlOptions Options(long read_timeout_ms) {
  CurlOptions o;
  o.read_timeout_ms = read_timeout_ms;
  o.ca_bundle = Pki().ca_file;
  return o;
}

// A case over http:// and over https:// (GetParam()).
class EitherScheme {
 protected:
  void Use(bool https) { ScriptedServer::https_by_default = https; }
  ~EitherScheme() { ScriptedServer::https_by_default = false; }
};

// The timeout cases run on both transports, over both schemes.
using Factory = std::unique_ptr<Transport> (*)(const CurlOptions&);
class AnyTransport : public ::testing::TestWithParam<std::tuple<Factory, bool>>,
                     protected EitherScheme {
 protected:
  void SetUp() override { Use(std::get<1>(GetParam())); }
  std::unique_ptr<Transport> Make(const CurlOptions& o) { return std::get<0>(GetParam())(o); }
  std::string Scheme() const { return std::get<1>(GetParam()) ? "https" : "http"; }
};
INSTANTIATE_TEST_SUITE_P(Transports, AnyTransport,
                         ::testing::Combine(::testing::Values(&NewCurlTransport, &NewEpollTransport),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) == &NewCurlTransport ? "Curl"
                                                                                           : "Epoll") +
                                  (std::get<1>(info.param) ? "Https" : "Http");
                         });

TEST_P(AnyTransport, StallBeforeTheFirstByteIsCutByTheReadTimeout) {
  Gate answered;
  ScriptedServer server([&](Peer& p) {
    answered.Wait();  // the reply comes only after the client gave up
    p.Send(kHead + "0123456789");
  });
  auto t = Make(Options(300));
  const Response r = Get(*t, server.url());
  answered.Open();
  EXPECT_EQ(r.error, NetError::kTimeout) << r.error_message;
  EXPECT_NE(r.error_message.find("(read timeout 0.3 s)"), std::string::npos) << r.error_message;
}

TEST_P(AnyTransport, StallInsideTheBodyIsCutByTheReadTimeout) {
  Gate answered;
  ScriptedServer server([&](Peer& p) {
    p.Send(kHead + "01234");
    answered.Wait();  // the rest comes only after the client gave up
    p.Send("56789");
  });
  auto t = Make(Options(300));
  const Response r = Get(*t, server.url());
  answered.Open();
  EXPECT_EQ(r.error, NetError::kTimeout) << r.error_message;
  EXPECT_TRUE(r.body.empty());
}

TEST_P(AnyTransport, SlowReplyThatKeepsComingIsNotCut) {
  // Thirty pieces 100 ms apart: 3 s in all, well over the 2 s read timeout,
  // never silent for a twentieth of it (a wide margin: on a loaded machine a
  // sleeping thread can wake hundreds of milliseconds late). The sleeps pace
  // the server, they synchronise nothing: each is a lower bound, so the reply
  // takes at least 30 x 100 ms whatever the machine's load.
  constexpr size_t kPieces = 30;
  constexpr milliseconds kGap{100};
  constexpr milliseconds kReadTimeout{2000};
  static_assert(static_cast<int>(kPieces) * kGap > kReadTimeout,
                "the case is a reply longer than the read timeout");
  const std::string body(60, 'x');
  ScriptedServer server([&](Peer& p) {
    const std::string all =
        "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    for (size_t i = 0; i < kPieces; ++i) {  // exactly kPieces pieces, none empty
      const size_t begin = all.size() * i / kPieces, end = all.size() * (i + 1) / kPieces;
      std::this_thread::sleep_for(kGap);
      p.Send(all.substr(begin, end - begin));
    }
  });
  auto t = Make(Options(kReadTimeout.count()));
  const Response r = Get(*t, server.url());
  ASSERT_EQ(r.error, NetError::kNone) << r.error_message;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.BodyText(), body);
}

TEST_P(AnyTransport, RequestTimeoutCutsAnAttemptWithoutAReadTimeout) {
  Gate answered;
  ScriptedServer server([&](Peer& p) {
    answered.Wait();  // the reply comes only after the client gave up
    p.Send(kHead + "0123456789");
  });
  auto t = Make(Options(0));  // no read timeout: only the request's own
  const Response r = Get(*t, server.url(), milliseconds(200));
  answered.Open();
  EXPECT_EQ(r.error, NetError::kTimeout) << r.error_message;
}

TEST_P(AnyTransport, ClosedPortIsAConnectError) {
  int port;
  {
    ScriptedServer gone([](Peer&) {});
    port = std::stoi(gone.url().substr(gone.url().rfind(':') + 1));
  }
  auto t = Make(Options(300));
  const Response r = Get(*t, Scheme() + "://127.0.0.1:" + std::to_string(port) + "/obj");
  EXPECT_EQ(r.error, NetError::kConnect) << r.error_message;
}

// The value of header `name` (lower-case) in a request head, "" if absent.
std::string HeadHeader(const std::string& head, const std::string& name) {
  std::string lower;
  for (char c : head) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const size_t p = lower.find("\r\n" + name + ":");
  if (p == std::string::npos) return "";
  size_t v = p + name.size() + 3;
  while (v < head.size() && head[v] == ' ') ++v;
  return head.substr(v, head.find("\r\n", v) - v);
}

using storage::testing::Pattern;

// Requests with bodies: PUT and POST send exactly the body with its
// Content-Length, a large one (many sends) as a small one (sent with the
// head); DELETE and an empty PUT send none.
TEST_P(AnyTransport, SendsRequestBodiesWithTheirLength) {
  struct Seen {
    std::string head, body;
  };
  std::mutex mu;
  std::vector<Seen> seen;
  ScriptedServer server(
      [&](Peer& p) {
        for (;;) {
          const std::string head = p.ReadHead();
          if (head.empty()) return;
          const std::string len = HeadHeader(head, "content-length");
          std::string body = len.empty() ? "" : p.ReadBytes(std::stoull(len));
          const std::string reply = std::to_string(body.size());
          {
            std::lock_guard<std::mutex> lock(mu);
            seen.push_back({head, std::move(body)});
          }
          p.Send("HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: " +
                 std::to_string(reply.size()) + "\r\n\r\n" + reply);
        }
      },
      /*read_head=*/false);
  auto t = Make(Options(5000));
  const std::string big = Pattern(3 << 20, 1), small = "<Complete/>";
  struct Case {
    const char* method;
    std::shared_ptr<const std::string> body;
  };
  const Case cases[] = {{"PUT", std::make_shared<const std::string>(big)},
                        {"POST", std::make_shared<const std::string>(small)},
                        {"PUT", std::make_shared<const std::string>()},
                        {"DELETE", nullptr},
                        {"PUT", std::make_shared<const std::string>(big)}};
  for (const Case& c : cases) {
    Request r;
    r.method = c.method;
    r.url = server.url() + "?partNumber=1";
    r.body = c.body;
    r.headers = {{"x-amz-content-sha256", "abc"}};
    const Response resp = Send(*t, std::move(r));
    ASSERT_EQ(resp.error, NetError::kNone) << c.method << ": " << resp.error_message;
    EXPECT_EQ(resp.status, 200);
    EXPECT_EQ(resp.BodyText(), std::to_string(c.body ? c.body->size() : 0)) << c.method;
  }
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(seen.size(), std::size(cases));
  for (size_t i = 0; i < seen.size(); ++i) {
    SCOPED_TRACE(i);
    const Case& c = cases[i];
    EXPECT_EQ(seen[i].head.rfind(std::string(c.method) + " /obj?partNumber=1 HTTP/1.1\r\n", 0), 0u)
        << seen[i].head;
    EXPECT_EQ(HeadHeader(seen[i].head, "x-amz-content-sha256"), "abc");
    EXPECT_EQ(HeadHeader(seen[i].head, "expect"), "");  // no 100-continue round trip
    EXPECT_EQ(HeadHeader(seen[i].head, "transfer-encoding"), "");
    if (c.body) {
      EXPECT_EQ(HeadHeader(seen[i].head, "content-length"), std::to_string(c.body->size()));
      EXPECT_TRUE(seen[i].body == *c.body) << seen[i].body.size() << " bytes";
    } else {
      const std::string len = HeadHeader(seen[i].head, "content-length");
      EXPECT_TRUE(len.empty() || len == "0") << len;
    }
  }
}

// A server that answers an upload before taking its body (S3 refusing it):
// the reply is the answer, not a reset, though the body never went out.
TEST_P(AnyTransport, AReplyBeforeTheBodyIsTakenIsTheAnswer) {
  Gate answered;
  ScriptedServer server([&](Peer& p) {
    const std::string xml = "<Error><Code>AccessDenied</Code></Error>";
    p.Send("HTTP/1.1 403 Forbidden\r\nContent-Length: " + std::to_string(xml.size()) +
           "\r\n\r\n" + xml);
    answered.Wait();  // not a byte of the body read until the client has its answer
    p.Drain();
  });
  auto t = Make(Options(5000));
  Request r;
  r.method = "PUT";
  r.url = server.url();
  r.body = std::make_shared<const std::string>(Pattern(64 << 20, 2));  // more than socket buffers hold
  const Response resp = Send(*t, std::move(r));
  answered.Open();
  ASSERT_EQ(resp.error, NetError::kNone) << resp.error_message;
  EXPECT_EQ(resp.status, 403);
  EXPECT_EQ(resp.BodyText(), "<Error><Code>AccessDenied</Code></Error>");
}

// An upload that keeps going is not a stall, however long it takes: the
// server takes 1 MiB every 100 ms for 2.4 s, almost five read timeouts of
// 0.5 s, then the rest at once (more than socket buffers hold is still
// unsent when the slow part ends). The sleeps pace the server; nothing is
// timed.
TEST_P(AnyTransport, SlowUploadThatKeepsGoingIsNotCut) {
  constexpr size_t kBody = size_t{40} << 20, kSlow = size_t{24} << 20, kPiece = size_t{1} << 20;
  const std::string body = Pattern(kBody, 3);
  std::string got;
  ScriptedServer server([&](Peer& p) {
    while (got.size() < kSlow) {
      std::this_thread::sleep_for(milliseconds(100));
      const std::string piece = p.ReadBytes(kPiece);
      if (piece.empty()) return;
      got += piece;
    }
    got += p.ReadBytes(kBody - got.size());
    p.Send(kHead + "0123456789");
  });
  auto t = Make(Options(500));
  Request r;
  r.method = "PUT";
  r.url = server.url();
  r.body = std::make_shared<const std::string>(body);
  const Response resp = Send(*t, std::move(r));
  ASSERT_EQ(resp.error, NetError::kNone) << resp.error_message;
  EXPECT_EQ(resp.status, 200);
  EXPECT_TRUE(got == body) << got.size();
}

TEST(CurlTransport, OptionsFromIoOptions) {
  IoOptions io;
  io.connect_timeout_s = 2.5;
  io.read_timeout_s = 0.25;
  CurlOptions c = CurlOptionsFor(io);
  EXPECT_EQ(c.connect_timeout_ms, 2500);
  EXPECT_EQ(c.read_timeout_ms, 250);
  io.read_timeout_s = 0;
  EXPECT_EQ(CurlOptionsFor(io).read_timeout_ms, 0);  // off
}


// ---- the epoll transport's HTTP/1.1, over http:// and https:// ------------

class EpollTransport : public ::testing::TestWithParam<bool>, protected EitherScheme {
 protected:
  void SetUp() override { Use(GetParam()); }
};
INSTANTIATE_TEST_SUITE_P(Schemes, EpollTransport, ::testing::Bool(),
                         [](const auto& info) { return std::string(info.param ? "Https" : "Http"); });

std::string Reply(const std::string& body, const std::string& extra = "") {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra +
         "\r\n" + body;
}

TEST_P(EpollTransport, KeepsConnectionsAliveAndSendsTheRequestAsGiven) {
  std::vector<std::string> heads;
  std::mutex mu;
  ScriptedServer server(
      [&](Peer& p) {
        for (int i = 0;; ++i) {
          const std::string head = p.ReadHead();
          if (head.empty()) return;
          {
            std::lock_guard<std::mutex> lock(mu);
            heads.push_back(head);
          }
          p.Send(Reply("reply " + std::to_string(i)));
        }
      },
      /*read_head=*/false);
  auto t = NewEpollTransport(Options(2000));
  for (int i = 0; i < 3; ++i) {
    Request r;
    r.url = server.url() + "?x=" + std::to_string(i);
    r.headers = {{"X-Amz-Date", "20261124T000000Z"}, {"X-Empty", ""}};
    const Response resp = Send(*t, std::move(r));
    ASSERT_EQ(resp.error, NetError::kNone) << resp.error_message;
    EXPECT_EQ(resp.status, 200);
    EXPECT_EQ(resp.BodyText(), "reply " + std::to_string(i));
    ASSERT_NE(resp.Header("content-length"), nullptr);
    EXPECT_EQ(*resp.Header("content-length"), std::to_string(resp.body.size()));
  }
  EXPECT_EQ(server.accepted(), 1);  // one connection, reused
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(heads.size(), 3u);
  const std::string port = server.url().substr(server.url().rfind(':') + 1, 5);
  EXPECT_EQ(heads[2], "GET /obj?x=2 HTTP/1.1\r\nHost: 127.0.0.1:" +
                          port.substr(0, port.find('/')) +
                          "\r\nX-Amz-Date: 20261124T000000Z\r\nX-Empty:\r\n\r\n");
}

TEST_P(EpollTransport, ResendsOnceWhenAReusedConnectionWasClosed) {
  // The first connection answers one request, then reads the next and
  // closes without a reply (a server dropping an idle keep-alive connection
  // just as it is reused); the second connection answers normally.
  std::atomic<int> conn{0};
  ScriptedServer server(
      [&](Peer& p) {
        const int n = conn++;
        for (int i = 0;; ++i) {
          if (p.ReadHead().empty()) return;
          if (n == 0 && i == 1) return;  // closed under the second request
          p.Send(Reply("ok"));
        }
      },
      /*read_head=*/false);
  auto t = NewEpollTransport(Options(2000));
  for (int i = 0; i < 2; ++i) {
    const Response r = Get(*t, server.url());
    ASSERT_EQ(r.error, NetError::kNone) << i << ": " << r.error_message;
    EXPECT_EQ(r.BodyText(), "ok");
  }
  EXPECT_EQ(server.accepted(), 2);
}

TEST_P(EpollTransport, ANewConnectionClosedBeforeTheReplyIsAReset) {
  ScriptedServer server([](Peer&) {});  // reads the request, closes
  auto t = NewEpollTransport(Options(2000));
  const Response r = Get(*t, server.url());
  EXPECT_EQ(r.error, NetError::kReset) << r.error_message;
  EXPECT_EQ(server.accepted(), 1);  // not resent: the connection was new
}

TEST_P(EpollTransport, BodyCutShortIsAReset) {
  ScriptedServer server([](Peer& p) {
    p.Send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
  });
  auto t = NewEpollTransport(Options(2000));
  const Response r = Get(*t, server.url());
  EXPECT_EQ(r.error, NetError::kReset) << r.error_message;
  EXPECT_TRUE(r.body.empty());
}

TEST_P(EpollTransport, ChunkedBodiesWithExtensionsAndTrailers) {
  ScriptedServer server([](Peer& p) {
    p.Send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    p.Send("5;ext=1\r\nhello\r\n");
    std::this_thread::sleep_for(milliseconds(20));
    p.Send("1");
    std::this_thread::sleep_for(milliseconds(20));
    p.Send("2\r\n, world, and more \r\n0\r\nX-Trailer: 1\r\n\r\n");  // 0x12 bytes
  });
  auto t = NewEpollTransport(Options(2000));
  const Response r = Get(*t, server.url());
  ASSERT_EQ(r.error, NetError::kNone) << r.error_message;
  EXPECT_EQ(r.BodyText(), "hello, world, and more ");
}

TEST_P(EpollTransport, BodyWithoutLengthEndsWhenTheServerCloses) {
  ScriptedServer server([](Peer& p) {
    p.Send("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nfirst ");
    std::this_thread::sleep_for(milliseconds(20));
    p.Send("second");
  });
  auto t = NewEpollTransport(Options(2000));
  const Response r = Get(*t, server.url());
  ASSERT_EQ(r.error, NetError::kNone) << r.error_message;
  EXPECT_EQ(r.BodyText(), "first second");
}

TEST_P(EpollTransport, SkipsInterimRepliesAndReadsHeadWithoutBody) {
  ScriptedServer server(
      [](Peer& p) {
        p.ReadHead();
        p.Send("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nETag: \"e\"\r\n"
                                 "Content-Length: 3\r\n\r\nabc");
        p.ReadHead();  // HEAD: a length, no body
        p.Send("HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n");
        p.ReadHead();
        p.Send("HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!");
      },
      /*read_head=*/false);
  auto t = NewEpollTransport(Options(2000));
  Response r = Get(*t, server.url());
  ASSERT_EQ(r.error, NetError::kNone) << r.error_message;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.BodyText(), "abc");
  ASSERT_NE(r.Header("etag"), nullptr);
  EXPECT_EQ(*r.Header("etag"), "\"e\"");
  Request head;
  head.method = "HEAD";
  head.url = server.url();
  r = Send(*t, std::move(head));
  ASSERT_EQ(r.error, NetError::kNone) << r.error_message;
  EXPECT_EQ(*r.Header("content-length"), "12345");
  EXPECT_TRUE(r.body.empty());
  r = Get(*t, server.url());
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.BodyText(), "nope!");
  EXPECT_EQ(server.accepted(), 1);
}

TEST_P(EpollTransport, ConnectionCloseIsHonoured) {
  ScriptedServer server([](Peer& p) { p.Send(Reply("x", "Connection: close\r\n")); });
  auto t = NewEpollTransport(Options(2000));
  for (int i = 0; i < 3; ++i) ASSERT_EQ(Get(*t, server.url()).BodyText(), "x");
  EXPECT_EQ(server.accepted(), 3);
}

TEST_P(EpollTransport, LargeBodyInPiecesIntoARecycledBuffer) {
  std::string body(3 << 20, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 2654435761u >> 13);
  ScriptedServer server([&](Peer& p) {
    const std::string all = Reply(body);
    for (size_t i = 0; i < all.size(); i += 100000) {
      p.Send(all.substr(i, 100000));
      if (i % 700000 == 0) std::this_thread::sleep_for(milliseconds(5));
    }
  });
  auto recycler = std::make_shared<BufferRecycler>();
  {
    BufferRecycler::Bytes kept;
    kept.reserve(BufferRecycler::SizeClass(body.size()));
    recycler->Put(std::move(kept));
  }
  auto t = NewEpollTransport(Options(2000));
  Request r;
  r.url = server.url();
  r.body_buffers = recycler;
  const Response resp = Send(*t, std::move(r));
  ASSERT_EQ(resp.error, NetError::kNone) << resp.error_message;
  EXPECT_TRUE(resp.BodyText() == body);
  EXPECT_EQ(recycler->kept(), 0u);  // the body came in the kept buffer
}

TEST_P(EpollTransport, BadRepliesFailWithTheReason) {
  for (const std::string& reply :
       {std::string("SSH-2.0-OpenSSH\r\n\r\n"), std::string("HTTP/1.1 2x0 OK\r\n\r\n"),
        std::string("HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n"),
        std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")}) {
    ScriptedServer server([&](Peer& p) { p.Send(reply); });
    auto t = NewEpollTransport(Options(2000));
    const Response r = Get(*t, server.url());
    EXPECT_EQ(r.error, NetError::kOther) << reply;
    EXPECT_NE(r.error_message.find("bad reply from the server"), std::string::npos)
        << r.error_message;
  }
}

TEST(EpollTransportUrls, RefusesWhatItCannotSend) {
  auto t = NewEpollTransport(Options(2000));
  for (const char* url : {"ftp://127.0.0.1:1/x", "http://user:pw@127.0.0.1:1/x",
                          "https://user:pw@127.0.0.1:1/x", "http:///x",
                          "http://127.0.0.1:99999999/x"}) {
    const Response r = Get(*t, url);
    EXPECT_EQ(r.error, NetError::kOther) << url;
    EXPECT_EQ(r.error_message.find("pw"), std::string::npos) << r.error_message;
  }
}

TEST_P(EpollTransport, HundredsInFlight) {
  ScriptedServer server(
      [](Peer& p) {
        for (std::string head; !(head = p.ReadHead()).empty();) {
          const size_t a = head.find("?n=") + 3;
          const std::string n = head.substr(a, head.find(' ', a) - a);
          p.Send(Reply(std::string(1000 + std::stoi(n), 'a' + std::stoi(n) % 26)));
        }
      },
      /*read_head=*/false);
  auto t = NewEpollTransport(Options(5000));
  constexpr int kN = 300;
  std::vector<std::promise<Response>> done(kN);
  for (int i = 0; i < kN; ++i) {
    Request r;
    r.url = server.url() + "?n=" + std::to_string(i);
    t->Send(std::move(r), std::chrono::nanoseconds(i % 3 == 0 ? 1000000 : 0),
            [&done, i](Response resp) { done[i].set_value(std::move(resp)); });
  }
  for (int i = 0; i < kN; ++i) {
    const Response r = done[i].get_future().get();
    ASSERT_EQ(r.error, NetError::kNone) << i << ": " << r.error_message;
    EXPECT_EQ(r.BodyText(), std::string(1000 + i, 'a' + i % 26)) << i;
  }
  EXPECT_LE(server.accepted(), kN);
}

TEST_P(EpollTransport, ShutdownCancelsWhatIsInFlight) {
  Gate received, done;
  ScriptedServer server([&](Peer&) {
    received.Open();  // the request is in flight: its head has arrived
    done.Wait();
  });
  auto t = NewEpollTransport(Options(0));
  std::promise<Response> p;
  Request r;
  r.url = server.url();
  t->Send(std::move(r), std::chrono::nanoseconds(0), [&p](Response resp) { p.set_value(std::move(resp)); });
  received.Wait();
  t->Shutdown();
  const Response cancelled = p.get_future().get();
  done.Open();
  EXPECT_EQ(cancelled.error, NetError::kCancelled);
  const Response late = Get(*t, server.url());
  EXPECT_EQ(late.error, NetError::kCancelled);
}

// Which transport answered: the epoll one names the origin it could not
// reach, curl says "Failed to connect".
bool FromEpoll(const Response& r) {
  return r.error_message.rfind("cannot connect to ", 0) == 0;
}

TEST(NewTransport, SendsBothSchemesToEpollUnlessProxiedOrAskedForCurl) {
  // Nothing listens on port 1.
  {
    auto t = NewTransport(Options(2000));
    for (const char* url : {"https://127.0.0.1:1/x", "http://127.0.0.1:1/x"}) {
      const Response r = Get(*t, url);
      EXPECT_EQ(r.error, NetError::kConnect) << r.error_message;
      EXPECT_TRUE(FromEpoll(r)) << r.error_message;
    }
  }
  {
    // A proxy for https: https goes to curl (which honours it), http stays.
    ::setenv("https_proxy", "http://127.0.0.1:1", 1);
    auto t = NewTransport(Options(2000));
    const Response https = Get(*t, "https://127.0.0.1:1/x");
    const Response http = Get(*t, "http://127.0.0.1:1/x");
    ::unsetenv("https_proxy");
    EXPECT_EQ(https.error, NetError::kConnect) << https.error_message;
    EXPECT_FALSE(FromEpoll(https)) << https.error_message;
    EXPECT_TRUE(FromEpoll(http)) << http.error_message;
  }
  {
    ::setenv("STOKER_HTTP_TRANSPORT", "curl", 1);
    auto t = NewTransport(Options(2000));
    const Response r = Get(*t, "https://127.0.0.1:1/x");
    ::unsetenv("STOKER_HTTP_TRANSPORT");
    EXPECT_EQ(r.error, NetError::kConnect) << r.error_message;
    EXPECT_FALSE(FromEpoll(r)) << r.error_message;
  }
}

// ---- TLS on the epoll transport ----------------------------------------------

TEST(EpollTls, NewConnectionsResumeTheSessionFromAKeptTicket) {
  // Every reply closes its connection: each request makes a new one. The
  // first makes a full handshake; each later one resumes a ticket the
  // transport kept (counted by the server).
  ScriptedServer server([](Peer& p) { p.Send(Reply("x", "Connection: close\r\n")); }, true,
                        Pki().Server(Pki().good.get()));
  auto t = NewEpollTransport(Options(2000));
  for (int i = 0; i < 5; ++i) {
    const Response r = Get(*t, server.url());
    ASSERT_EQ(r.error, NetError::kNone) << i << ": " << r.error_message;
    EXPECT_EQ(r.BodyText(), "x");
  }
  EXPECT_EQ(server.handshakes(), 5);
  EXPECT_EQ(server.resumed(), 4);
}

// Both transports offer AES-128-GCM first (less CPU per byte than AES-256),
// and a server that follows the client's order (OpenSSL's default) takes it.
TEST(Tls, BothTransportsOfferAes128GcmFirst) {
  for (const bool curl : {false, true}) {
    std::mutex mu;
    std::string cipher;
    ScriptedServer server(
        [&](Peer& p) {
          {
            std::lock_guard<std::mutex> lock(mu);
            cipher = p.Cipher();
          }
          p.Send(Reply("x"));
        },
        true, Pki().Server(Pki().good.get()));
    auto t = curl ? NewCurlTransport(Options(2000)) : NewEpollTransport(Options(2000));
    const Response r = Get(*t, server.url());
    ASSERT_EQ(r.error, NetError::kNone) << r.error_message;
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(cipher, "TLS_AES_128_GCM_SHA256") << (curl ? "curl" : "epoll");
  }
}

TEST(EpollTls, ConcurrentNewConnectionsEachResume) {
  // One request first (its connection brings the server's two tickets; the
  // server then closes it), then 12 at once, each held by the server until
  // all 12 have arrived: 12 new connections, and every one resumes, though
  // only two tickets came with the first: a new connection waits for the
  // tickets each resumed one brings rather than make a full handshake.
  constexpr int kN = 12;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  ScriptedServer server(
      [&](Peer& p) {
        const std::string head = p.ReadHead();
        if (head.find("first") == std::string::npos) {
          std::unique_lock<std::mutex> lock(mu);
          ++arrived;
          cv.notify_all();
          cv.wait(lock, [&] { return arrived == kN; });
        }
        p.Send(Reply("y", "Connection: close\r\n"));
      },
      /*read_head=*/false, Pki().Server(Pki().good.get()));
  auto t = NewEpollTransport(Options(5000));
  ASSERT_EQ(Get(*t, server.url() + "?first").error, NetError::kNone);
  std::vector<std::promise<Response>> done(kN);
  for (int i = 0; i < kN; ++i) {
    Request r;
    r.url = server.url();
    t->Send(std::move(r), std::chrono::nanoseconds(0),
            [&done, i](Response resp) { done[i].set_value(std::move(resp)); });
  }
  for (int i = 0; i < kN; ++i) {
    const Response r = done[i].get_future().get();
    ASSERT_EQ(r.error, NetError::kNone) << i << ": " << r.error_message;
    EXPECT_EQ(r.BodyText(), "y");
  }
  EXPECT_EQ(server.handshakes(), kN + 1);
  EXPECT_EQ(server.resumed(), kN);
}

// The certificate failures, as the first request to the server meets them:
// kTls, first contact, and the reason in the words DescribeNetFailure
// (retry.h) turns into "unknown CA", "expired", "wrong host name".
TEST(EpollTls, CertificateProblemsAreFirstContactTlsFailuresWithTheReason) {
  const struct {
    X509* cert;
    const char* reason;
  } cases[] = {{Pki().unknown_ca.get(), "unknown CA"},
               {Pki().expired.get(), "expired"},
               {Pki().wrong_host.get(), "wrong host name"}};
  for (const auto& c : cases) {
    ScriptedServer server([](Peer& p) { p.Send(Reply("never")); }, true, Pki().Server(c.cert));
    auto t = NewEpollTransport(Options(2000));
    const Response r = Get(*t, server.url());
    EXPECT_EQ(r.error, NetError::kTls) << c.reason << ": " << r.error_message;
    EXPECT_TRUE(r.first_contact) << c.reason;
    EXPECT_TRUE(IsFirstContactFailure(r));
    EXPECT_NE(DescribeNetFailure(r).find(c.reason), std::string::npos) << DescribeNetFailure(r);
    EXPECT_EQ(server.handshakes(), 0);
  }
}

TEST(EpollTls, WithoutTheCaBundleTheTestCaIsUnknown) {
  ScriptedServer server([](Peer& p) { p.Send(Reply("never")); }, true,
                        Pki().Server(Pki().good.get()));
  CurlOptions o = Options(2000);
  o.ca_bundle.clear();  // the system store
  auto t = NewEpollTransport(o);
  const Response r = Get(*t, server.url());
  EXPECT_EQ(r.error, NetError::kTls) << r.error_message;
  EXPECT_NE(DescribeNetFailure(r).find("unknown CA"), std::string::npos) << DescribeNetFailure(r);
}

TEST(EpollTls, VerifyOffReadsFromAnyCertificate) {
  ScriptedServer server([](Peer& p) { p.Send(Reply("unverified")); }, true,
                        Pki().Server(Pki().unknown_ca.get()));
  CurlOptions o = Options(2000);
  o.verify_tls = false;
  o.ca_bundle.clear();
  auto t = NewEpollTransport(o);
  const Response r = Get(*t, server.url());
  ASSERT_EQ(r.error, NetError::kNone) << r.error_message;
  EXPECT_EQ(r.BodyText(), "unverified");
}

TEST(EpollTls, AnUnreadableCaBundleIsATlsFailureNamingIt) {
  CurlOptions o = Options(2000);
  o.ca_bundle = "/nonexistent/stoker-ca.pem";
  auto t = NewEpollTransport(o);
  const Response r = Get(*t, "https://127.0.0.1:1/x");
  EXPECT_EQ(r.error, NetError::kTls) << r.error_message;
  EXPECT_TRUE(r.first_contact);
  EXPECT_NE(r.error_message.find("/nonexistent/stoker-ca.pem"), std::string::npos) << r.error_message;
  EXPECT_NE(DescribeNetFailure(r).find("the CA bundle cannot be used"), std::string::npos)
      << DescribeNetFailure(r);
}

TEST(EpollTls, APlainHttpServerOnAnHttpsUrlIsATlsFailure) {
  // No TLS: the server answers at once with a plain reply, which is no
  // TLS record.
  ScriptedServer server([](Peer& p) { p.Send(Reply("plain")); }, /*read_head=*/false);
  const std::string url = "https://127.0.0.1:" + std::to_string(server.port()) + "/obj";
  auto t = NewEpollTransport(Options(2000));
  const Response r = Get(*t, url);
  EXPECT_EQ(r.error, NetError::kTls) << r.error_message;
  EXPECT_TRUE(r.first_contact);
}

}  // namespace
}  // namespace stoker::storage::http
