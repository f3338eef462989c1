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
//   - GET /<bucket>?list-type=2&prefix=P: ListObjectsV2, one page of every
//     object whose path is /<bucket>/P...
//   - writes, as S3 takes them: PUT (an object, whole), DELETE (204, found
//     or not), and multipart uploads: POST ?uploads, PUT ?partNumber&uploadId,
//     POST ?uploadId (the parts listed in order with their ETags, checked),
//     DELETE ?uploadId. Uploads not completed stay invisible to reads.
//   - a request whose x-amz-content-sha256 is not its body's SHA-256 is
//     refused (400 XAmzContentSHA256Mismatch), as S3 refuses it.
//   - Refuse(): requests whose method and target (path and query) match
//     are answered with an S3 error (after their body is read), the first
//     `times` of them or all.
// Every request is logged ("METHOD /path?query"): log().
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
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "stoker/storage/s3/sigv4.h"

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

  // Requests with `method` ("" any) whose target contains `target_part`
  // get `status` and an S3 <Error> with `code`: the next `times` of them
  // (-1: every one).
  void Refuse(const std::string& method, const std::string& target_part, int status,
              const std::string& code, int times = -1) {
    std::lock_guard<std::mutex> lock(mu_);
    refusals_.push_back({method, target_part, status, code, times});
  }
  // The object at `path`, if there is one.
  std::optional<std::string> Get(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = objects_.find(path);
    if (it == objects_.end()) return std::nullopt;
    return it->second;
  }
  // Multipart uploads begun and neither completed nor aborted.
  size_t open_uploads() {
    std::lock_guard<std::mutex> lock(mu_);
    return uploads_.size();
  }
  // The part sizes of the last multipart upload completed at `path`.
  std::vector<size_t> completed_parts(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = completed_.find(path);
    return it == completed_.end() ? std::vector<size_t>{} : it->second;
  }
  // "METHOD /path?query" of every request, in the order they came.
  std::vector<std::string> log() {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }

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

  // `n` body bytes after a head (what is buffered first); false if the
  // client closed before.
  static bool ReadBody(int fd, std::string& buffered, size_t n, std::string* body) {
    while (buffered.size() < n) {
      char buf[65536];
      const ssize_t got = ::recv(fd, buf, sizeof(buf), 0);
      if (got <= 0) return false;
      buffered.append(buf, static_cast<size_t>(got));
    }
    *body = buffered.substr(0, n);
    buffered.erase(0, n);
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

  // The value of query parameter `name` in `query` (not decoded: the
  // tests' values need none), nullopt if absent.
  static std::optional<std::string> Param(const std::string& query, const std::string& name) {
    size_t p = 0;
    while (p <= query.size()) {
      size_t amp = query.find('&', p);
      if (amp == std::string::npos) amp = query.size();
      const std::string pair = query.substr(p, amp - p);
      const size_t eq = pair.find('=');
      if (pair.substr(0, eq) == name) return eq == std::string::npos ? "" : pair.substr(eq + 1);
      p = amp + 1;
    }
    return std::nullopt;
  }

  static std::string Decode(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '%' && i + 2 < s.size()) {
        out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else {
        out += s[i];
      }
    }
    return out;
  }

  // A ListObjectsV2 page of everything under /<bucket>/<prefix>.
  std::string List(const std::string& bucket_path, const std::string& query) {
    const std::string prefix = Decode(Param(query, "prefix").value_or(""));
    const std::string start = bucket_path + "/" + prefix;
    std::string xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult>";
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = objects_.lower_bound(start);
         it != objects_.end() && it->first.compare(0, start.size(), start) == 0; ++it) {
      std::string key;
      for (char c : it->first.substr(bucket_path.size() + 1)) {
        key += c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : std::string(1, c);
      }
      xml += "<Contents><Key>" + key + "</Key><Size>" + std::to_string(it->second.size()) +
             "</Size></Contents>";
    }
    xml += "<IsTruncated>false</IsTruncated></ListBucketResult>";
    return Reply(200, "OK", xml, "Content-Type: application/xml\r\n");
  }

  struct Upload {
    std::string path;
    std::map<int, std::string> parts;  // by part number
  };

  // A write (PUT, POST, DELETE) of `path`; the reply.
  std::string Write(const std::string& method, const std::string& path, const std::string& query,
                    std::string body) {
    const auto upload_id = Param(query, "uploadId");
    std::lock_guard<std::mutex> lock(mu_);
    auto no_upload = [] {
      return Reply(404, "Not Found", S3Error("NoSuchUpload", "The specified upload does not exist."));
    };
    if (method == "POST" && Param(query, "uploads")) {
      const std::string id = "upload-" + std::to_string(++next_upload_);
      uploads_[id] = Upload{path, {}};
      return Reply(200, "OK",
                   "<?xml version=\"1.0\" encoding=\"UTF-8\"?><InitiateMultipartUploadResult>"
                   "<Bucket>bkt</Bucket><Key>k</Key><UploadId>" + id +
                       "</UploadId></InitiateMultipartUploadResult>");
    }
    if (method == "PUT" && upload_id) {
      auto it = uploads_.find(*upload_id);
      if (it == uploads_.end() || it->second.path != path) return no_upload();
      const int n = std::stoi(Param(query, "partNumber").value_or("0"));
      const std::string etag = "\"part-" + std::to_string(n) + "-" + std::to_string(body.size()) + "\"";
      it->second.parts[n] = std::move(body);
      return Reply(200, "OK", "", "ETag: " + etag + "\r\n");
    }
    if (method == "POST" && upload_id) {
      auto it = uploads_.find(*upload_id);
      if (it == uploads_.end() || it->second.path != path) return no_upload();
      // <Part><PartNumber>n</PartNumber><ETag>&quot;part-n-size&quot;</ETag></Part>...
      std::string data;
      std::vector<size_t> sizes;
      size_t p = 0;
      int expect = 1;
      while ((p = body.find("<PartNumber>", p)) != std::string::npos) {
        const int n = std::stoi(body.substr(p + 12));
        const size_t e = body.find("<ETag>", p), e_end = body.find("</ETag>", p);
        const std::string etag = body.substr(e + 6, e_end - e - 6);
        auto part = it->second.parts.find(n);
        if (n != expect++ || part == it->second.parts.end() ||
            etag != "&quot;part-" + std::to_string(n) + "-" + std::to_string(part->second.size()) +
                        "&quot;") {
          return Reply(400, "Bad Request", S3Error("InvalidPart", "part " + std::to_string(n)));
        }
        data += part->second;
        sizes.push_back(part->second.size());
        p = e_end;
      }
      if (sizes.empty()) return Reply(400, "Bad Request", S3Error("MalformedXML", "no parts"));
      objects_[path] = std::move(data);
      completed_[path] = std::move(sizes);
      uploads_.erase(it);
      return Reply(200, "OK",
                   "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUploadResult>"
                   "<ETag>\"whole\"</ETag></CompleteMultipartUploadResult>");
    }
    if (method == "DELETE" && upload_id) {
      if (uploads_.erase(*upload_id) == 0) return no_upload();
      return "HTTP/1.1 204 No Content\r\n\r\n";
    }
    if (method == "DELETE") {
      objects_.erase(path);
      return "HTTP/1.1 204 No Content\r\n\r\n";
    }
    if (method == "PUT") {
      const std::string etag = "\"" + std::to_string(body.size()) + "\"";
      objects_[path] = std::move(body);
      return Reply(200, "OK", "", "ETag: " + etag + "\r\n");
    }
    return Reply(405, "Method Not Allowed", S3Error("MethodNotAllowed", method));
  }

  // The reply of the first refusal that matches, "" if none.
  std::string Refusal(const std::string& method, const std::string& target) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& r : refusals_) {
      if (r.times == 0 || (!r.method.empty() && r.method != method) ||
          target.find(r.target_part) == std::string::npos) {
        continue;
      }
      if (r.times > 0) --r.times;
      return Reply(r.status, "Refused", S3Error(r.code, "refused by the test server"),
                   "Content-Type: application/xml\r\n");
    }
    return "";
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
      const std::string target = head.substr(sp1 + 1, sp2 - sp1 - 1);
      std::string path = target.substr(0, target.find('?'));
      const std::string query =
          target.find('?') == std::string::npos ? "" : target.substr(target.find('?') + 1);
      {
        std::lock_guard<std::mutex> lock(mu_);
        log_.push_back(method + " " + target);
      }
      std::string request_body;
      const std::string length = Header(head, "content-length");
      if (!length.empty() && !ReadBody(fd, buffered, std::stoull(length), &request_body)) return;
      // As S3 does: a signed body must be the one whose hash was signed.
      const std::string sha = Header(head, "x-amz-content-sha256");
      if (!sha.empty() && sha != "UNSIGNED-PAYLOAD" && sha != s3::Sha256Hex(request_body)) {
        if (!SendAll(fd, Reply(400, "Bad Request",
                               S3Error("XAmzContentSHA256Mismatch",
                                       "The provided 'x-amz-content-sha256' header does not "
                                       "match what was computed.")))) {
          return;
        }
        continue;
      }
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
      const std::string refused = Refusal(method, target);
      const bool write = method == "PUT" || method == "POST" || method == "DELETE";
      std::string out;
      if (!refused.empty()) {
        out = refused;
      } else if (denied) {
        out = Reply(403, "Forbidden", S3Error("AccessDenied", "Access Denied"),
                    "Content-Type: application/xml\r\n");
      } else if (write) {
        out = Write(method, path, query, std::move(request_body));
      } else if (method == "GET" && Param(query, "list-type") &&
                 path.find('/', 1) == std::string::npos) {
        out = List(path, query);
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
  struct RefusalRule {
    std::string method, target_part;
    int status;
    std::string code;
    int times;
  };
  std::vector<RefusalRule> refusals_;                    // guarded by mu_
  std::map<std::string, Upload> uploads_;                // guarded by mu_: by upload id
  int next_upload_ = 0;                                  // guarded by mu_
  std::map<std::string, std::vector<size_t>> completed_;  // guarded by mu_
  std::vector<std::string> log_;                         // guarded by mu_
  std::set<int> open_;                          // guarded by mu_: connections being served
  int silent_requests_ = 0;                     // guarded by mu_
  int closed_silent_ = 0;                       // guarded by mu_
  std::thread accept_thread_;
  std::vector<std::thread> threads_;            // guarded by mu_ until joined
};

}  // namespace stoker::storage::testing
