// The libcurl transport against a scripted HTTP server on loopback: stalls
// before the reply and inside its body are cut by the read timeout, a slow
// reply that keeps coming is not, a request's own deadline cuts an attempt,
// and a closed port is a connect error.
#include "stoker/storage/http/curl_transport.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <string>
#include <thread>

namespace stoker::storage::http {
namespace {

using std::chrono::milliseconds;

// Serves each connection on its own thread with `script(fd)` after reading
// the request head. Closes everything when destroyed.
class ScriptedServer {
 public:
  explicit ScriptedServer(std::function<void(int fd)> script) : script_(std::move(script)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    EXPECT_EQ(::listen(listen_fd_, 16), 0);
    accept_thread_ = std::thread([this] {
      while (true) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0 || stop_) {
          if (fd >= 0) ::close(fd);
          return;
        }
        conn_threads_.emplace_back([this, fd] {
          std::string head;
          char c;
          while (head.find("\r\n\r\n") == std::string::npos && ::recv(fd, &c, 1, 0) == 1) head += c;
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

  static void Send(int fd, const std::string& s) { ::send(fd, s.data(), s.size(), MSG_NOSIGNAL); }

 private:
  std::function<void(int)> script_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread accept_thread_;
  std::vector<std::thread> conn_threads_;  // touched by the accept thread only, until joined
};

const std::string kHead = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";

Response Get(Transport& t, const std::string& url, milliseconds timeout = milliseconds(0)) {
  std::promise<Response> p;
  auto f = p.get_future();
  Request r;
  r.url = url;
  r.timeout = timeout;
  t.Send(std::move(r), std::chrono::nanoseconds(0), [&p](Response resp) { p.set_value(std::move(resp)); });
  // Only a guard against a hang: every case here ends in well under 5 s.
  if (f.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    ADD_FAILURE() << "no response within 30 s";
    std::abort();
  }
  return f.get();
}

CurlOptions Options(long read_timeout_ms) {
  CurlOptions o;
  o.read_timeout_ms = read_timeout_ms;
  return o;
}

TEST(CurlTransport, StallBeforeTheFirstByteIsCutByTheReadTimeout) {
  ScriptedServer server([](int fd) {
    std::this_thread::sleep_for(milliseconds(1500));
    ScriptedServer::Send(fd, kHead + "0123456789");
  });
  auto t = NewCurlTransport(Options(300));
  const Response r = Get(*t, server.url());
  EXPECT_EQ(r.error, NetError::kTimeout) << r.error_message;
  EXPECT_NE(r.error_message.find("(read timeout 0.3 s)"), std::string::npos) << r.error_message;
  EXPECT_LT(r.seconds, 1.4);  // cut, not waited out (the reply would come at 1.5 s)
}

TEST(CurlTransport, StallInsideTheBodyIsCutByTheReadTimeout) {
  ScriptedServer server([](int fd) {
    ScriptedServer::Send(fd, kHead + "01234");
    std::this_thread::sleep_for(milliseconds(1500));
    ScriptedServer::Send(fd, "56789");
  });
  auto t = NewCurlTransport(Options(300));
  const Response r = Get(*t, server.url());
  EXPECT_EQ(r.error, NetError::kTimeout) << r.error_message;
  EXPECT_TRUE(r.body.empty());
  EXPECT_LT(r.seconds, 1.4);
}

TEST(CurlTransport, SlowReplyThatKeepsComingIsNotCut) {
  // Thirty pieces 100 ms apart: 3 s in all, well over the 2 s read timeout,
  // never silent for a twentieth of it (a wide margin: on a loaded machine a
  // sleeping thread can wake hundreds of milliseconds late).
  const std::string body(60, 'x');
  ScriptedServer server([&](int fd) {
    const std::string all =
        "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    const size_t step = all.size() / 30 + 1;
    for (size_t i = 0; i < all.size(); i += step) {
      std::this_thread::sleep_for(milliseconds(100));
      ScriptedServer::Send(fd, all.substr(i, step));
    }
  });
  auto t = NewCurlTransport(Options(2000));
  const Response r = Get(*t, server.url());
  ASSERT_EQ(r.error, NetError::kNone) << r.error_message;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.BodyText(), body);
  EXPECT_GT(r.seconds, 2.0);  // the case is what it says: longer than the read timeout
}

TEST(CurlTransport, RequestTimeoutCutsAnAttemptWithoutAReadTimeout) {
  ScriptedServer server([](int fd) {
    std::this_thread::sleep_for(milliseconds(1500));
    ScriptedServer::Send(fd, kHead + "0123456789");
  });
  auto t = NewCurlTransport(Options(0));  // no read timeout: only the request's own
  const Response r = Get(*t, server.url(), milliseconds(200));
  EXPECT_EQ(r.error, NetError::kTimeout) << r.error_message;
  EXPECT_LT(r.seconds, 1.4);
}

TEST(CurlTransport, ClosedPortIsAConnectError) {
  int port;
  {
    ScriptedServer gone([](int) {});
    port = std::stoi(gone.url().substr(gone.url().rfind(':') + 1));
  }
  auto t = NewCurlTransport(Options(300));
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

}  // namespace
}  // namespace stoker::storage::http
