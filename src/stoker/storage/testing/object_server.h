// An HTTP/1.1 object server on loopback for storage tests: serves objects
// from memory by path, as a web server (http://) or a path-style S3
// endpoint (GET /bucket/key) would, one thread per connection, keep-alive.
//   - Range: "bytes=A-B" and "bytes=A-" answered 206 with Content-Range, 416
//     from the object's end on (S3's answer); or, with ignore_range, 200 and
//     the whole object (a server without range support).
//   - a missing path: 404 with an S3 NoSuchKey error body; a denied one: 403
//     AccessDenied.
//   - a path under /silent/: the request is read and never answered; under
//     /trickle/: the head and kTrickleSent of kTrickleSize body bytes, then
//     nothing. Either way the connection waits until the client closes it
//     (counted: closed_silent()) or the server is destroyed.
// Test-only (it uses no GoogleTest itself).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace stoker::storage::testing {

class ObjectServer {
 public:
  static constexpr size_t kTrickleSize = 200000;
  static constexpr size_t kTrickleSent = 1000;

  ObjectServer() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    socklen_t len = sizeof(addr);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    ok_ = ok_ && ::listen(listen_fd_, 1024) == 0;
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~ObjectServer() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      for (int fd : open_) ::shutdown(fd, SHUT_RDWR);
    }
    cv_.notify_all();
    ::shutdown(listen_fd_, SHUT_RDWR);
    accept_thread_.join();
    for (auto& t : threads_) t.join();
    ::close(listen_fd_);
  }

  bool ok() const { return ok_; }
  int port() const { return port_; }
  std::string origin() const { return "http://127.0.0.1:" + std::to_string(port_); }

  void Put(const std::string& path, std::string bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    objects_[path] = std::move(bytes);
  }
  void Deny(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    denied_.insert(path);
  }
  void set_ignore_range(bool v) { ignore_range_ = v; }

  // Requests received under /silent/ or /trickle/, and of those, connections
  // the client has closed since.
  int silent_requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return silent_requests_;
  }
  int closed_silent() {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_silent_;
  }
  // Waits until `pred(silent_requests, closed_silent)` holds (checked
  // whenever a silent request comes or its connection closes), or at most
  // `safety` (a bound that only turns a hang into a failure: nothing is
  // timed); returns whether it holds.
  template <class Pred>
  bool WaitUntil(Pred pred, std::chrono::seconds safety = std::chrono::seconds(120)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, safety, [&] { return stop_ || pred(silent_requests_, closed_silent_); }) &&
           !stop_;
  }
  // Requests served (any path).
  int requests() const { return requests_.load(); }

 private:
  void AcceptLoop() {
    while (true) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      std::lock_guard<std::mutex> lock(mu_);
      if (fd < 0 || stop_) {
        if (fd >= 0) ::close(fd);
        return;
      }
      open_.insert(fd);
      threads_.emplace_back([this, fd] {
        Serve(fd);
        std::lock_guard<std::mutex> lock(mu_);
        open_.erase(fd);
        ::close(fd);
      });
    }
  }

  static bool SendAll(int fd, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  // The next request head ("" once the client closed the connection).
  static std::string ReadHead(int fd, std::string& buffered) {
    while (buffered.find("\r\n\r\n") == std::string::npos) {
      char buf[4096];
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) return "";
      buffered.append(buf, static_cast<size_t>(n));
    }
    const size_t end = buffered.find("\r\n\r\n") + 4;
    std::string head = buffered.substr(0, end);
    buffered.erase(0, end);
    return head;
  }

  static std::string Header(const std::string& head, const std::string& name) {
    std::string lower;
    for (char c : head) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    const size_t p = lower.find("\r\n" + name + ":");
    if (p == std::string::npos) return "";
    size_t v = p + name.size() + 3;
    while (v < head.size() && head[v] == ' ') ++v;
    return head.substr(v, head.find("\r\n", v) - v);
  }

  static std::string Reply(int status, const std::string& reason, const std::string& body,
                           const std::string& extra = "") {
    return "HTTP/1.1 " + std::to_string(status) + " " + reason +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
  }

  static std::string S3Error(const std::string& code, const std::string& message) {
    return "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>" + code + "</Code><Message>" +
           message + "</Message><RequestId>test</RequestId></Error>";
  }

  // Holds a silent connection until the client closes it or the server stops.
  void Hold(int fd) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++silent_requests_;
    }
    cv_.notify_all();
    char buf[256];
    while (::recv(fd, buf, sizeof(buf), 0) > 0) {
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!stop_) ++closed_silent_;
    }
    cv_.notify_all();
  }

  void Serve(int fd) {
    std::string buffered;
    while (true) {
      const std::string head = ReadHead(fd, buffered);
      if (head.empty()) return;
      ++requests_;
      const size_t sp1 = head.find(' ');
      const size_t sp2 = head.find(' ', sp1 + 1);
      const std::string method = head.substr(0, sp1);
      std::string path = head.substr(sp1 + 1, sp2 - sp1 - 1);
      path = path.substr(0, path.find('?'));
      if (path.find("/silent/") != std::string::npos) {
        Hold(fd);
        return;
      }
      if (path.find("/trickle/") != std::string::npos) {
        SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(kTrickleSize) +
                        "\r\n\r\n" + std::string(kTrickleSent, 't'));
        Hold(fd);
        return;
      }
      std::string body;
      bool found, denied;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = objects_.find(path);
        found = it != objects_.end();
        if (found) body = it->second;
        denied = denied_.count(path) > 0;
      }
      std::string out;
      if (denied) {
        out = Reply(403, "Forbidden", S3Error("AccessDenied", "Access Denied"),
                    "Content-Type: application/xml\r\n");
      } else if (!found) {
        out = Reply(404, "Not Found", S3Error("NoSuchKey", "The specified key does not exist."),
                    "Content-Type: application/xml\r\n");
      } else {
        const std::string range = Header(head, "range");
        if (range.empty() || ignore_range_ || range.rfind("bytes=", 0) != 0) {
          out = Reply(200, "OK", body);
        } else {
          const size_t dash = range.find('-');
          const size_t a = std::stoull(range.substr(6, dash - 6));
          const std::string last = range.substr(dash + 1);
          size_t b = last.empty() ? body.size() - 1 : std::stoull(last);
          if (a >= body.size()) {
            out = Reply(416, "Range Not Satisfiable",
                        S3Error("InvalidRange", "The requested range is not satisfiable"),
                        "Content-Range: bytes */" + std::to_string(body.size()) + "\r\n");
          } else {
            b = std::min(b, body.size() - 1);
            out = Reply(206, "Partial Content", body.substr(a, b - a + 1),
                        "Content-Range: bytes " + std::to_string(a) + "-" + std::to_string(b) +
                            "/" + std::to_string(body.size()) + "\r\n");
          }
        }
      }
      if (method == "HEAD") out = out.substr(0, out.find("\r\n\r\n") + 4);
      if (!SendAll(fd, out)) return;
    }
  }

  bool ok_ = false;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> ignore_range_{false};
  std::atomic<int> requests_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                          // guarded by mu_
  std::map<std::string, std::string> objects_;  // guarded by mu_
  std::set<std::string> denied_;                // guarded by mu_
  std::set<int> open_;                          // guarded by mu_: connections being served
  int silent_requests_ = 0;                     // guarded by mu_
  int closed_silent_ = 0;                       // guarded by mu_
  std::thread accept_thread_;
  std::vector<std::thread> threads_;            // guarded by mu_ until joined
};

}  // namespace stoker::storage::testing
