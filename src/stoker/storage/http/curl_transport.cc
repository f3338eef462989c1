#include "stoker/storage/http/curl_transport.h"

#include <curl/curl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "stoker/base/cpu_time.h"
#include "stoker/base/logging.h"
#include "stoker/storage/http/io_thread.h"
#include "stoker/storage/http/retry.h"
#include "stoker/storage/http/url.h"

namespace stoker::storage::http {
namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// `first_contact`: no request to this origin got an HTTP reply yet (and the
// handshake was not cut by a reset or EOF). A TLS handshake that fails then
// (a plain-HTTP server on an https:// URL, no common protocol) is a TLS
// failure; otherwise it is a reset connection, retried.
NetError Classify(CURLcode code, bool first_contact) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT: return NetError::kTimeout;
    case CURLE_COULDNT_RESOLVE_HOST: return NetError::kResolve;
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT: return NetError::kConnect;
    case CURLE_SSL_CONNECT_ERROR: return first_contact ? NetError::kTls : NetError::kReset;
    case CURLE_PEER_FAILED_VERIFICATION:  // also CURLE_SSL_CACERT
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_USE_SSL_FAILED: return NetError::kTls;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY: return NetError::kReset;
    default: return NetError::kOther;
  }
}

// Caps what a Content-Length may make us reserve up front; a larger body
// still arrives, it just grows the buffer as it comes.
constexpr size_t kMaxReserve = size_t{256} << 20;

using internal::Pending;

// One transfer on the multi handle.
struct Active {
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  Transport::Callback done;
  Response response;
  std::shared_ptr<storage::BufferRecycler> body_buffers;  // may be null
  std::stop_token stop;             // the request's
  std::shared_ptr<void> stop_wake;  // see Pending
  double start = 0;
  // When bytes last arrived (or the connection became ready): the read
  // timeout counts from here. Zero until connected: connecting has its own
  // timeout.
  double last_activity = 0;
  bool custom_method = false;
  // The request body (PUT, POST) and how much of it curl has taken.
  std::shared_ptr<const std::string> upload;
  size_t upload_off = 0;
  std::string origin;  // scheme://host:port of the URL
  char error[CURL_ERROR_SIZE] = {};
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* a = static_cast<Active*>(user);
  const size_t bytes = size * n;
  a->last_activity = WallSeconds();
  // resize (default-initialised: no zero fill) + memcpy, not insert: with
  // a custom allocator libstdc++'s insert copies in a 16-byte loop, twice
  // the cost of memcpy, and this copies every body byte.
  auto& body = a->response.body;
  const size_t old = body.size();
  body.resize(old + bytes);
  std::memcpy(body.data() + old, data, bytes);
  return bytes;
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* a = static_cast<Active*>(user);
  const size_t bytes = size * n;
  a->last_activity = WallSeconds();
  std::string_view line(data, bytes);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.rfind("HTTP/", 0) == 0) {
    // A new status line (after 100 Continue): forget the previous headers.
    a->response.headers.clear();
    return bytes;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return bytes;
  std::string name = ToLower(Trim(line.substr(0, colon)));
  std::string value(Trim(line.substr(colon + 1)));
  if (name == "content-length") {
    if (const std::optional<uint64_t> declared = ParseContentLength(value)) {
      const size_t len = static_cast<size_t>(std::min<uint64_t>(*declared, kMaxReserve));
      auto& body = a->response.body;
      try {
        if (a->body_buffers && body.empty() && body.capacity() < len) {
          body = a->body_buffers->Take(len);
        } else {
          body.reserve(len);
        }
      } catch (const std::bad_alloc&) {
        return 0;  // curl fails the transfer (CURLE_WRITE_ERROR)
      }
    }
  }
  a->response.headers.emplace_back(std::move(name), std::move(value));
  return bytes;
}

// CURLOPT_READFUNCTION: the next piece of the request body. Taking it is
// progress, as receiving is: an upload that keeps going is not a stall.
size_t OnUpload(char* buffer, size_t size, size_t n, void* user) {
  auto* a = static_cast<Active*>(user);
  a->last_activity = WallSeconds();
  const size_t left = a->upload->size() - a->upload_off;
  const size_t take = std::min(left, size * n);
  std::memcpy(buffer, a->upload->data() + a->upload_off, take);
  a->upload_off += take;
  return take;
}

// CURLOPT_SEEKFUNCTION: curl rewinds the body to send it again (a reused
// connection that turned out closed).
int OnSeek(void* user, curl_off_t offset, int origin) {
  auto* a = static_cast<Active*>(user);
  if (origin != SEEK_SET || offset < 0 || static_cast<size_t>(offset) > a->upload->size()) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  a->upload_off = static_cast<size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

// CURLOPT_PREREQFUNCTION: the connection is up (new or reused) and the
// request is about to go out; from now on silence counts as a stall.
int OnConnected(void* user, char*, char*, int, int) {
  static_cast<Active*>(user)->last_activity = WallSeconds();
  return CURL_PREREQFUNC_OK;
}

// Everything the I/O thread touches. Shared between the thread and the
// Transport object, so the Transport can be destroyed on the I/O thread
// itself (from inside a callback) without joining itself. Readiness comes
// from epoll (IoState's) through curl's socket API: each wakeup touches only
// the connections that have data, not every transfer (which is what
// curl_multi_perform does, one poll() per transfer per call).
struct State : internal::IoState {
  CurlOptions options;
  CURLM* multi = nullptr;
  // TLS sessions shared by every handle of this transport: a new connection
  // to a server seen before resumes a session (no certificate chain to
  // verify, no full key exchange). Used on the I/O thread only: no locks.
  CURLSH* share = nullptr;
  // The CA file every connection trusts (empty: curl's default). Set
  // without a CA folder, so curl parses it once and keeps the store in the
  // multi handle (its CA cache) instead of once per connection.
  std::string ca_file;
  bool drop_ca_path = false;

  // I/O thread only.
  std::vector<CURL*> idle_easy;
  std::unordered_set<Active*> active;  // on the multi handle
  double curl_deadline = -1;           // when curl wants a timeout call; -1: never
  // No connected transfer can reach its read timeout before this; +inf when
  // none is connected. Activity only moves deadlines later and a transfer
  // that connects now has the latest one, so it only needs recomputing when
  // it falls due.
  double next_stall_check = kNever;
  // Origins that gave some request an HTTP reply (Response::first_contact),
  // and those already named in the verify_tls = false warning.
  std::unordered_set<std::string> answered;
  std::unordered_set<std::string> warned_unverified;

  ~State() {
    for (CURL* e : idle_easy) curl_easy_cleanup(e);
    if (multi) curl_multi_cleanup(multi);
    if (share) curl_share_cleanup(share);
  }

  // CURLMOPT_SOCKETFUNCTION: curl says which events it wants on socket `s`.
  static int OnSocket(CURL*, curl_socket_t s, int what, void* user, void*) {
    auto* st = static_cast<State*>(user);
    if (what == CURL_POLL_REMOVE) {
      epoll_ctl(st->epoll_fd, EPOLL_CTL_DEL, s, nullptr);  // may already be closed: fine
      return 0;
    }
    epoll_event ev{};
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    ev.data.fd = s;
    if (epoll_ctl(st->epoll_fd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT) {
      epoll_ctl(st->epoll_fd, EPOLL_CTL_ADD, s, &ev);
    }
    return 0;
  }

  // CURLMOPT_TIMERFUNCTION: curl wants a timeout call in `ms` (-1: never).
  static int OnTimer(CURLM*, long ms, void* user) {
    auto* st = static_cast<State*>(user);
    st->curl_deadline = ms < 0 ? -1 : WallSeconds() + static_cast<double>(ms) * 1e-3;
    return 0;
  }

  void ReapCompleted() {
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg == CURLMSG_DONE) Done(msg->easy_handle, msg->data.result);
    }
  }

  void StartTransfer(Pending p) {
    auto* a = new Active;
    a->done = std::move(p.done);
    a->start = WallSeconds();
    a->body_buffers = std::move(p.request.body_buffers);
    a->stop = p.request.stop;
    a->stop_wake = std::move(p.stop_wake);
    CURL* e;
    if (!idle_easy.empty()) {
      // A reused handle keeps the options that never change (set below when
      // it was made); only the per-request ones are set again.
      e = idle_easy.back();
      idle_easy.pop_back();
    } else {
      e = NewEasy();
    }
    if (!e) {
      Fail(a, NetError::kOther, "cannot create a curl handle");
      return;
    }
    a->easy = e;
    const Request& r = p.request;
    a->origin = OriginOf(r.url);
    if (!options.verify_tls && a->origin.rfind("https://", 0) == 0 &&
        warned_unverified.insert(a->origin).second) {
      LogWarning("TLS certificate verification is OFF for " + a->origin +
                 " (verify_tls=false): any server can answer for it, and read or change "
                 "the data on the way");
    }
    for (const auto& [k, v] : r.headers) {
      std::string line = k + ": " + v;
      if (v.empty()) line = k + ";";  // curl's way to send an empty header
      a->headers = curl_slist_append(a->headers, line.c_str());
    }
    // No "Expect: 100-continue" round trip.
    a->headers = curl_slist_append(a->headers, "Expect:");
    curl_easy_setopt(e, CURLOPT_URL, r.url.c_str());
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, a->headers);
    if (r.method == "HEAD") {
      curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (r.body || r.method == "PUT" || r.method == "POST") {
      // An upload of a known length (Content-Length, never chunked), read
      // from the shared body; the method named as asked. The handle is not
      // reused (custom_method), so no upload option outlives the request.
      a->upload = r.body ? r.body : std::make_shared<const std::string>();
      curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(a->upload->size()));
      curl_easy_setopt(e, CURLOPT_READFUNCTION, &OnUpload);
      curl_easy_setopt(e, CURLOPT_READDATA, a);
      curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, &OnSeek);
      curl_easy_setopt(e, CURLOPT_SEEKDATA, a);
      if (r.method != "PUT") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method.c_str());
      a->custom_method = true;
    } else {
      curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);  // also clears NOBODY
      if (r.method != "GET") {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method.c_str());
        a->custom_method = true;
      }
    }
    curl_easy_setopt(e, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, a->error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, a);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, a);
    long timeout_ms = options.total_timeout_ms;
    if (r.timeout.count() > 0) {
      const long own = static_cast<long>(std::max<int64_t>(1, r.timeout.count()));
      timeout_ms = timeout_ms > 0 ? std::min(timeout_ms, own) : own;
    }
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (CURLMcode mc = curl_multi_add_handle(multi, e); mc != CURLM_OK) {
      Fail(a, NetError::kOther, curl_multi_strerror(mc));
      return;
    }
    active.insert(a);
  }

  // A handle with the options every request shares.
  CURL* NewEasy() {
    CURL* e = curl_easy_init();
    if (!e) return nullptr;
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);  // S3 keys are literal: keep "./" and "//"
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);  // a redirect would break the signature
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 64L * 1024);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, options.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, options.low_speed_bytes_per_s);
    // Waiting for the first byte is "low speed" too: never let this check
    // cut an attempt before the read timeout would.
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME,
                     std::max(options.low_speed_time_s, (options.read_timeout_ms + 999) / 1000));
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, &OnConnected);
    curl_easy_setopt(e, CURLOPT_TLS13_CIPHERS, kTls13CipherSuites);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, options.verify_tls ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, options.verify_tls ? 2L : 0L);
    if (!ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, ca_file.c_str());
    if (drop_ca_path) curl_easy_setopt(e, CURLOPT_CAPATH, nullptr);
    if (share) curl_easy_setopt(e, CURLOPT_SHARE, share);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, OnHeader);
    return e;
  }

  // Completes `a` without it ever being on the multi handle.
  void Fail(Active* a, NetError error, const std::string& message) {
    a->response.error = error;
    a->response.error_message = message;
    Complete(a);
  }

  void Done(CURL* e, CURLcode code) {
    Active* a = nullptr;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, reinterpret_cast<char**>(&a));
    curl_multi_remove_handle(multi, e);
    active.erase(a);
    if (code == CURLE_OK) {
      long status = 0;
      curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
      a->response.status = static_cast<int>(status);
      answered.insert(a->origin);
    } else {
      a->response.error_message = a->error[0] ? std::string(a->error) : curl_easy_strerror(code);
      const std::string& m = a->response.error_message;
      // A handshake cut by the network (reset, EOF) is worth retrying even
      // at first contact; one the server refused is not.
      const bool cut = m.find("reset") != std::string::npos ||
                       m.find("SSL_ERROR_SYSCALL") != std::string::npos ||
                       m.find("unexpected eof") != std::string::npos;
      const bool first = answered.count(a->origin) == 0;
      a->response.error = Classify(code, first && !cut);
      a->response.first_contact =
          first && (a->response.error == NetError::kTls || a->response.error == NetError::kResolve);
      a->response.body.clear();
    }
    Complete(a);
  }

  void Complete(Active* a) {
    a->response.seconds = WallSeconds() - a->start;
    if (a->headers) curl_slist_free_all(a->headers);
    if (a->easy) {
      // Keep handles for reuse; their buffers stay allocated. A handle that
      // ran a custom method is not reused (it would keep it).
      curl_easy_setopt(a->easy, CURLOPT_HTTPHEADER, nullptr);
      curl_easy_setopt(a->easy, CURLOPT_ERRORBUFFER, nullptr);
      if (idle_easy.size() < 512 && !a->custom_method) {
        idle_easy.push_back(a->easy);
      } else {
        curl_easy_cleanup(a->easy);
      }
    }
    auto done = std::move(a->done);
    Response response = std::move(a->response);
    delete a;
    done(std::move(response));
  }

  // Aborts connected transfers that received nothing for the read timeout.
  // Runs when the earliest such deadline falls due, not on every wakeup.
  void AbortStalled(double now) {
    if (options.read_timeout_ms <= 0) return;
    if (next_stall_check == kNever) {
      // Transfers connected since the last scan (their deadlines are the
      // latest there are): find the earliest.
      for (Active* a : active) {
        if (a->last_activity > 0) next_stall_check = std::min(next_stall_check, a->last_activity + ReadTimeout());
      }
    }
    if (now < next_stall_check) return;
    next_stall_check = kNever;
    std::vector<Active*> stalled;
    for (Active* a : active) {
      if (a->last_activity <= 0) continue;
      const double due = a->last_activity + ReadTimeout();
      if (due <= now) {
        stalled.push_back(a);
      } else {
        next_stall_check = std::min(next_stall_check, due);
      }
    }
    for (Active* a : stalled) {
      // Removing a transfer mid-reply makes curl close its connection: the
      // late bytes of a stalled reply can never be read as the next one's.
      curl_multi_remove_handle(multi, a->easy);
      active.erase(a);
      const double silent = now - a->last_activity;
      a->response = Response{};
      a->response.error = NetError::kTimeout;
      char msg[160];
      std::snprintf(msg, sizeof(msg), "no data from the server for %.1f s (read timeout %.1f s)",
                    silent, ReadTimeout());
      a->response.error_message = msg;
      Complete(a);
    }
  }

  double ReadTimeout() const { return static_cast<double>(options.read_timeout_ms) * 1e-3; }

  // ---- IoState hooks ------------------------------------------------------

  void Start(Pending p) override { StartTransfer(std::move(p)); }

  double Tick(double now) override {
    if (curl_deadline >= 0 && curl_deadline <= now) {
      curl_deadline = -1;
      int running = 0;
      curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    ReapCompleted();
    AbortStalled(WallSeconds());
    double next = next_stall_check;
    if (curl_deadline >= 0) next = std::min(next, curl_deadline);
    return next;
  }

  void OnEvent(const epoll_event& ev) override {
    const uint32_t e = ev.events;
    const int mask = (e & EPOLLIN ? CURL_CSELECT_IN : 0) | (e & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                     (e & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
    int running = 0;
    curl_multi_socket_action(multi, ev.data.fd, mask, &running);
    ReapCompleted();
  }

  void AbortStopped() override {
    std::vector<Active*> stopped;
    for (Active* a : active) {
      if (a->stop.stop_requested()) stopped.push_back(a);
    }
    for (Active* a : stopped) {
      // Removed mid-reply, the transfer's connection is closed (as for a
      // stall); the body it was receiving into goes back.
      curl_multi_remove_handle(multi, a->easy);
      active.erase(a);
      if (a->body_buffers && a->response.body.capacity() > 0) {
        a->body_buffers->Put(std::move(a->response.body));
      }
      a->response = Response{};
      a->response.error = NetError::kCancelled;
      a->response.error_message = internal::kStopped;
      Complete(a);
    }
  }

  void CancelStarted() override {
    std::vector<Active*> left(active.begin(), active.end());
    active.clear();
    for (Active* a : left) {
      curl_multi_remove_handle(multi, a->easy);
      a->response = Response{};
      a->response.error = NetError::kCancelled;
      a->response.error_message = "transport shut down";
      Complete(a);
    }
  }
};

}  // namespace

CurlOptions CurlOptionsFor(const IoOptions& io) {
  CurlOptions c;
  const auto ms = [](double s) { return static_cast<long>(std::llround(std::max(0.0, s) * 1000.0)); };
  // curl reads 0 as its built-in 300 s connect timeout; keep "0: no limit"
  // close to that meaning with a long one.
  c.connect_timeout_ms = io.connect_timeout_s > 0 ? std::max(1L, ms(io.connect_timeout_s)) : 300000;
  c.read_timeout_ms = io.read_timeout_s > 0 ? std::max(1L, ms(io.read_timeout_s)) : 0;
  c.low_speed_bytes_per_s =
      io.min_rate_bytes_per_s > 0 ? std::max(1L, std::lround(io.min_rate_bytes_per_s)) : 0;
  c.low_speed_time_s = std::max(1L, static_cast<long>(std::ceil(io.min_rate_window_s)));
  c.ca_bundle = io.ca_bundle;
  c.verify_tls = io.verify_tls;
  return c;
}

std::unique_ptr<Transport> NewCurlTransport(const CurlOptions& options) {
  GlobalInit();
  auto state = std::make_shared<State>();
  state->options = options;
  state->multi = curl_multi_init();
  curl_multi_setopt(state->multi, CURLMOPT_MAXCONNECTS, options.max_idle_connections);
  curl_multi_setopt(state->multi, CURLMOPT_SOCKETFUNCTION, &State::OnSocket);
  curl_multi_setopt(state->multi, CURLMOPT_SOCKETDATA, state.get());
  curl_multi_setopt(state->multi, CURLMOPT_TIMERFUNCTION, &State::OnTimer);
  curl_multi_setopt(state->multi, CURLMOPT_TIMERDATA, state.get());
  // STOKER_CURL_TLS_REUSE=0: each connection sets TLS up from scratch, as
  // libcurl does by default (for comparison: bench/https_bench.py).
  const char* reuse = std::getenv("STOKER_CURL_TLS_REUSE");
  const bool tls_reuse = !(reuse && std::string_view(reuse) == "0");
  if (tls_reuse) state->share = curl_share_init();
  if (state->share) curl_share_setopt(state->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  // curl caches a CA store (CURLOPT_CA_CACHE_TIMEOUT) only when it comes
  // from a CA file alone; Debian's libcurl also names a CA folder by
  // default, which turns the cache off and makes every new connection parse
  // the whole system bundle again. So: the file alone, when there is one.
  state->ca_file = options.ca_bundle;
  if (tls_reuse && !state->ca_file.empty()) {
    state->drop_ca_path = true;
  } else if (tls_reuse) {
    if (CURL* probe = curl_easy_init()) {
      char* default_file = nullptr;
      curl_easy_getinfo(probe, CURLINFO_CAINFO, &default_file);
      if (default_file && ::access(default_file, R_OK) == 0) state->drop_ca_path = true;
      curl_easy_cleanup(probe);
    }
  }
  return std::make_unique<internal::ThreadedTransport<State>>(std::move(state));
}

}  // namespace stoker::storage::http
