// Both transports (libcurl's and the epoll one) against a scripted HTTP
// server on loopback: stalls before the reply and inside its body are cut by
// the read timeout, a slow reply that keeps coming is not, a request's own
// deadline cuts an attempt, and a closed port is a connect error. Then the
// epoll transport's HTTP/1.1 on its own: keep-alive reuse, a stale reused
// connection, chunked, read-until-close and 1xx replies, HEAD, bodies in
// pieces and into recycled buffers, bad replies, hundreds in flight.
#include "stoker/storage/http/curl_transport.h"
#include "stoker/storage/http/epoll_transport.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>

namespace stoker::storage::http {
namespace {

using std::chrono::milliseconds;

// Serves each connection on its own thread with `script(fd)` after reading
// the request head (unless `read_head` is false: the script reads requests
// itself, ReadHead). Closes everything when destroyed.
class ScriptedServer {
 public:
  explicit ScriptedServer(std::function<void(int fd)> script, bool read_head = true)
      : script_(std::move(script)), read_head_(read_head) {
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
          if (read_head_) ReadHead(fd);
          script_(fd);
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
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/obj"; }
  int accepted() const { return accepted_; }

  static void Send(int fd, const std::string& s) { ::send(fd, s.data(), s.size(), MSG_NOSIGNAL); }
  // The next request head on `fd` ("" once the client closed it).
  static std::string ReadHead(int fd) {
    std::string head;
    char c;
    while (head.find("\r\n\r\n") == std::string::npos && ::recv(fd, &c, 1, 0) == 1) head += c;
    return head.find("\r\n\r\n") == std::string::npos ? "" : head;
  }

 private:
  std::function<void(int)> script_;
  const bool read_head_;
  std::atomic<int> accepted_{0};
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

CurlOptions Options(long read_timeout_ms) {
  CurlOptions o;
  o.read_timeout_ms = read_timeout_ms;
  return o;
}

// The timeout cases run on both transports.
using Factory = std::unique_ptr<Transport> (*)(const CurlOptions&);
class AnyTransport : public ::testing::TestWithParam<Factory> {
 protected:
  std::unique_ptr<Transport> Make(const CurlOptions& o) { return GetParam()(o); }
};
INSTANTIATE_TEST_SUITE_P(Transports, AnyTransport,
                         ::testing::Values(&NewCurlTransport, &NewEpollTransport),
                         [](const auto& info) {
                           return std::string(info.index == 0 ? "Curl" : "Epoll");
                         });

TEST_P(AnyTransport, StallBeforeTheFirstByteIsCutByTheReadTimeout) {
  Gate answered;
  ScriptedServer server([&](int fd) {
    answered.Wait();  // the reply comes only after the client gave up
    ScriptedServer::Send(fd, kHead + "0123456789");
  });
  auto t = Make(Options(300));
  const Response r = Get(*t, server.url());
  answered.Open();
  EXPECT_EQ(r.error, NetError::kTimeout) << r.error_message;
  EXPECT_NE(r.error_message.find("(read timeout 0.3 s)"), std::string::npos) << r.error_message;
}

TEST_P(AnyTransport, StallInsideTheBodyIsCutByTheReadTimeout) {
  Gate answered;
  ScriptedServer server([&](int fd) {
    ScriptedServer::Send(fd, kHead + "01234");
    answered.Wait();  // the rest comes only after the client gave up
    ScriptedServer::Send(fd, "56789");
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
  ScriptedServer server([&](int fd) {
    const std::string all =
        "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    for (size_t p = 0; p < kPieces; ++p) {  // exactly kPieces pieces, none empty
      const size_t begin = all.size() * p / kPieces, end = all.size() * (p + 1) / kPieces;
      std::this_thread::sleep_for(kGap);
      ScriptedServer::Send(fd, all.substr(begin, end - begin));
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
  ScriptedServer server([&](int fd) {
    answered.Wait();  // the reply comes only after the client gave up
    ScriptedServer::Send(fd, kHead + "0123456789");
  });
  auto t = Make(Options(0));  // no read timeout: only the request's own
  const Response r = Get(*t, server.url(), milliseconds(200));
  answered.Open();
  EXPECT_EQ(r.error, NetError::kTimeout) << r.error_message;
}

TEST_P(AnyTransport, ClosedPortIsAConnectError) {
  int port;
  {
    ScriptedServer gone([](int) {});
    port = std::stoi(gone.url().substr(gone.url().rfind(':') + 1));
  }
  auto t = Make(Options(300));
  const Response r = Get(*t, "http://127.0.0.1:" + std::to_string(port) + "/obj");
  EXPECT_EQ(r.error, NetError::kConnect) << r.error_message;
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


// ---- the epoll transport's HTTP/1.1 ----------------------------------------

std::string Reply(const std::string& body, const std::string& extra = "") {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra +
         "\r\n" + body;
}

TEST(EpollTransport, KeepsConnectionsAliveAndSendsTheRequestAsGiven) {
  std::vector<std::string> heads;
  std::mutex mu;
  ScriptedServer server(
      [&](int fd) {
        for (int i = 0;; ++i) {
          const std::string head = ScriptedServer::ReadHead(fd);
          if (head.empty()) return;
          {
            std::lock_guard<std::mutex> lock(mu);
            heads.push_back(head);
          }
          ScriptedServer::Send(fd, Reply("reply " + std::to_string(i)));
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

TEST(EpollTransport, ResendsOnceWhenAReusedConnectionWasClosed) {
  // The first connection answers one request, then reads the next and
  // closes without a reply (a server dropping an idle keep-alive connection
  // just as it is reused); the second connection answers normally.
  std::atomic<int> conn{0};
  ScriptedServer server(
      [&](int fd) {
        const int n = conn++;
        for (int i = 0;; ++i) {
          if (ScriptedServer::ReadHead(fd).empty()) return;
          if (n == 0 && i == 1) return;  // closed under the second request
          ScriptedServer::Send(fd, Reply("ok"));
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

TEST(EpollTransport, ANewConnectionClosedBeforeTheReplyIsAReset) {
  ScriptedServer server([](int) {});  // reads the request, closes
  auto t = NewEpollTransport(Options(2000));
  const Response r = Get(*t, server.url());
  EXPECT_EQ(r.error, NetError::kReset) << r.error_message;
  EXPECT_EQ(server.accepted(), 1);  // not resent: the connection was new
}

TEST(EpollTransport, BodyCutShortIsAReset) {
  ScriptedServer server([](int fd) {
    ScriptedServer::Send(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
  });
  auto t = NewEpollTransport(Options(2000));
  const Response r = Get(*t, server.url());
  EXPECT_EQ(r.error, NetError::kReset) << r.error_message;
  EXPECT_TRUE(r.body.empty());
}

TEST(EpollTransport, ChunkedBodiesWithExtensionsAndTrailers) {
  ScriptedServer server([](int fd) {
    ScriptedServer::Send(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    ScriptedServer::Send(fd, "5;ext=1\r\nhello\r\n");
    std::this_thread::sleep_for(milliseconds(20));
    ScriptedServer::Send(fd, "1");
    std::this_thread::sleep_for(milliseconds(20));
    ScriptedServer::Send(fd, "2\r\n, world, and more \r\n0\r\nX-Trailer: 1\r\n\r\n");  // 0x12 bytes
  });
  auto t = NewEpollTransport(Options(2000));
  const Response r = Get(*t, server.url());
  ASSERT_EQ(r.error, NetError::kNone) << r.error_message;
  EXPECT_EQ(r.BodyText(), "hello, world, and more ");
}

TEST(EpollTransport, BodyWithoutLengthEndsWhenTheServerCloses) {
  ScriptedServer server([](int fd) {
    ScriptedServer::Send(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nfirst ");
    std::this_thread::sleep_for(milliseconds(20));
    ScriptedServer::Send(fd, "second");
  });
  auto t = NewEpollTransport(Options(2000));
  const Response r = Get(*t, server.url());
  ASSERT_EQ(r.error, NetError::kNone) << r.error_message;
  EXPECT_EQ(r.BodyText(), "first second");
}

TEST(EpollTransport, SkipsInterimRepliesAndReadsHeadWithoutBody) {
  ScriptedServer server(
      [](int fd) {
        ScriptedServer::ReadHead(fd);
        ScriptedServer::Send(fd, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nETag: \"e\"\r\n"
                                 "Content-Length: 3\r\n\r\nabc");
        ScriptedServer::ReadHead(fd);  // HEAD: a length, no body
        ScriptedServer::Send(fd, "HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n");
        ScriptedServer::ReadHead(fd);
        ScriptedServer::Send(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!");
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

TEST(EpollTransport, ConnectionCloseIsHonoured) {
  ScriptedServer server([](int fd) { ScriptedServer::Send(fd, Reply("x", "Connection: close\r\n")); });
  auto t = NewEpollTransport(Options(2000));
  for (int i = 0; i < 3; ++i) ASSERT_EQ(Get(*t, server.url()).BodyText(), "x");
  EXPECT_EQ(server.accepted(), 3);
}

TEST(EpollTransport, LargeBodyInPiecesIntoARecycledBuffer) {
  std::string body(3 << 20, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 2654435761u >> 13);
  ScriptedServer server([&](int fd) {
    const std::string all = Reply(body);
    for (size_t i = 0; i < all.size(); i += 100000) {
      ScriptedServer::Send(fd, all.substr(i, 100000));
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

TEST(EpollTransport, BadRepliesFailWithTheReason) {
  for (const std::string& reply :
       {std::string("SSH-2.0-OpenSSH\r\n\r\n"), std::string("HTTP/1.1 2x0 OK\r\n\r\n"),
        std::string("HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n"),
        std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")}) {
    ScriptedServer server([&](int fd) { ScriptedServer::Send(fd, reply); });
    auto t = NewEpollTransport(Options(2000));
    const Response r = Get(*t, server.url());
    EXPECT_EQ(r.error, NetError::kOther) << reply;
    EXPECT_NE(r.error_message.find("bad reply from the server"), std::string::npos)
        << r.error_message;
  }
}

TEST(EpollTransport, RefusesWhatItCannotSend) {
  auto t = NewEpollTransport(Options(2000));
  for (const char* url : {"https://127.0.0.1:1/x", "http://user:pw@127.0.0.1:1/x", "http:///x",
                          "http://127.0.0.1:99999999/x"}) {
    const Response r = Get(*t, url);
    EXPECT_EQ(r.error, NetError::kOther) << url;
    EXPECT_EQ(r.error_message.find("pw"), std::string::npos) << r.error_message;
  }
}

TEST(EpollTransport, HundredsInFlight) {
  ScriptedServer server(
      [](int fd) {
        for (std::string head; !(head = ScriptedServer::ReadHead(fd)).empty();) {
          const size_t a = head.find("?n=") + 3;
          const std::string n = head.substr(a, head.find(' ', a) - a);
          ScriptedServer::Send(fd, Reply(std::string(1000 + std::stoi(n), 'a' + std::stoi(n) % 26)));
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

TEST(EpollTransport, ShutdownCancelsWhatIsInFlight) {
  Gate received, done;
  ScriptedServer server([&](int) {
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

TEST(EpollTransport, NewTransportSendsHttpsToCurl) {
  // Nothing listens on port 1: curl reports a connect error, where the
  // epoll transport alone refuses https (kOther).
  auto t = NewTransport(Options(2000));
  EXPECT_EQ(Get(*t, "https://127.0.0.1:1/x").error, NetError::kConnect);
  EXPECT_EQ(Get(*t, "http://127.0.0.1:1/x").error, NetError::kConnect);
}

}  // namespace
}  // namespace stoker::storage::http
