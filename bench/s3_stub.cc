// An in-memory S3 stub for benchmarks: the files under a folder, held in
// memory, behind path-style GET (whole objects and one byte range), HEAD and
// ListObjectsV2, each reply sent a set latency after its request arrived.
//
//   s3_stub --dir DIR --bucket B [--prefix P] [--latency-ms 20] [--port 0]
//           [--tls-cert CHAIN.pem --tls-key KEY.pem]
//
// prints "PORT <n>" on its first line once it listens, and serves until
// killed. With --tls-cert and --tls-key it speaks https (OpenSSL, TLS 1.2
// and 1.3, handshakes and records on the same epoll loop, never blocking):
// the certificate chain and key from those PEM files, sessions resumable
// both from its session cache (by session ID) and from tickets (two per TLS
// 1.3 handshake, OpenSSL's default). GET /__stub__/stats answers its counts
// as JSON: connections accepted, requests, and over https the handshakes
// made in full, resumed, and failed (a connection closed before its
// handshake finished, a readiness probe's included). It stands for a server on another machine: a real object store
// spends none of the loader's cores, so the stub should spend as few as it
// can. It is the Python stub of tests/integration/s3_fault_proxy.py
// (--serve-dir) on one epoll thread: the same replies, a fraction of the
// CPU per request. Signatures are not checked (neither does the Python one);
// tests/integration/test_s3.py reads every object through it and compares
// the bytes.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Object {
  std::string data;
  std::string get_head;  // the whole 200 reply's head, built once
};

// One reply: its head (owned) and a body that points into the store or into
// `owned` (listings and errors).
struct Reply {
  std::string head;
  std::string owned;
  std::string_view body;
  bool close = false;
};

struct Conn {
  int fd = -1;
  std::uint64_t id = 0;
  SSL* ssl = nullptr;        // https: the TLS connection over fd
  bool handshaking = false;  // https: until SSL_do_handshake is done
  bool tls_broken = false;   // https: a TLS call failed (no close_notify then)
  std::string stage;         // https: a reply's head and its body's start, one record
  std::string in;
  std::deque<std::shared_ptr<Reply>> out;  // due replies, in request order
  std::size_t sent = 0;                    // bytes of out.front() already sent
  bool want_out = false;
  bool closing = false;
};

struct Stats {
  std::uint64_t connections = 0;
  std::uint64_t requests = 0;
  std::uint64_t tls_full = 0;     // handshakes that made a new session
  std::uint64_t tls_resumed = 0;  // handshakes that resumed one (ticket or session ID)
  std::uint64_t tls_failures = 0;
};

struct Pending {
  Clock::time_point due;
  std::uint64_t conn_id;
  std::shared_ptr<Reply> reply;
};

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "s3_stub: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

int FromHex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string UrlDecode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && FromHex(s[i + 1]) >= 0 && FromHex(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(FromHex(s[i + 1]) * 16 + FromHex(s[i + 2])));
      i += 2;
    } else if (plus_is_space && s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// As Python's quote(k, safe="/").
std::string UrlEncode(std::string_view s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string XmlEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

class Store {
 public:
  Store(const std::filesystem::path& root, std::string bucket, const std::string& prefix)
      : bucket_(std::move(bucket)) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
      if (!e.is_regular_file()) continue;
      const std::string rel = std::filesystem::relative(e.path(), root).generic_string();
      bool hidden = rel[0] == '.' || rel.find("/.") != std::string::npos;
      if (hidden) continue;
      std::ifstream f(e.path(), std::ios::binary);
      Object o;
      o.data.assign(std::istreambuf_iterator<char>(f), {});
      o.get_head = ObjectHead(200, o.data.size(), o.data.size(), "");
      objects_.emplace(prefix + rel, std::move(o));
    }
  }

  std::size_t size() const { return objects_.size(); }

  std::shared_ptr<Reply> Answer(std::string_view method, std::string_view target,
                                std::string_view range) const {
    auto reply = std::make_shared<Reply>();
    const std::size_t q = target.find('?');
    const std::string path = UrlDecode(target.substr(0, q), false);
    const std::string_view query = q == std::string_view::npos ? "" : target.substr(q + 1);
    std::string_view rest = path;
    while (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
    const std::size_t slash = rest.find('/');
    const std::string_view bucket = rest.substr(0, slash);
    const std::string key(slash == std::string_view::npos ? "" : rest.substr(slash + 1));
    if (bucket != bucket_) {
      Error(*reply, 404, "NoSuchBucket", "The specified bucket does not exist");
    } else if (key.empty()) {
      List(*reply, query);
    } else if (auto it = objects_.find(key); it == objects_.end()) {
      Error(*reply, 404, "NoSuchKey", "The specified key does not exist.");
    } else {
      const std::string& data = it->second.data;
      std::size_t first = 0, last = data.size();  // [first, last)
      bool ranged = ParseRange(range, data.size(), &first, &last);
      if (!range.empty() && !ranged) {
        Error(*reply, 416, "InvalidRange", "The requested range is not satisfiable");
        return reply;
      }
      reply->head = ranged ? ObjectHead(206, last - first, data.size(), RangeField(first, last,
                                                                               data.size()))
                           : it->second.get_head;
      if (method != "HEAD") reply->body = std::string_view(data).substr(first, last - first);
    }
    return reply;
  }

 private:
  static std::string RangeField(std::size_t first, std::size_t last, std::size_t size) {
    return "Content-Range: bytes " + std::to_string(first) + "-" + std::to_string(last - 1) +
           "/" + std::to_string(size) + "\r\n";
  }

  static std::string ObjectHead(int status, std::size_t length, std::size_t size,
                                const std::string& extra) {
    char etag[32];
    std::snprintf(etag, sizeof etag, "\"%zx\"", size);
    return std::string(status == 206 ? "HTTP/1.1 206 Partial Content\r\n" : "HTTP/1.1 200 OK\r\n") +
           "Content-Type: application/octet-stream\r\nContent-Length: " + std::to_string(length) +
           "\r\nETag: " + etag + "\r\n" + extra + "\r\n";
  }

  // "bytes=a-b", "bytes=a-" or "bytes=-n" (one range).
  static bool ParseRange(std::string_view r, std::size_t size, std::size_t* first,
                         std::size_t* last) {
    if (r.substr(0, 6) != "bytes=" || size == 0) return false;
    r.remove_prefix(6);
    const std::size_t dash = r.find('-');
    if (dash == std::string_view::npos) return false;
    const std::string a(r.substr(0, dash)), b(r.substr(dash + 1));
    char* end = nullptr;
    if (a.empty()) {
      if (b.empty()) return false;
      const unsigned long long n = std::strtoull(b.c_str(), &end, 10);
      if (*end || n == 0) return false;
      *first = size - std::min<std::size_t>(n, size);
      *last = size;
      return true;
    }
    const unsigned long long lo = std::strtoull(a.c_str(), &end, 10);
    if (*end || lo >= size) return false;
    unsigned long long hi = size - 1;
    if (!b.empty()) {
      hi = std::strtoull(b.c_str(), &end, 10);
      if (*end || hi < lo) return false;
      hi = std::min<unsigned long long>(hi, size - 1);
    }
    *first = lo;
    *last = hi + 1;
    return true;
  }

  static void Error(Reply& r, int status, const char* code, const char* message) {
    r.owned = std::string("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>") + code +
              "</Code><Message>" + message + "</Message></Error>";
    r.body = r.owned;
    r.head = "HTTP/1.1 " + std::to_string(status) +
             " X\r\nContent-Type: application/xml\r\nContent-Length: " +
             std::to_string(r.owned.size()) + "\r\n\r\n";
  }

  void List(Reply& r, std::string_view query) const {
    std::map<std::string, std::string, std::less<>> q;
    while (!query.empty()) {
      const std::size_t amp = query.find('&');
      const std::string_view kv = query.substr(0, amp);
      const std::size_t eq = kv.find('=');
      q[UrlDecode(kv.substr(0, eq), true)] =
          eq == std::string_view::npos ? "" : UrlDecode(kv.substr(eq + 1), true);
      query = amp == std::string_view::npos ? "" : query.substr(amp + 1);
    }
    const std::string prefix = q.count("prefix") ? q["prefix"] : "";
    const std::string after = q.count("continuation-token") ? q["continuation-token"] : "";
    const bool url = q.count("encoding-type") && q["encoding-type"] == "url";
    std::size_t max_keys = 1000;
    if (q.count("max-keys")) max_keys = std::clamp<std::size_t>(std::stoul(q["max-keys"]), 1, 1000);
    auto it = after.empty() ? objects_.lower_bound(prefix) : objects_.upper_bound(after);
    std::string contents;
    std::size_t n = 0;
    std::string last;
    for (; it != objects_.end() && it->first.starts_with(prefix) && n < max_keys; ++it, ++n) {
      contents += "<Contents><Key>" + (url ? UrlEncode(it->first) : XmlEscape(it->first)) +
                  "</Key><Size>" + std::to_string(it->second.data.size()) + "</Size></Contents>";
      last = it->first;
    }
    const bool more = it != objects_.end() && it->first.starts_with(prefix);
    r.owned = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>" + bucket_ +
              "</Name><KeyCount>" + std::to_string(n) + "</KeyCount>" +
              (url ? "<EncodingType>url</EncodingType>" : "") + "<IsTruncated>" +
              (more ? "true" : "false") + "</IsTruncated>" +
              (more ? "<NextContinuationToken>" + XmlEscape(last) + "</NextContinuationToken>"
                    : "") +
              contents + "</ListBucketResult>";
    r.body = r.owned;
    r.head = "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: " +
             std::to_string(r.owned.size()) + "\r\n\r\n";
  }

  std::string bucket_;
  std::map<std::string, Object, std::less<>> objects_;
};

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// The https context: the chain and key from PEM files, TLS 1.2 and 1.3,
// sessions resumable from the server's cache and from tickets. Exits with a
// message naming the file when one cannot be loaded.
SSL_CTX* TlsContext(const std::string& cert, const std::string& key) {
  SSL_CTX* ctx = nullptr;
  auto fail = [&ctx](const std::string& what) {
    char buf[256];
    ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
    std::fprintf(stderr, "s3_stub: %s: %s\n", what.c_str(), buf);
    SSL_CTX_free(ctx);
    std::exit(2);
  };
  ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) fail("cannot create a TLS context");
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
    fail("--tls-cert " + cert + ": cannot load the certificate chain");
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    fail("--tls-key " + key + ": cannot load the private key for --tls-cert " + cert);
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    fail("--tls-key " + key + ": does not match --tls-cert " + cert);
  }
  // Resumption: the server-side cache (TLS 1.2 session IDs) needs an ID
  // context; tickets (TLS 1.2 and 1.3) are on by default.
  static const unsigned char kIdContext[] = "s3_stub";
  SSL_CTX_set_session_id_context(ctx, kIdContext, sizeof kIdContext - 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Whole socket reads, not one record header and body at a time.
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, std::size_t{64} << 10);
  return ctx;
}

// TLS's largest record: a reply's head goes out in one with its body's start.
constexpr std::size_t kRecord = 16384;

class Server {
 public:
  // tls: the https context (null: http).
  Server(const Store& store, Clock::duration latency, SSL_CTX* tls)
      : store_(store), latency_(latency), tls_(tls) {}

  int Listen(const char* host, int port) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) Die("socket");
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) Die("bad --host");
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) Die("bind");
    if (listen(listen_fd_, 1024) < 0) Die("listen");
    socklen_t len = sizeof addr;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) Die("epoll_create1");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 0;
    epoll_ctl(epfd_, EPOLL_CTL_ADD, listen_fd_, &ev);
    // Replies fall due on a timer of nanoseconds (epoll_wait's timeout is
    // in whole milliseconds, which would add up to 1 ms to every request).
    timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (timer_fd_ < 0) Die("timerfd_create");
    ev.data.u64 = kTimerId;
    epoll_ctl(epfd_, EPOLL_CTL_ADD, timer_fd_, &ev);
    return ntohs(addr.sin_port);
  }

  void Run() {
    std::vector<epoll_event> events(256);
    for (;;) {
      const int n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), -1);
      if (n < 0 && errno != EINTR) Die("epoll_wait");
      for (int i = 0; i < n; ++i) {
        const std::uint64_t id = events[i].data.u64;
        if (id == 0) {
          Accept();
          continue;
        }
        if (id == kTimerId) {
          std::uint64_t expirations;
          [[maybe_unused]] ssize_t r = read(timer_fd_, &expirations, sizeof expirations);
          continue;
        }
        auto it = conns_.find(id);
        if (it == conns_.end()) continue;
        Conn& c = it->second;
        if (events[i].events & (EPOLLERR | EPOLLHUP)) {
          if (c.handshaking) ++stats_.tls_failures;
          Close(c);
          continue;
        }
        if (c.handshaking) {
          Handshake(c);
          continue;
        }
        if (events[i].events & EPOLLOUT) Flush(c);
        if (conns_.count(id) && (events[i].events & EPOLLIN)) Read(c);
      }
      Release();
      Arm();
    }
  }

 private:
  void Accept() {
    for (;;) {
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      const std::uint64_t id = ++next_id_;
      ++stats_.connections;
      Conn& c = conns_[id];
      c.fd = fd;
      c.id = id;
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.u64 = id;
      epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
      if (tls_) {
        c.ssl = SSL_new(tls_);
        if (!c.ssl || SSL_set_fd(c.ssl, fd) != 1) {
          ++stats_.tls_failures;
          ERR_clear_error();
          Close(c);
          continue;
        }
        SSL_set_accept_state(c.ssl);
        c.handshaking = true;
        // Nothing to do until the ClientHello comes (EPOLLIN).
      }
    }
  }

  // Moves the TLS handshake of `c` on as far as the socket lets it.
  void Handshake(Conn& c) {
    ERR_clear_error();
    const int rc = SSL_do_handshake(c.ssl);
    if (rc == 1) {
      c.handshaking = false;
      ++(SSL_session_reused(c.ssl) ? stats_.tls_resumed : stats_.tls_full);
      Want(c, false);
      Read(c);  // the first request may have come with the client's Finished
      return;
    }
    switch (SSL_get_error(c.ssl, rc)) {
      case SSL_ERROR_WANT_READ: Want(c, false); return;
      case SSL_ERROR_WANT_WRITE: Want(c, true); return;
      default:
        ++stats_.tls_failures;
        ERR_clear_error();
        Close(c);
    }
  }

  void Read(Conn& c) {
    char buf[16384];
    if (c.ssl) {
      for (;;) {
        ERR_clear_error();
        const int r = SSL_read(c.ssl, buf, sizeof buf);
        if (r > 0) {
          c.in.append(buf, static_cast<std::size_t>(r));
          continue;
        }
        const int e = SSL_get_error(c.ssl, r);
        if (e == SSL_ERROR_WANT_READ) break;
        if (e == SSL_ERROR_WANT_WRITE) {  // a TLS 1.3 key update to answer
          Want(c, true);
          break;
        }
        // close_notify, EOF or a TLS error: replies still due are dropped.
        c.tls_broken = e != SSL_ERROR_ZERO_RETURN;
        ERR_clear_error();
        Close(c);
        return;
      }
      Parse(c);
      return;
    }
    for (;;) {
      const ssize_t r = recv(c.fd, buf, sizeof buf, 0);
      if (r > 0) {
        c.in.append(buf, static_cast<std::size_t>(r));
        continue;
      }
      if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        // The client closed its side: replies still due are dropped.
        Close(c);
        return;
      }
      if (errno == EINTR) continue;
      break;
    }
    Parse(c);
  }

  // Takes every whole request out of c.in and schedules its reply.
  void Parse(Conn& c) {
    const auto now = Clock::now();
    std::size_t pos = 0;
    for (;;) {
      const std::size_t end = c.in.find("\r\n\r\n", pos);
      if (end == std::string::npos) break;
      const std::string_view head(c.in.data() + pos, end - pos);
      const std::size_t line_end = head.find("\r\n");
      const std::string_view line = head.substr(0, line_end);
      const std::size_t sp1 = line.find(' ');
      const std::size_t sp2 = line.find(' ', sp1 + 1);
      std::string_view range;
      std::size_t body_len = 0;
      bool close = false;
      std::string_view fields = line_end == std::string_view::npos ? "" : head.substr(line_end + 2);
      while (!fields.empty()) {
        const std::size_t eol = fields.find("\r\n");
        const std::string_view f = fields.substr(0, eol);
        fields = eol == std::string_view::npos ? "" : fields.substr(eol + 2);
        const std::size_t colon = f.find(':');
        if (colon == std::string_view::npos) continue;
        const std::string_view name = f.substr(0, colon);
        std::string_view value = f.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        if (IEquals(name, "range")) range = value;
        if (IEquals(name, "content-length")) body_len = std::strtoull(std::string(value).c_str(), nullptr, 10);
        if (IEquals(name, "connection") && IEquals(value, "close")) close = true;
      }
      const std::size_t total = end + 4 - pos + body_len;
      if (c.in.size() - pos < total) break;  // the body is not all here yet
      std::shared_ptr<Reply> reply;
      ++stats_.requests;
      if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) {
        reply = std::make_shared<Reply>();
        reply->head = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        close = true;
      } else if (line.substr(sp1 + 1, sp2 - sp1 - 1) == "/__stub__/stats") {
        reply = StatsReply();
      } else {
        reply = store_.Answer(line.substr(0, sp1), line.substr(sp1 + 1, sp2 - sp1 - 1), range);
      }
      reply->close = close;
      pending_.push_back({now + latency_, c.id, std::move(reply)});
      pos += total;
      if (close) break;
    }
    c.in.erase(0, pos);
  }

  // Hands every reply whose time has come to its connection.
  void Release() {
    const auto now = Clock::now();
    while (!pending_.empty() && pending_.front().due <= now) {
      Pending p = std::move(pending_.front());
      pending_.pop_front();
      auto it = conns_.find(p.conn_id);
      if (it == conns_.end()) continue;
      Conn& c = it->second;
      c.out.push_back(std::move(p.reply));
      if (!c.want_out) Flush(c);
    }
  }

  // Sets the timer to the first reply still waiting (due times ascend).
  void Arm() {
    if (pending_.empty() || armed_ == pending_.front().due) return;
    armed_ = pending_.front().due;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        armed_.time_since_epoch()).count();
    itimerspec t{};
    t.it_value.tv_sec = ns / 1000000000;
    t.it_value.tv_nsec = ns % 1000000000;
    if (timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &t, nullptr) < 0) Die("timerfd_settime");
  }

  // The counts as JSON ("__stub__" is no valid bucket name).
  std::shared_ptr<Reply> StatsReply() const {
    auto r = std::make_shared<Reply>();
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "{\"connections\": %llu, \"requests\": %llu, \"tls_full\": %llu, "
                  "\"tls_resumed\": %llu, \"tls_failures\": %llu}",
                  static_cast<unsigned long long>(stats_.connections),
                  static_cast<unsigned long long>(stats_.requests),
                  static_cast<unsigned long long>(stats_.tls_full),
                  static_cast<unsigned long long>(stats_.tls_resumed),
                  static_cast<unsigned long long>(stats_.tls_failures));
    r->owned = buf;
    r->body = r->owned;
    r->head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
              std::to_string(r->owned.size()) + "\r\n\r\n";
    return r;
  }

  // Sends what of c.out.front() the socket takes (through TLS on https).
  // Returns the bytes sent, 0 when the socket takes no more now (`c` then
  // waits for EPOLLOUT), or -1 when the connection failed.
  ssize_t Send(Conn& c, const Reply& r) {
    if (!c.ssl) {
      iovec iov[2];
      int n = 0;
      std::size_t skip = c.sent;
      if (skip < r.head.size()) {
        iov[n++] = {const_cast<char*>(r.head.data()) + skip, r.head.size() - skip};
        skip = 0;
      } else {
        skip -= r.head.size();
      }
      if (skip < r.body.size()) iov[n++] = {const_cast<char*>(r.body.data()) + skip, r.body.size() - skip};
      for (;;) {
        const ssize_t w = n ? writev(c.fd, iov, n) : 0;
        if (w >= 0) return w;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          Want(c, true);
          return 0;
        }
        return -1;
      }
    }
    // SSL_write has no gather: the head goes out in one record with the
    // body's start. A write that must wait is retried with the same bytes
    // (as OpenSSL requires): c.sent has not moved, so they are rebuilt alike.
    const char* p;
    std::size_t len;
    if (c.sent < r.head.size()) {
      c.stage.assign(r.head, c.sent);
      c.stage.append(r.body.data(),
                     std::min(r.body.size(), kRecord - std::min(kRecord, c.stage.size())));
      p = c.stage.data();
      len = c.stage.size();
    } else {
      const std::size_t off = c.sent - r.head.size();
      p = r.body.data() + off;
      len = r.body.size() - off;
    }
    if (len == 0) return 0;  // nothing to send: cannot happen (Flush pops whole replies)
    ERR_clear_error();
    const int w = SSL_write(c.ssl, p, static_cast<int>(std::min<std::size_t>(len, INT_MAX)));
    if (w > 0) return w;
    switch (SSL_get_error(c.ssl, w)) {
      case SSL_ERROR_WANT_WRITE: Want(c, true); return 0;
      case SSL_ERROR_WANT_READ: Want(c, false); return 0;  // not with renegotiation off
      default:
        c.tls_broken = true;
        ERR_clear_error();
        return -1;
    }
  }

  void Flush(Conn& c) {
    while (!c.out.empty()) {
      const Reply& r = *c.out.front();
      const ssize_t w = r.head.size() + r.body.size() > c.sent ? Send(c, r) : 0;
      if (w < 0) {
        Close(c);
        return;
      }
      if (w == 0 && c.sent < r.head.size() + r.body.size()) return;  // waits for EPOLLOUT
      c.sent += static_cast<std::size_t>(w);
      if (c.sent == r.head.size() + r.body.size()) {
        const bool close = r.close;
        c.out.pop_front();
        c.sent = 0;
        if (close) {
          Close(c);
          return;
        }
      }
    }
    Want(c, false);
  }

  void Want(Conn& c, bool out) {
    if (c.want_out == out) return;
    c.want_out = out;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | (out ? EPOLLOUT : 0u);
    ev.data.u64 = c.id;
    epoll_ctl(epfd_, EPOLL_CTL_MOD, c.fd, &ev);
  }

  void Close(Conn& c) {
    if (c.ssl) {
      if (!c.handshaking) {
        // A close_notify when the connection is sound (never waited for).
        if (!c.tls_broken) SSL_shutdown(c.ssl);
        // Its session stays in the cache even when the client closed
        // without a close_notify (OpenSSL drops it otherwise), as web
        // servers keep theirs.
        SSL_set_shutdown(c.ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
      }
      SSL_free(c.ssl);
      ERR_clear_error();
    }
    epoll_ctl(epfd_, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
    conns_.erase(c.id);
  }

  const Store& store_;
  Clock::duration latency_;
  SSL_CTX* tls_;  // null: http
  Stats stats_;
  int listen_fd_ = -1;
  static constexpr std::uint64_t kTimerId = ~std::uint64_t{0};
  int epfd_ = -1;
  int timer_fd_ = -1;
  Clock::time_point armed_{};
  std::uint64_t next_id_ = 0;
  std::unordered_map<std::uint64_t, Conn> conns_;
  std::deque<Pending> pending_;  // due times ascend: every reply waits the same latency
};

}  // namespace

int main(int argc, char** argv) {
  std::string dir, bucket = "bench", prefix, host = "127.0.0.1", tls_cert, tls_key;
  double latency_ms = 0;
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "s3_stub: %s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--dir") dir = value();
    else if (a == "--bucket") bucket = value();
    else if (a == "--prefix") prefix = value();
    else if (a == "--host") host = value();
    else if (a == "--port") port = std::stoi(value());
    else if (a == "--latency-ms") latency_ms = std::stod(value());
    else if (a == "--tls-cert") tls_cert = value();
    else if (a == "--tls-key") tls_key = value();
    else {
      std::fprintf(stderr,
                   "usage: s3_stub --dir DIR [--bucket B] [--prefix P] [--latency-ms MS] "
                   "[--host H] [--port N] [--tls-cert CHAIN.pem --tls-key KEY.pem]\n");
      return 2;
    }
  }
  if (tls_cert.empty() != tls_key.empty()) {
    std::fprintf(stderr, "s3_stub: --tls-cert and --tls-key go together\n");
    return 2;
  }
  if (dir.empty() || !std::filesystem::is_directory(dir)) {
    std::fprintf(stderr, "s3_stub: --dir %s is not a folder\n", dir.c_str());
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  SSL_CTX* tls = tls_cert.empty() ? nullptr : TlsContext(tls_cert, tls_key);
  const Store store(dir, bucket, prefix);
  Server server(store,
                std::chrono::duration_cast<Clock::duration>(
                    std::chrono::duration<double, std::milli>(latency_ms)),
                tls);
  const int bound = server.Listen(host.c_str(), port);
  std::printf("PORT %d\n", bound);
  std::fflush(stdout);
  server.Run();
}
