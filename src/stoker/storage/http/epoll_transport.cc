#include "stoker/storage/http/epoll_transport.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "stoker/base/cpu_time.h"
#include "stoker/storage/http/io_thread.h"
#include "stoker/storage/http/reply_reader.h"
#include "stoker/storage/http/url.h"

namespace stoker::storage::http {
namespace {

// Read size for reply heads and bodies of unknown length.
constexpr size_t kReadChunk = size_t{16} << 10;
constexpr double kNever = internal::IoState::kNever;
// How long a resolved address list is kept.
constexpr double kResolveTtl = 60.0;

struct Target {
  std::string host;       // for getaddrinfo: no IPv6 brackets
  std::string port;       // digits
  std::string key;        // host:port, the connection pool
  std::string authority;  // the Host header when the request has none
  std::string path;       // path and query, at least "/"
};

// "http://host[:port][/path][?query]". The host and port are checked by
// ParseUrl (url.h), as an endpoint's are; the path is kept as given (S3
// keys are literal, and it is what was signed).
bool SplitUrl(std::string_view url, Target* t, std::string* error) {
  constexpr std::string_view kScheme = "http://";
  if (url.size() < kScheme.size() || ToLower(url.substr(0, kScheme.size())) != kScheme) {
    *error = "not an http:// URL";
    return false;
  }
  const size_t path = url.find_first_of("/?#", kScheme.size());
  Result<Url> origin = ParseUrl(url.substr(0, path));
  if (!origin.ok()) {
    *error = origin.status().message();
    return false;
  }
  const std::string& host = origin->host;
  t->host = host.front() == '[' ? host.substr(1, host.size() - 2) : host;
  t->port = std::to_string(origin->port ? origin->port : 80);
  t->key = host + ":" + t->port;
  t->authority = origin->Authority();
  const std::string_view rest = path == std::string_view::npos ? "" : url.substr(path);
  t->path = rest.empty() || rest.front() != '/' ? "/" + std::string(rest) : std::string(rest);
  return true;
}

struct Address {
  sockaddr_storage addr;
  socklen_t len;
};

struct Op;

struct Conn {
  enum Phase {
    kConnecting,
    kSending,
    kReceiving,
    kIdle,  // in its pool, waiting for the next request
  };
  int fd = -1;
  uint64_t id = 0;  // epoll's key: new with every socket, so a stale event never
                    // reaches a later socket that got the same fd number
  std::string key;  // host:port, the pool it belongs to
  Phase phase = kConnecting;
  Op* op = nullptr;
  bool reused = false;
  std::string out;
  size_t out_off = 0;
  ReplyReader reader;
  std::vector<Address> addrs;  // what connecting may still try
  size_t addr_next = 0;
  uint32_t events = 0;  // registered with epoll
};

struct Op {
  Request request;
  Transport::Callback done;
  std::shared_ptr<void> stop_wake;  // see Pending
  Response response;
  Target target;
  Conn* conn = nullptr;
  double start = 0;
  double deadline = kNever;       // the attempt's total time limit
  double connect_deadline = kNever;
  double last_activity = 0;       // 0 until connected
  double window_start = 0;        // low-speed window
  int64_t window_bytes = 0;
  bool resent = false;            // already resent once after a stale connection
};

using internal::Pending;

std::string Errno(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

// Everything the I/O thread touches; shared with the Transport object so it
// can be destroyed from inside a callback (see the curl transport).
struct State : internal::IoState {
  CurlOptions options;

  // I/O thread only.
  std::unordered_set<Op*> active;
  std::unordered_map<std::string, std::vector<Conn*>> idle;  // by host:port, most recent last
  size_t idle_count = 0;
  std::unordered_map<uint64_t, Conn*> conns;  // every open connection, by id
  uint64_t next_id = 0;
  struct Resolved {
    std::vector<Address> addrs;
    double expires = 0;
  };
  std::unordered_map<std::string, Resolved> resolved;  // by host:port
  std::unordered_set<std::string> answered;  // host:port that gave an HTTP reply
  double next_check = kNever;  // no attempt can time out before this

  // ---- IoState hooks ------------------------------------------------------

  void Start(Pending p) override { StartOp(std::move(p), WallSeconds()); }

  double Tick(double now) override {
    CheckTimeouts(now);
    return next_check;
  }

  void OnEvent(const epoll_event& e) override { OnSocket(e.data.u64, e.events); }

  void CancelStarted() override {
    std::vector<Op*> left(active.begin(), active.end());
    for (Op* op : left) Fail(op, NetError::kCancelled, "transport shut down");
  }

  void AbortStopped() override {
    std::vector<Op*> stopped;
    for (Op* op : active) {
      if (op->request.stop.stop_requested()) stopped.push_back(op);
    }
    for (Op* op : stopped) {
      // The body it was receiving into goes back; its connection is closed
      // (the rest of that reply must never be read as the next one's).
      if (op->conn && op->request.body_buffers) {
        auto& body = op->conn->reader.response().body;
        if (body.capacity() > 0) op->request.body_buffers->Put(std::move(body));
      }
      Fail(op, NetError::kCancelled, internal::kStopped);
    }
  }

  ~State() {
    for (auto& [id, c] : conns) {
      ::close(c->fd);
      delete c;
    }
  }

  double ReadTimeout() const { return static_cast<double>(options.read_timeout_ms) * 1e-3; }
  double LowSpeedTime() const {
    return static_cast<double>(std::max(options.low_speed_time_s,
                                        (options.read_timeout_ms + 999) / 1000));
  }

  // ---- connections -------------------------------------------------------

  void Watch(Conn* c, uint32_t events) {
    if (c->events == events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = c->id;
    epoll_ctl(epoll_fd, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev);
    c->events = events;
  }

  void CloseConn(Conn* c) {
    if (c->phase == Conn::kIdle) {
      auto& pool = idle[c->key];
      pool.erase(std::remove(pool.begin(), pool.end(), c), pool.end());
      --idle_count;
    }
    conns.erase(c->id);
    if (c->fd >= 0) ::close(c->fd);  // also takes it out of the epoll set
    delete c;
  }

  // The addresses of host:port, resolved at most every kResolveTtl seconds.
  // Blocking, on this thread: http:// endpoints are addresses or cluster
  // names, resolved once a minute.
  const Resolved* Resolve(const Target& t, double now, std::string* error) {
    auto it = resolved.find(t.key);
    if (it != resolved.end() && it->second.expires > now) return &it->second;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    if (int rc = getaddrinfo(t.host.c_str(), t.port.c_str(), &hints, &res); rc != 0) {
      *error = "cannot resolve " + t.host + ": " + gai_strerror(rc);
      return nullptr;
    }
    Resolved r;
    for (addrinfo* a = res; a; a = a->ai_next) {
      Address address{};
      std::memcpy(&address.addr, a->ai_addr, a->ai_addrlen);
      address.len = a->ai_addrlen;
      r.addrs.push_back(address);
    }
    freeaddrinfo(res);
    if (r.addrs.empty()) {
      *error = "cannot resolve " + t.host + ": no address";
      return nullptr;
    }
    r.expires = now + kResolveTtl;
    return &(resolved[t.key] = std::move(r));
  }

  // Starts connecting `c` to its next address; false when none is left
  // (`error` says why the last one failed).
  bool ConnectNext(Conn* c, std::string* error) {
    while (c->addr_next < c->addrs.size()) {
      const Address& address = c->addrs[c->addr_next++];
      if (c->fd >= 0) {
        conns.erase(c->id);
        ::close(c->fd);
        c->fd = -1;
        c->events = 0;
      }
      const int fd = ::socket(address.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        *error = Errno("socket", errno);
        continue;
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
      c->fd = fd;
      c->id = ++next_id;
      conns[c->id] = c;
      if (::connect(fd, reinterpret_cast<const sockaddr*>(&address.addr), address.len) == 0 ||
          errno == EINPROGRESS) {
        Watch(c, EPOLLOUT);
        return true;
      }
      *error = Errno(("cannot connect to " + c->key).c_str(), errno);
    }
    return false;
  }

  // ---- requests ----------------------------------------------------------

  void StartOp(Pending p, double now) {
    auto* op = new Op;
    op->request = std::move(p.request);
    op->done = std::move(p.done);
    op->stop_wake = std::move(p.stop_wake);
    op->start = now;
    long timeout_ms = options.total_timeout_ms;
    if (op->request.timeout.count() > 0) {
      const long own = static_cast<long>(std::max<int64_t>(1, op->request.timeout.count()));
      timeout_ms = timeout_ms > 0 ? std::min(timeout_ms, own) : own;
    }
    if (timeout_ms > 0) op->deadline = now + static_cast<double>(timeout_ms) * 1e-3;
    if (std::string error; !SplitUrl(op->request.url, &op->target, &error)) {
      Finish(op, NetError::kOther, "cannot send this request: " + error);
      return;
    }
    if (op->request.method != "GET" && op->request.method != "HEAD") {
      Finish(op, NetError::kOther, "method " + op->request.method + " is not supported");
      return;
    }
    active.insert(op);
    Attach(op, now);
  }

  // Gives `op` a connection: an idle one to its host (unless `fresh`), or a
  // new one.
  void Attach(Op* op, double now, bool fresh = false) {
    auto pool = idle.find(op->target.key);
    if (!fresh && pool != idle.end() && !pool->second.empty()) {
      Conn* c = pool->second.back();
      pool->second.pop_back();
      --idle_count;
      c->reused = true;
      c->op = op;
      op->conn = c;
      BeginSend(c);
      return;
    }
    std::string error;
    const Resolved* r = Resolve(op->target, now, &error);
    if (!r) {
      Fail(op, NetError::kResolve, error, answered.count(op->target.key) == 0);
      return;
    }
    auto* c = new Conn;
    c->key = op->target.key;
    c->addrs = r->addrs;
    c->op = op;
    op->conn = c;
    op->connect_deadline = now + static_cast<double>(options.connect_timeout_ms) * 1e-3;
    next_check = std::min(next_check, std::min(op->connect_deadline, op->deadline));
    if (!ConnectNext(c, &error)) {
      op->conn = nullptr;
      c->op = nullptr;
      CloseConn(c);
      Fail(op, NetError::kConnect, error);
    }
  }

  void BeginSend(Conn* c) {
    Op* op = c->op;
    const Request& r = op->request;
    std::string& out = c->out;
    out.clear();
    out += r.method;
    out += ' ';
    out += op->target.path;
    out += " HTTP/1.1\r\n";
    bool has_host = false;
    for (const auto& [k, v] : r.headers) {
      if (k.size() == 4 && ToLower(k) == "host") has_host = true;
    }
    if (!has_host) out += "Host: " + op->target.authority + "\r\n";
    for (const auto& [k, v] : r.headers) {
      out += k;
      out += v.empty() ? ":" : ": ";
      out += v;
      out += "\r\n";
    }
    out += "\r\n";
    c->out_off = 0;
    c->reader.Start(r.method == "HEAD", r.body_buffers);
    c->phase = Conn::kSending;
    const double now = WallSeconds();
    op->last_activity = now;
    op->window_start = now;
    op->window_bytes = 0;
    if (ReadTimeout() > 0) next_check = std::min(next_check, now + ReadTimeout());
    next_check = std::min(next_check, op->deadline);
    Send(c);
  }

  void Send(Conn* c) {
    while (c->out_off < c->out.size()) {
      const ssize_t n = ::send(c->fd, c->out.data() + c->out_off, c->out.size() - c->out_off,
                               MSG_NOSIGNAL);
      if (n > 0) {
        c->out_off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        Watch(c, EPOLLOUT);
        return;
      }
      Broken(c, Errno("send", errno));
      return;
    }
    c->phase = Conn::kReceiving;
    Watch(c, EPOLLIN | EPOLLRDHUP);
  }

  // The connection failed under its request: resend once on a new
  // connection if it was a reused one that had sent nothing back (the server
  // had closed it while idle), else fail the request.
  void Broken(Conn* c, std::string why) {  // by value: `why` may live in c
    Op* op = c->op;
    const bool stale = c->reused && !c->reader.got_bytes() && !op->resent;
    CloseConn(c);
    op->conn = nullptr;
    if (stale) {
      op->resent = true;
      Attach(op, WallSeconds(), /*fresh=*/true);
      return;
    }
    Fail(op, NetError::kReset, std::move(why));
  }

  void OnSocket(uint64_t id, uint32_t events) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    Conn* c = it->second;
    const int fd = c->fd;
    if (c->phase == Conn::kIdle) {
      // An idle connection is readable only when the server closed it (or
      // sent something unasked): either way it is done.
      CloseConn(c);
      return;
    }
    if (c->phase == Conn::kConnecting) {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == 0 && (events & EPOLLOUT) && !(events & EPOLLERR)) {
        Connected(c);
      } else {
        std::string error = Errno(("cannot connect to " + c->key).c_str(), err ? err : ECONNREFUSED);
        if (!ConnectNext(c, &error)) {
          Op* op = c->op;
          op->conn = nullptr;
          CloseConn(c);
          Fail(op, NetError::kConnect, error);
        }
      }
      return;
    }
    if (c->phase == Conn::kSending) {
      Send(c);
      return;
    }
    Receive(c);
  }

  void Connected(Conn* c) {
    Op* op = c->op;
    op->connect_deadline = kNever;
    c->addrs.clear();
    BeginSend(c);
  }

  void Activity(Op* op, size_t bytes, double now) {
    op->last_activity = now;
    op->window_bytes += static_cast<int64_t>(bytes);
  }

  void Receive(Conn* c) {
    Op* op = c->op;
    const double now = WallSeconds();
    ReplyReader& reader = c->reader;
    for (;;) {
      ReplyReader::Status st;
      ssize_t n;
      if (const ReplyReader::Window w = reader.BodyWindow(); w.size > 0) {
        // Straight into the body: no copy out of a receive buffer.
        n = ::recv(c->fd, w.data, w.size, 0);
        if (n > 0) {
          Activity(op, static_cast<size_t>(n), now);
          st = reader.CommitBody(static_cast<size_t>(n));
        }
      } else {
        char buf[kReadChunk];
        n = ::recv(c->fd, buf, sizeof(buf), 0);
        if (n > 0) {
          Activity(op, static_cast<size_t>(n), now);
          st = reader.Feed(buf, static_cast<size_t>(n));
        }
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n < 0) {
        Broken(c, Errno("recv", errno));
        return;
      }
      if (n == 0) st = reader.Eof();
      if (st == ReplyReader::kDone) {
        Complete(c);
        return;
      }
      if (st == ReplyReader::kCutShort) {
        Broken(c, reader.error());  // a reset (or a stale reused connection)
        return;
      }
      if (st == ReplyReader::kError) {
        Fail(op, NetError::kOther, reader.error());  // closes c
        return;
      }
    }
  }

  // The reply is whole: the connection goes back to its pool (or is closed)
  // and the request completes.
  void Complete(Conn* c) {
    Op* op = c->op;
    c->op = nullptr;
    op->conn = nullptr;
    op->response = std::move(c->reader.response());
    answered.insert(c->key);
    // Bytes after the reply were not asked for: such a connection is not reused.
    if (c->reader.keep_alive() && c->reader.leftover() == 0 &&
        idle_count < static_cast<size_t>(options.max_idle_connections)) {
      c->phase = Conn::kIdle;
      c->reused = false;
      c->out.clear();  // its capacity serves the next request
      idle[c->key].push_back(c);
      ++idle_count;
      Watch(c, EPOLLIN | EPOLLRDHUP);
    } else {
      CloseConn(c);
    }
    active.erase(op);
    Deliver(op);
  }

  // `message` by value: it may live in the connection this closes.
  // `first_contact`: see Response::first_contact.
  void Fail(Op* op, NetError error, std::string message, bool first_contact = false) {
    if (op->conn) {
      Conn* c = op->conn;
      op->conn = nullptr;
      c->op = nullptr;
      CloseConn(c);
    }
    active.erase(op);
    op->response = Response{};
    op->response.error = error;
    op->response.error_message = std::move(message);
    op->response.first_contact = first_contact;
    Deliver(op);
  }

  void Finish(Op* op, NetError error, const std::string& message) {
    op->response.error = error;
    op->response.error_message = message;
    Deliver(op);
  }

  void Deliver(Op* op) {
    op->response.seconds = WallSeconds() - op->start;
    auto done = std::move(op->done);
    Response response = std::move(op->response);
    delete op;
    done(std::move(response));
  }

  // Fails attempts past a deadline: connect, total, read (silence) and
  // low speed. Runs when the earliest of them may have come.
  void CheckTimeouts(double now) {
    if (now < next_check) return;
    next_check = kNever;
    std::vector<std::pair<Op*, std::string>> expired;
    const double read_timeout = ReadTimeout();
    const double low_time = LowSpeedTime();
    char msg[200];
    for (Op* op : active) {
      double due = op->deadline;
      if (now >= op->deadline) {
        std::snprintf(msg, sizeof(msg), "the attempt took longer than its %.1f s limit",
                      op->deadline - op->start);
        expired.emplace_back(op, msg);
        continue;
      }
      if (op->connect_deadline != kNever) {
        if (now >= op->connect_deadline) {
          std::snprintf(msg, sizeof(msg), "connecting to %s took over %.1f s",
                        op->conn ? op->conn->key.c_str() : "the server",
                        static_cast<double>(options.connect_timeout_ms) * 1e-3);
          expired.emplace_back(op, msg);
          continue;
        }
        due = std::min(due, op->connect_deadline);
      } else if (op->last_activity > 0) {
        if (read_timeout > 0) {
          if (now >= op->last_activity + read_timeout) {
            std::snprintf(msg, sizeof(msg), "no data from the server for %.1f s (read timeout %.1f s)",
                          now - op->last_activity, read_timeout);
            expired.emplace_back(op, msg);
            continue;
          }
          due = std::min(due, op->last_activity + read_timeout);
        }
        if (options.low_speed_bytes_per_s > 0) {
          if (now >= op->window_start + low_time) {
            const double rate = static_cast<double>(op->window_bytes) / (now - op->window_start);
            if (rate < static_cast<double>(options.low_speed_bytes_per_s)) {
              std::snprintf(msg, sizeof(msg), "transfer slower than %ld bytes/s for %.0f s",
                            options.low_speed_bytes_per_s, low_time);
              expired.emplace_back(op, msg);
              continue;
            }
            op->window_start = now;
            op->window_bytes = 0;
          }
          due = std::min(due, op->window_start + low_time);
        }
      }
      next_check = std::min(next_check, due);
    }
    for (auto& [op, why] : expired) Fail(op, NetError::kTimeout, why);
  }

};

// http:// to the epoll transport, the rest to curl (made when first needed).
class RoutingTransport final : public Transport {
 public:
  RoutingTransport(const CurlOptions& options, bool http_to_curl)
      : options_(options), http_to_curl_(http_to_curl) {}

  ~RoutingTransport() override { Shutdown(); }

  void Send(Request request, std::chrono::nanoseconds delay, Callback done) override {
    const bool http = !http_to_curl_ && request.url.size() > 7 &&
                      ToLower(std::string_view(request.url).substr(0, 7)) == "http://";
    Transport* t = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!shut_) {
        auto& slot = http ? epoll_ : curl_;
        if (!slot) slot = http ? NewEpollTransport(options_) : NewCurlTransport(options_);
        t = slot.get();
      }
    }
    if (!t) {
      internal::Cancel(done);
      return;
    }
    t->Send(std::move(request), delay, std::move(done));
  }

  void Shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      shut_ = true;
    }
    // Both are kept (not reset) so a Send racing with this one still finds
    // a live transport; each refuses new requests once shut down.
    if (epoll_) epoll_->Shutdown();
    if (curl_) curl_->Shutdown();
  }

 private:
  const CurlOptions options_;
  const bool http_to_curl_;
  std::mutex mu_;
  bool shut_ = false;  // guarded by mu_
  std::unique_ptr<Transport> epoll_;  // made under mu_, then only read
  std::unique_ptr<Transport> curl_;
};

bool EnvSet(const char* name) {
  const char* v = std::getenv(name);
  return v && *v;
}

}  // namespace

std::unique_ptr<Transport> NewEpollTransport(const CurlOptions& options) {
  auto state = std::make_shared<State>();
  state->options = options;
  return std::make_unique<internal::ThreadedTransport<State>>(std::move(state));
}

std::unique_ptr<Transport> NewTransport(const CurlOptions& options) {
  const char* choice = std::getenv("STOKER_HTTP_TRANSPORT");
  if (choice && std::string_view(choice) == "curl") return NewCurlTransport(options);
  // libcurl reads http_proxy (lower-case only, for http) and all_proxy /
  // ALL_PROXY; this transport does not speak to proxies, so leave it all to
  // curl then.
  const bool proxy = EnvSet("http_proxy") || EnvSet("all_proxy") || EnvSet("ALL_PROXY");
  return std::make_unique<RoutingTransport>(options, proxy);
}

}  // namespace stoker::storage::http
