// The production Transport: libcurl's multi interface (socket API, epoll) on one I/O thread.
// Hundreds of requests in flight on that thread, connections kept alive and
// reused across requests, delayed sends (retry backoff) held in a timer heap.
#pragma once

#include <memory>

#include "stoker/storage/http/http.h"

namespace stoker::storage::http {

struct CurlOptions {
  // Give up connecting after this long.
  long connect_timeout_ms = 10000;
  // Abort a transfer that moves fewer than `low_speed_bytes_per_s` for
  // `low_speed_time_s` seconds: a stalled reply cannot hang the loader.
  long low_speed_bytes_per_s = 1024;
  long low_speed_time_s = 15;
  // Hard cap on one attempt, connect to last byte; 0: none.
  long total_timeout_ms = 300000;
  // Idle connections kept for reuse.
  long max_idle_connections = 512;
  // Verify TLS peers (leave on outside tests).
  bool verify_tls = true;
};

// Starts the I/O thread. Responses are delivered on it.
std::unique_ptr<Transport> NewCurlTransport(const CurlOptions& options = {});

}  // namespace stoker::storage::http
