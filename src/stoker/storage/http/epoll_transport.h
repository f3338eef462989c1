// An HTTP/1.1 Transport of stoker's own, on one epoll thread, for http://
// and https:// endpoints (MinIO, Ceph, moto, S3-compatible stores inside a
// cluster, AWS).
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
// Content-Length, chunked and read-until-close bodies. Request bodies (PUT,
// POST) go out with a Content-Length, from the request's shared buffer;
// bytes going out count as progress for the read and low-speed timeouts,
// and a reply that comes while the body is still going out (a server
// refusing the upload) is read and is the answer.
//
// https:// is TLS through OpenSSL on the same loop: one SSL_CTX per
// transport with the CA store (CurlOptions::ca_bundle, else the system's)
// read once, each CA parsed when a chain asks for it (ca_store.h); every session ticket a server sends kept per host and each
// handed to one new connection to resume; at most 8 connections opening per
// host, at most 2 of them without a session to resume (a new connection
// rather waits for the tickets of those under way); the connect timeout
// covering TCP and the handshake; certificate failures as NetError::kTls in
// curl's words (docs/storage.md, "Transports").
//
// It does not do proxies: a scheme whose proxy variable is set goes to curl,
// which honours them (as does everything with STOKER_HTTP_TRANSPORT=curl,
// for comparison).
#pragma once

#include <memory>

#include "stoker/storage/http/curl_transport.h"
#include "stoker/storage/http/http.h"

namespace stoker::storage::http {

// The epoll transport alone: http:// and https:// (anything else fails, kOther).
std::unique_ptr<Transport> NewEpollTransport(const CurlOptions& options = {});

// What the S3 and HTTP backends use: http:// and https:// on the epoll
// transport; a scheme with a proxy configured (http_proxy; https_proxy or
// HTTPS_PROXY; all_proxy or ALL_PROXY for both), and everything with
// STOKER_HTTP_TRANSPORT=curl, on libcurl's, started when first needed.
std::unique_ptr<Transport> NewTransport(const CurlOptions& options = {});

}  // namespace stoker::storage::http
