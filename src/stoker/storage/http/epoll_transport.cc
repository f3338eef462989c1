#include "stoker/storage/http/epoll_transport.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "stoker/base/cpu_time.h"
#include "stoker/base/logging.h"
#include "stoker/storage/http/ca_store.h"
#include "stoker/storage/http/io_thread.h"
#include "stoker/storage/http/reply_reader.h"
#include "stoker/storage/http/retry.h"
#include "stoker/storage/http/url.h"

namespace stoker::storage::http {
namespace {

// Read size for reply heads and bodies of unknown length.
constexpr size_t kReadChunk = size_t{16} << 10;
// A request body up to this size is copied after the head and sent with it;
// a larger one is sent from the request's own buffer.
constexpr size_t kInlineBody = size_t{64} << 10;
constexpr double kNever = internal::IoState::kNever;
// How long a resolved address list is kept.
constexpr double kResolveTtl = 60.0;

// Empties this thread's OpenSSL error queue, as SSL_get_error needs before
// each TLS call. The queue is almost always empty already: peeking at it
// costs far less than ERR_clear_error, which resets every slot (0.2% of
// the loader's CPU over https when called before every read).
void ClearTlsErrors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

struct Target {
  bool tls = false;       // https://
  std::string host;       // for getaddrinfo, SNI and the certificate check: no IPv6 brackets
  std::string port;       // digits
  std::string key;        // scheme://host:port, the connection pool
  std::string authority;  // the Host header when the request has none
  std::string path;       // path and query, at least "/"
};

// "http[s]://host[:port][/path][?query]". The host and port are checked by
// ParseUrl (url.h), as an endpoint's are; the path is kept as given (S3
// keys are literal, and it is what was signed).
bool SplitUrl(std::string_view url, Target* t, std::string* error) {
  constexpr std::string_view kHttp = "http://", kHttps = "https://";
  const std::string lower = ToLower(url.substr(0, kHttps.size()));
  if (lower.rfind(kHttps, 0) == 0) {
    t->tls = true;
  } else if (lower.rfind(kHttp, 0) != 0) {
    *error = "not an http:// or https:// URL";
    return false;
  }
  const std::string_view scheme = t->tls ? kHttps : kHttp;
  const size_t path = url.find_first_of("/?#", scheme.size());
  Result<Url> origin = ParseUrl(url.substr(0, path));
  if (!origin.ok()) {
    *error = origin.status().message();
    return false;
  }
  const std::string& host = origin->host;
  t->host = host.front() == '[' ? host.substr(1, host.size() - 2) : host;
  t->port = std::to_string(origin->port ? origin->port : (t->tls ? 443 : 80));
  t->key = std::string(scheme) + host + ":" + t->port;
  t->authority = origin->Authority();
  const std::string_view rest = path == std::string_view::npos ? "" : url.substr(path);
  t->path = rest.empty() || rest.front() != '/' ? "/" + std::string(rest) : std::string(rest);
  return true;
}

struct Address {
  sockaddr_storage addr;
  socklen_t len;
};

// TLS connections one host may have opening (connecting, handshaking) at
// once: a cold start asks for a hundred connections at the same moment, and
// each full handshake costs both ends CPU. Requests beyond it wait for the
// first connection that frees up (a finished request's) or for a slot.
constexpr int kMaxTlsOpening = 8;
// Of those, how many may go without a session to resume, counting TLS 1.3
// connections whose tickets have not come yet (they come after the
// handshake): a new connection waits for a ticket rather than make a full
// handshake while some are on their way. So after the first connection,
// every one resumes (each brings tickets for more: servers send two per
// handshake); a server that sends none gets kMaxFullHandshakes at a time.
constexpr int kMaxFullHandshakes = 2;
// TLS sessions (tickets) kept per host: TLS 1.3 tickets serve one
// resumption each, and servers send two per handshake.
constexpr size_t kMaxSessions = 256;

struct Op;

struct Conn {
  enum Phase {
    kConnecting,
    kHandshaking,  // TLS
    kSending,
    kReceiving,
    kIdle,  // in its pool, waiting for the next request
  };
  int fd = -1;
  uint64_t id = 0;  // epoll's key: new with every socket, so a stale event never
                    // reaches a later socket that got the same fd number
  std::string key;  // scheme://host:port, the pool it belongs to
  Phase phase = kConnecting;
  Op* op = nullptr;
  bool reused = false;
  SSL* ssl = nullptr;      // https: the TLS connection over fd
  bool tls_clean = false;  // handshake done and no TLS error since: close_notify on close
  bool opening = false;    // https, connecting or handshaking: counted in Host::opening
  bool awaiting_ticket = false;    // TLS 1.3, handshake done, no ticket nor reply yet: Host::awaiting
  SSL_SESSION* session = nullptr;  // to resume, taken when the connection was made
  std::string out;   // the request head (and a small body)
  size_t out_off = 0;
  // A body too large to copy into `out`: sent after it, from the request.
  const std::string* body = nullptr;
  size_t body_off = 0;
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
  bool waiting = false;           // in its Host::waiting, for a connection
  double start = 0;
  double deadline = kNever;       // the attempt's total time limit
  double connect_deadline = kNever;
  double last_activity = 0;       // 0 until connected
  double window_start = 0;        // low-speed window
  int64_t window_bytes = 0;
  bool resent = false;            // already resent once after a stale connection
};

// One scheme://host:port.
struct Host {
  std::vector<Conn*> idle;  // most recent last
  std::deque<Op*> waiting;  // https: for a connection, while kMaxTlsOpening are opening
  int opening = 0;          // https connections connecting or handshaking
  int awaiting = 0;         // https connections whose tickets may still come (Conn::awaiting_ticket)
  std::deque<SSL_SESSION*> sessions;  // https: to resume, newest last
};

using internal::Pending;

std::string Errno(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

// OpenSSL's queued errors, oldest first, as one line ("" when none); clears
// the queue.
std::string TlsErrors() {
  std::string out;
  char buf[256];
  while (const unsigned long e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

bool IsIpLiteral(const std::string& host) {
  in6_addr a6;
  in_addr a4;
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

// What a read or write on a connection came to.
enum class Io { kData, kEof, kAgain, kFail };

// Everything the I/O thread touches; shared with the Transport object so it
// can be destroyed from inside a callback (see the curl transport).
struct State : internal::IoState {
  CurlOptions options;

  // I/O thread only.
  std::unordered_set<Op*> active;
  std::unordered_map<std::string, Host> hosts;  // by scheme://host:port
  size_t idle_count = 0;
  std::unordered_map<uint64_t, Conn*> conns;  // every open connection, by id
  uint64_t next_id = 0;
  struct Resolved {
    std::vector<Address> addrs;
    double expires = 0;
  };
  std::unordered_map<std::string, Resolved> resolved;  // by scheme://host:port
  std::unordered_set<std::string> answered;  // scheme://host:port that gave an HTTP reply
  std::unordered_set<std::string> warned_unverified;  // https origins named in the warning
  std::unordered_set<std::string> to_drain;  // hosts whose waiting requests may proceed
  double next_check = kNever;  // no attempt can time out before this
  // https: one context for every connection, made at the first https
  // request: the CA store is loaded into it once.
  SSL_CTX* tls = nullptr;
  bool tls_tried = false;
  std::string tls_error;  // why it could not be made

  // ---- IoState hooks ------------------------------------------------------

  void Start(Pending p) override { StartOp(std::move(p), WallSeconds()); }

  double Tick(double now) override {
    CheckTimeouts(now);
    Drain();
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
      if (c->session) SSL_SESSION_free(c->session);
      if (c->ssl) SSL_free(c->ssl);
      ::close(c->fd);
      delete c;
    }
    for (auto& [key, h] : hosts) {
      for (SSL_SESSION* s : h.sessions) SSL_SESSION_free(s);
    }
    if (tls) SSL_CTX_free(tls);
  }

  double ReadTimeout() const { return static_cast<double>(options.read_timeout_ms) * 1e-3; }
  double LowSpeedTime() const {
    return static_cast<double>(std::max(options.low_speed_time_s,
                                        (options.read_timeout_ms + 999) / 1000));
  }

  // ---- TLS ---------------------------------------------------------------

  // The context every https connection uses, made once: the CA store
  // (options.ca_bundle, else the system's default file and folder) read
  // here, not per connection, each CA parsed when a chain first asks for it
  // (ca_store.h); a client session cache that OnNewSession fills. Null if it
  // cannot be made (tls_error says why).
  SSL_CTX* TlsContext() {
    if (tls_tried) return tls;
    tls_tried = true;
    // OpenSSL writes with write(): a peer gone away must be EPIPE on this
    // thread, not a SIGPIPE that ends the process.
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    ClearTlsErrors();
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
      tls_error = "cannot create a TLS context: " + TlsErrors();
      return nullptr;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_ciphersuites(ctx, kTls13CipherSuites);
    // A server that closes without close_notify ends a body read until
    // close as EOF (as curl takes it); a declared length still must arrive
    // whole (ReplyReader).
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    // Whole socket reads, not one record header and body at a time.
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, size_t{64} << 10);
    if (options.verify_tls) {
      const bool loaded = options.ca_bundle.empty() ? UseSystemCaStore(ctx)
                                                    : UseCaFile(ctx, options.ca_bundle);
      if (!loaded) {
        tls_error = "error setting certificate file: " +
                    (options.ca_bundle.empty() ? std::string("the system CA store")
                                               : options.ca_bundle + " (ca_bundle)") +
                    ": " + TlsErrors();
        SSL_CTX_free(ctx);
        return nullptr;
      }
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    } else {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, &State::OnNewSession);
    SSL_CTX_set_app_data(ctx, this);
    tls = ctx;
    return tls;
  }

  // A session (a TLS 1.3 ticket, or a TLS 1.2 session) the server gave a
  // connection: kept for a later connection to the same host to resume.
  static int OnNewSession(SSL* ssl, SSL_SESSION* session) {
    auto* st = static_cast<State*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
    auto* c = static_cast<Conn*>(SSL_get_app_data(ssl));
    if (!st || !c || !SSL_SESSION_is_resumable(session)) return 0;
    // A copy: OpenSSL marks a connection's latest session not resumable
    // when the connection ends without a close_notify (a server closing an
    // idle connection, a reset), which would waste every last ticket.
    SSL_SESSION* copy = SSL_SESSION_dup(session);
    if (!copy) return 0;
    Host& h = st->hosts[c->key];
    st->TicketCame(c, h);
    auto& kept = h.sessions;
    kept.push_back(copy);
    if (kept.size() > kMaxSessions) {
      SSL_SESSION_free(kept.front());
      kept.pop_front();
    }
    return 0;  // the original stays OpenSSL's
  }

  // `c` got a ticket or its reply: no more tickets expected before a request.
  void TicketCame(Conn* c, Host& h) {
    if (c->awaiting_ticket) {
      c->awaiting_ticket = false;
      --h.awaiting;
    }
    if (!h.waiting.empty()) to_drain.insert(c->key);
  }

  // Whether a new https connection to `h` may start now (Attach, Drain).
  static bool CanOpen(Host& h) {
    if (h.opening >= kMaxTlsOpening) return false;
    if (HasSession(h)) return true;
    return h.opening + h.awaiting < kMaxFullHandshakes;
  }

  // Whether `h` has a session to resume (dropping those past use).
  static bool HasSession(Host& h) {
    const auto now = static_cast<long>(std::time(nullptr));
    while (!h.sessions.empty()) {
      SSL_SESSION* s = h.sessions.back();
      if (SSL_SESSION_is_resumable(s) &&
          SSL_SESSION_get_time(s) + SSL_SESSION_get_timeout(s) > now) {
        return true;
      }
      h.sessions.pop_back();
      SSL_SESSION_free(s);
    }
    return false;
  }

  // A session to resume on a new connection to `h` (the caller frees it),
  // or null. A TLS 1.3 ticket is handed out once (servers accept each
  // once); a TLS 1.2 session stays for others.
  static SSL_SESSION* TakeSession(Host& h) {
    if (!HasSession(h)) return nullptr;
    SSL_SESSION* s = h.sessions.back();
    if (SSL_SESSION_get_protocol_version(s) >= TLS1_3_VERSION) {
      h.sessions.pop_back();
    } else {
      SSL_SESSION_up_ref(s);
    }
    return s;
  }

  // The TCP connection of `c` is up: the TLS handshake starts.
  void StartTls(Conn* c) {
    Op* op = c->op;
    const Target& t = op->target;
    c->ssl = SSL_new(tls);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
      Fail(op, NetError::kOther, "cannot start TLS: " + TlsErrors());
      return;
    }
    SSL_set_app_data(c->ssl, c);
    SSL_set_connect_state(c->ssl);
    const bool ip = IsIpLiteral(t.host);
    // SNI names a host, never an address (RFC 6066).
    if (!ip) SSL_set_tlsext_host_name(c->ssl, t.host.c_str());
    if (options.verify_tls) {
      X509_VERIFY_PARAM* param = SSL_get0_param(c->ssl);
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (ip) {
        X509_VERIFY_PARAM_set1_ip_asc(param, t.host.c_str());
      } else {
        SSL_set1_host(c->ssl, t.host.c_str());
      }
    }
    if (c->session) {
      SSL_set_session(c->ssl, c->session);
      SSL_SESSION_free(c->session);
      c->session = nullptr;
    }
    c->phase = Conn::kHandshaking;
    Handshake(c);
  }

  void Handshake(Conn* c) {
    ClearTlsErrors();
    const int rc = SSL_connect(c->ssl);
    if (rc == 1) {
      c->tls_clean = true;
      Opened(c);
      if (SSL_version(c->ssl) >= TLS1_3_VERSION) {
        c->awaiting_ticket = true;
        ++hosts[c->key].awaiting;
      }
      Connected(c);
      return;
    }
    const int err = SSL_get_error(c->ssl, rc);
    if (err == SSL_ERROR_WANT_READ) {
      Watch(c, EPOLLIN);
      return;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
      Watch(c, EPOLLOUT);
      return;
    }
    Op* op = c->op;
    const Target& t = op->target;
    const bool first = answered.count(c->key) == 0;
    const long verify = SSL_get_verify_result(c->ssl);
    NetError kind;
    std::string why;
    if (options.verify_tls && verify != X509_V_OK) {
      // The wording curl uses (DescribeNetFailure, retry.h, reads it).
      kind = NetError::kTls;
      if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH) {
        why = "SSL: no alternative certificate subject name matches target host name '" + t.host +
              "'";
      } else {
        why = std::string("SSL certificate problem: ") + X509_verify_cert_error_string(verify);
      }
      ClearTlsErrors();
    } else if (err == SSL_ERROR_SSL) {
      // The server refused the handshake (no common protocol, an alert) or
      // is no TLS server: a TLS failure at first contact; later, a reset
      // connection, retried.
      kind = first ? NetError::kTls : NetError::kReset;
      why = "TLS handshake with " + c->key + " failed: " + TlsErrors();
    } else {
      // Cut by the network (reset, EOF): worth retrying even at first contact.
      const int e = errno;
      kind = NetError::kReset;
      why = "TLS handshake with " + c->key + " cut short: " +
            (err == SSL_ERROR_SYSCALL && e != 0 ? std::strerror(e) : "connection closed");
      ClearTlsErrors();
    }
    c->tls_clean = false;
    const bool first_contact = first && kind == NetError::kTls;
    // Requests waiting for a connection to the same host would fail the
    // same way: they fail now, without more handshakes.
    std::vector<Op*> same;
    if (first_contact) {
      Host& h = hosts[c->key];
      same.assign(h.waiting.begin(), h.waiting.end());
      h.waiting.clear();
      for (Op* w : same) w->waiting = false;
    }
    Fail(op, kind, why, first_contact);  // closes c
    for (Op* w : same) Fail(w, kind, why, true);
  }

  // `c` no longer counts as opening (connected, or closed).
  void Opened(Conn* c) {
    if (!c->opening) return;
    c->opening = false;
    --hosts[c->key].opening;
    to_drain.insert(c->key);
  }

  // Reads up to `len` bytes of `c` into `buf` (through TLS on https).
  // kAgain: nothing now, `c` watched for what it waits for.
  Io Read(Conn* c, void* buf, size_t len, size_t* got, std::string* why) {
    if (!c->ssl) {
      for (;;) {
        const ssize_t n = ::recv(c->fd, buf, len, 0);
        if (n > 0) {
          *got = static_cast<size_t>(n);
          return Io::kData;
        }
        if (n == 0) return Io::kEof;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::kAgain;
        *why = Errno("recv", errno);
        return Io::kFail;
      }
    }
    ClearTlsErrors();
    const int n = SSL_read(c->ssl, buf, static_cast<int>(std::min<size_t>(len, INT32_MAX)));
    if (n > 0) {
      *got = static_cast<size_t>(n);
      return Io::kData;
    }
    return TlsIoError(c, n, "recv", why);
  }

  Io Write(Conn* c, const void* buf, size_t len, size_t* put, std::string* why) {
    if (!c->ssl) {
      for (;;) {
        const ssize_t n = ::send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
          *put = static_cast<size_t>(n);
          return Io::kData;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          Watch(c, SendEvents(c));
          return Io::kAgain;
        }
        *why = Errno("send", n < 0 ? errno : EPIPE);
        return Io::kFail;
      }
    }
    ClearTlsErrors();
    const int n = SSL_write(c->ssl, buf, static_cast<int>(std::min<size_t>(len, INT32_MAX)));
    if (n > 0) {
      *put = static_cast<size_t>(n);
      return Io::kData;
    }
    return TlsIoError(c, n, "send", why);
  }

  Io TlsIoError(Conn* c, int rc, const char* what, std::string* why) {
    const int err = SSL_get_error(c->ssl, rc);
    const int e = errno;
    switch (err) {
      case SSL_ERROR_WANT_READ: Watch(c, EPOLLIN | EPOLLRDHUP); return Io::kAgain;
      case SSL_ERROR_WANT_WRITE: Watch(c, SendEvents(c)); return Io::kAgain;
      case SSL_ERROR_ZERO_RETURN: return Io::kEof;  // close_notify, or EOF (see TlsContext)
      case SSL_ERROR_SYSCALL:
        c->tls_clean = false;
        ClearTlsErrors();
        if (e == 0) return Io::kEof;
        *why = Errno(what, e);
        return Io::kFail;
      default:
        c->tls_clean = false;
        *why = std::string(what) + ": TLS error: " + TlsErrors();
        return Io::kFail;
    }
  }

  // ---- connections -------------------------------------------------------

  // What a connection waits for while it cannot send: room to write, and,
  // while a body goes out, an early reply (SendingWithReply).
  static uint32_t SendEvents(const Conn* c) {
    return c->phase == Conn::kSending && c->body ? EPOLLOUT | EPOLLIN | EPOLLRDHUP : EPOLLOUT;
  }

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
      auto& pool = hosts[c->key].idle;
      pool.erase(std::remove(pool.begin(), pool.end(), c), pool.end());
      --idle_count;
    }
    Opened(c);
    if (c->awaiting_ticket) TicketCame(c, hosts[c->key]);
    if (c->session) SSL_SESSION_free(c->session);
    conns.erase(c->id);
    if (c->ssl) {
      // A close_notify, when the connection is sound (never waiting for it).
      if (c->tls_clean) SSL_shutdown(c->ssl);
      SSL_free(c->ssl);
      ClearTlsErrors();
    }
    if (c->fd >= 0) ::close(c->fd);  // also takes it out of the epoll set
    delete c;
  }
  // The addresses of host:port, resolved at most every kResolveTtl seconds.
  // Blocking, on this thread: endpoints are addresses or a few names,
  // each resolved once a minute.
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
    const std::string& m = op->request.method;
    if (m != "GET" && m != "HEAD" && m != "PUT" && m != "POST" && m != "DELETE") {
      Finish(op, NetError::kOther, "method " + m + " is not supported");
      return;
    }
    if (op->target.tls) {
      if (!options.verify_tls) {
        const std::string origin = OriginOf(op->request.url);
        if (warned_unverified.insert(origin).second) {
          LogWarning("TLS certificate verification is OFF for " + origin +
                     " (verify_tls=false): any server can answer for it, and read or change "
                     "the data on the way");
        }
      }
      if (!TlsContext()) {
        op->response.first_contact = answered.count(op->target.key) == 0;
        Finish(op, NetError::kTls, tls_error);
        return;
      }
    }
    active.insert(op);
    next_check = std::min(next_check, op->deadline);
    Attach(op, now);
  }

  // Gives `op` a connection: an idle one to its host (unless `fresh`), or a
  // new one; over https, when kMaxTlsOpening are opening already, a place in
  // the host's queue (Drain).
  void Attach(Op* op, double now, bool fresh = false) {
    Host& h = hosts[op->target.key];
    if (!fresh && !h.idle.empty()) {
      Conn* c = h.idle.back();
      h.idle.pop_back();
      --idle_count;
      c->reused = true;
      c->op = op;
      op->conn = c;
      BeginSend(c);
      return;
    }
    if (op->target.tls && !CanOpen(h)) {
      op->waiting = true;
      h.waiting.push_back(op);
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
    if (op->target.tls) {
      c->opening = true;
      ++h.opening;
      c->session = TakeSession(h);
    }
    op->connect_deadline = now + static_cast<double>(options.connect_timeout_ms) * 1e-3;
    next_check = std::min(next_check, std::min(op->connect_deadline, op->deadline));
    if (!ConnectNext(c, &error)) {
      op->conn = nullptr;
      c->op = nullptr;
      CloseConn(c);
      Fail(op, NetError::kConnect, error);
    }
  }

  // Requests queued for a connection (Attach) take what freed up: idle
  // connections, then opening slots.
  void Drain() {
    if (to_drain.empty()) return;
    std::vector<std::string> keys(to_drain.begin(), to_drain.end());
    to_drain.clear();
    const double now = WallSeconds();
    for (const std::string& key : keys) {
      Host& h = hosts[key];
      while (!h.waiting.empty()) {
        Op* op = h.waiting.front();
        // A request resent after a stale connection takes a new one.
        const bool can = (!op->resent && !h.idle.empty()) || CanOpen(h);
        if (!can) break;
        h.waiting.pop_front();
        op->waiting = false;
        Attach(op, now, op->resent);
      }
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
    const size_t body_size = r.body ? r.body->size() : 0;
    if (r.body || r.method == "PUT" || r.method == "POST") {
      out += "Content-Length: " + std::to_string(body_size) + "\r\n";
    }
    out += "\r\n";
    c->out_off = 0;
    c->body = nullptr;
    c->body_off = 0;
    if (body_size > 0 && body_size <= kInlineBody) {
      out += *r.body;  // one send for head and body
    } else if (body_size > 0) {
      c->body = r.body.get();  // op->request holds it until the request ends
    }
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

  // Whether the whole request (head and body) has gone out.
  static bool AllSent(const Conn* c) {
    return c->out_off == c->out.size() && (!c->body || c->body_off == c->body->size());
  }

  void Send(Conn* c) {
    Op* op = c->op;
    while (!AllSent(c)) {
      const bool head = c->out_off < c->out.size();
      const char* from = head ? c->out.data() + c->out_off : c->body->data() + c->body_off;
      const size_t left = head ? c->out.size() - c->out_off : c->body->size() - c->body_off;
      size_t n = 0;
      std::string why;
      switch (Write(c, from, left, &n, &why)) {
        case Io::kData:
          (head ? c->out_off : c->body_off) += n;
          // Bytes going out are progress too: an upload that keeps sending
          // is not a stall.
          Activity(op, n, WallSeconds());
          continue;
        case Io::kAgain: return;
        case Io::kEof:
        case Io::kFail: Broken(c, why.empty() ? "send: connection closed" : why); return;
      }
    }
    c->phase = Conn::kReceiving;
    Watch(c, EPOLLIN | EPOLLRDHUP);
  }

  // A request with a body is being sent and the socket has something to
  // read: the server answered early (an error, before taking the whole
  // body). The reply is read; if it is whole the request completes with it
  // (and the connection, half sent, is closed); else sending goes on.
  void SendingWithReply(Conn* c, uint32_t events) {
    const uint64_t id = c->id;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      Receive(c);
      auto it = conns.find(id);
      if (it == conns.end() || it->second != c || c->op == nullptr || c->phase != Conn::kSending) {
        return;  // completed, failed or resent: `c` is gone or no longer this request's
      }
    }
    Send(c);
  }

  // The connection failed under its request: resend once on a new
  // connection if it was a reused one that had sent nothing back (the server
  // had closed it while idle), else fail the request.
  void Broken(Conn* c, std::string why) {  // by value: `why` may live in c
    Op* op = c->op;
    const bool stale = c->reused && !c->reader.got_bytes() && !op->resent;
    c->tls_clean = false;
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
      // An idle connection is readable when the server closed it or sent
      // something unasked: either way it is done. Over TLS it may also be a
      // record with no data (a session ticket): that one stays.
      if (c->ssl) {
        char byte;
        size_t got = 0;
        std::string why;
        if (Read(c, &byte, 1, &got, &why) == Io::kAgain) return;
        c->tls_clean = false;
      }
      CloseConn(c);
      return;
    }
    if (c->phase == Conn::kConnecting) {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == 0 && (events & EPOLLOUT) && !(events & EPOLLERR)) {
        if (c->op->target.tls) {
          StartTls(c);
        } else {
          Connected(c);
        }
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
    if (c->phase == Conn::kHandshaking) {
      Handshake(c);
      return;
    }
    if (c->phase == Conn::kSending) {
      if (c->body) {
        SendingWithReply(c, events);
      } else {
        Send(c);
      }
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
      ReplyReader::Status st = ReplyReader::kMore;
      size_t n = 0;
      std::string why;
      Io io;
      if (const ReplyReader::Window w = reader.BodyWindow(); w.size > 0) {
        // Straight into the body: no copy out of a receive buffer.
        io = Read(c, w.data, w.size, &n, &why);
        if (io == Io::kData) {
          Activity(op, n, now);
          st = reader.CommitBody(n);
        }
      } else {
        char buf[kReadChunk];
        io = Read(c, buf, sizeof(buf), &n, &why);
        if (io == Io::kData) {
          Activity(op, n, now);
          st = reader.Feed(buf, n);
        }
      }
      if (io == Io::kAgain) return;
      if (io == Io::kFail) {
        Broken(c, why);
        return;
      }
      if (io == Io::kEof) st = reader.Eof();
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
    if (c->awaiting_ticket) TicketCame(c, hosts[c->key]);
    // Bytes after the reply were not asked for: such a connection is not reused.
    if (c->reader.keep_alive() && c->reader.leftover() == 0 && AllSent(c) &&
        (!c->ssl || SSL_has_pending(c->ssl) == 0) &&
        idle_count < static_cast<size_t>(options.max_idle_connections)) {
      c->phase = Conn::kIdle;
      c->reused = false;
      c->out.clear();  // its capacity serves the next request
      c->body = nullptr;
      Host& h = hosts[c->key];
      h.idle.push_back(c);
      ++idle_count;
      if (!h.waiting.empty()) to_drain.insert(c->key);
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
    if (op->waiting) {
      auto& q = hosts[op->target.key].waiting;
      q.erase(std::remove(q.begin(), q.end(), op), q.end());
      op->waiting = false;
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

// http:// and https:// to the epoll transport, except a scheme whose
// requests go through a proxy (libcurl honours those); anything else (and
// the proxied) to curl, made when first needed.
class RoutingTransport final : public Transport {
 public:
  RoutingTransport(const CurlOptions& options, bool http_to_curl, bool https_to_curl)
      : options_(options), http_to_curl_(http_to_curl), https_to_curl_(https_to_curl) {}

  ~RoutingTransport() override { Shutdown(); }

  void Send(Request request, std::chrono::nanoseconds delay, Callback done) override {
    const std::string scheme = ToLower(std::string_view(request.url).substr(0, 8));
    const bool http = scheme.rfind("http://", 0) == 0, https = scheme == "https://";
    const bool epoll = (http && !http_to_curl_) || (https && !https_to_curl_);
    Transport* t = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!shut_) {
        auto& slot = epoll ? epoll_ : curl_;
        if (!slot) slot = epoll ? NewEpollTransport(options_) : NewCurlTransport(options_);
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
  const bool https_to_curl_;
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
  // libcurl reads http_proxy (lower-case only, for http), https_proxy /
  // HTTPS_PROXY, and all_proxy / ALL_PROXY; this transport does not speak
  // to proxies, so a proxied scheme goes to curl.
  const bool all = EnvSet("all_proxy") || EnvSet("ALL_PROXY");
  return std::make_unique<RoutingTransport>(
      options, all || EnvSet("http_proxy"), all || EnvSet("https_proxy") || EnvSet("HTTPS_PROXY"));
}

}  // namespace stoker::storage::http
