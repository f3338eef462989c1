// libcurl's multi interface (socket API, epoll) on one I/O thread: the
// Transport for proxied schemes and STOKER_HTTP_TRANSPORT=curl
// (epoll_transport.h); its CurlOptions configure both transports.
// Hundreds of requests in flight on that thread, connections kept alive and
// reused across requests, delayed sends (retry backoff) held in a timer heap.
#pragma once

#include <memory>

#include "stoker/options.h"
#include "stoker/storage/http/http.h"

namespace stoker::storage::http {

struct CurlOptions {
  // Give up connecting after this long.
  long connect_timeout_ms = 10000;
  // Abort an attempt that, once connected, receives nothing for this long:
  // no first byte of the reply, or a pause inside its body (a stalled
  // server). Progress of any size restarts the clock, so a slow reply that
  // keeps coming is never cut. 0: no limit. Reported as NetError::kTimeout.
  long read_timeout_ms = 5000;
  // Abort a transfer that moves fewer than `low_speed_bytes_per_s` for
  // `low_speed_time_s` seconds (a trickle that keeps the read timeout at
  // bay); 0: no minimum (IoOptions::min_rate_bytes_per_s). The window is
  // never shorter than the read timeout. Reported as NetError::kTimeout.
  long low_speed_bytes_per_s = 0;
  long low_speed_time_s = 15;
  // Hard cap on one attempt, connect to last byte; 0: none. A request's own
  // Request::timeout (its remaining deadline) also applies; the shorter wins.
  long total_timeout_ms = 0;
  // Idle connections kept for reuse.
  long max_idle_connections = 512;
  // Verify TLS peers. When off, the first request to each https:// origin
  // logs a warning naming it.
  bool verify_tls = true;
  // A PEM file of trusted CAs instead of the system store; empty: the system
  // store. Loaded once per transport and shared by every connection.
  std::string ca_bundle;
};

// The transport options for a Loader's IoOptions.
CurlOptions CurlOptionsFor(const IoOptions& io);

// Starts the I/O thread. Responses are delivered on it.
std::unique_ptr<Transport> NewCurlTransport(const CurlOptions& options = {});

}  // namespace stoker::storage::http
