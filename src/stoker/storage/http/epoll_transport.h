// A plain-HTTP/1.1 Transport of stoker's own, on one epoll thread, for
// http:// endpoints (MinIO, Ceph, moto, S3-compatible stores inside a
// cluster); https:// goes to the libcurl transport.
//
// Why not libcurl for everything: on the S3 hot path (a GET of a ~117 KB
// object) libcurl's per-transfer work (its easy/multi state machine, header
// building and parsing, a poll() liveness check on each reused connection,
// socket-callback epoll changes) and the copy of every body byte out of its
// receive buffer cost more than the kernel's own receive. This transport
// receives a body straight into its final (recycled) buffer: on loopback it
// takes about half the CPU per object (bench: s3_read_bench).
//
// It keeps what the curl transport does: hundreds of requests in flight,
// keep-alive connections reused per host, a request resent once on a new
// connection when a reused one turns out closed before any reply byte, the
// connect, read (stall), low-speed and total timeouts of CurlOptions, and
// Content-Length, chunked and read-until-close bodies. It does not do
// proxies: when http_proxy or all_proxy is set, every request goes to curl,
// which honours them (as does STOKER_HTTP_TRANSPORT=curl, for comparison).
#pragma once

#include <memory>

#include "stoker/storage/http/curl_transport.h"
#include "stoker/storage/http/http.h"

namespace stoker::storage::http {

// The epoll transport alone: http:// only (anything else fails, kOther).
std::unique_ptr<Transport> NewEpollTransport(const CurlOptions& options = {});

// What the S3 and HTTP backends use: http:// on the epoll transport,
// https:// (and everything, when a proxy is configured or
// STOKER_HTTP_TRANSPORT=curl) on libcurl's, started when first needed.
std::unique_ptr<Transport> NewTransport(const CurlOptions& options = {});

}  // namespace stoker::storage::http
