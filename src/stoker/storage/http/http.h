// HTTP behind an interface: the S3 and plain-HTTP backends talk to a
// Transport; production uses NewTransport (epoll_transport.h: its own
// HTTP/1.1 client with OpenSSL for http:// and https://, libcurl's multi
// interface for proxied schemes), unit tests a canned-response
// MockTransport (mock_transport.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stoker/storage/buffer_recycler.h"

namespace stoker::storage::http {

// The TLS 1.3 suites both transports offer, in order: AES-128-GCM first (10
// AES rounds to AES-256's 14: less CPU per byte at both ends, the same
// AEAD), then AES-256-GCM and ChaCha20-Poly1305, so a server that follows
// the client's preference (OpenSSL's default, MinIO, Ceph) uses it. TLS
// 1.2 keeps OpenSSL's defaults.
inline constexpr const char* kTls13CipherSuites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Request {
  // GET or HEAD; PUT, POST or DELETE (writes: S3 uploads) with `body`.
  std::string method = "GET";
  // Absolute URL, already percent-encoded: sent exactly as given (no dot
  // segment removal: S3 keys are literal).
  std::string url;
  // Sent as given, in order. May hold an Authorization header: a Transport
  // never logs or reports header values.
  Headers headers;
  // The request body, sent with a Content-Length (the transport adds the
  // header; a PUT or POST without a body sends "Content-Length: 0"). Shared,
  // not copied: each attempt of a retried request sends the same bytes.
  // Null for GET, HEAD and DELETE.
  std::shared_ptr<const std::string> body;
  // This attempt's time limit, connect to last byte (the request's remaining
  // deadline); zero: only the transport's own timeouts apply.
  std::chrono::milliseconds timeout{0};
  // Optional: where the reply's body buffer comes from once its
  // Content-Length is known (recycled buffers: steady reading allocates
  // nothing). Without it, or without a Content-Length, the body grows.
  std::shared_ptr<storage::BufferRecycler> body_buffers;
  // Once requested, the request completes with NetError::kCancelled (on the
  // transport's thread, never inside request_stop()): taken off the wire if
  // started (its connection closed), its body buffer back to body_buffers.
  std::stop_token stop;
};

// Why no HTTP status came back. Every kind except kTls, kOther and
// kCancelled is worth retrying: the request may succeed on a fresh
// connection.
enum class NetError {
  kNone = 0,
  kTimeout,    // connect, read (a stall), low-speed or total timeout
  kConnect,    // could not connect
  kReset,      // connection reset or closed early, body cut short
  kOther,      // bad URL, out of memory: retrying won't help
  kCancelled,  // the transport shut down, or the request's stop was requested
  kResolve,    // the host name did not resolve
  kTls,        // TLS handshake or certificate verification failed (unknown
               // CA, expired, wrong host name, unreadable CA bundle)
};

const char* NetErrorName(NetError e);

// A Content-Length value: decimal digits only, at most 2^50; nullopt if not.
std::optional<uint64_t> ParseContentLength(std::string_view value);

struct Response {
  NetError error = NetError::kNone;
  std::string error_message;  // set when error != kNone; never holds header values
  int status = 0;             // HTTP status when error == kNone
  Headers headers;            // names lower-cased, values trimmed
  BufferRecycler::Bytes body;
  double seconds = 0;         // from the first byte sent to the last received
  // With a kResolve or kTls error: no earlier request to the same origin
  // (scheme, host, port) got an HTTP reply through this transport, so the
  // endpoint (its name, certificate or CA) is misconfigured rather than one
  // request unlucky (IsFirstContactFailure, retry.h).
  bool first_contact = false;

  // The first header named `name` (lower-case), or nullptr.
  const std::string* Header(std::string_view name) const;
  std::string_view BodyText() const {
    return {reinterpret_cast<const char*>(body.data()), body.size()};
  }
};

class Transport {
 public:
  virtual ~Transport() = default;

  using Callback = std::function<void(Response)>;

  // Sends `request` once `delay` has passed (zero: at once) and calls `done`
  // exactly once with the outcome, on the transport's own thread (or, for a
  // mock, whichever thread it documents). Returns at once; safe to call from
  // any thread, including from inside a `done` callback. A Transport destroyed
  // with requests outstanding completes them with NetError::kCancelled.
  virtual void Send(Request request, std::chrono::nanoseconds delay, Callback done) = 0;

  // Completes every outstanding request with NetError::kCancelled and stops
  // the transport: later Sends complete at once, cancelled. Returns once the
  // callbacks have run, unless called from the transport's own thread (then
  // they run as soon as the current callback returns). Idempotent.
  virtual void Shutdown() {}
};

}  // namespace stoker::storage::http
