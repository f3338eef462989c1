// When and how long to wait before trying a request again.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "stoker/options.h"
#include "stoker/status.h"
#include "stoker/storage/http/http.h"

namespace stoker::storage::http {

struct RetryPolicy {
  // Attempts in all, the first included; 1 disables retries, 0 sets no cap
  // (then only `deadline` ends the retries).
  int max_attempts = 10;
  // A request gives up this long after its first attempt began, retries and
  // backoff included: each attempt is cut short at it, and a backoff that
  // would cross it is shortened so a last attempt fits. Zero: no deadline.
  std::chrono::nanoseconds deadline{0};
  // Backoff before retry n (1-based) is uniform in [0, min(max, base * 2^(n-1))]:
  // "full jitter", which spreads clients that failed together.
  std::chrono::milliseconds base_backoff{50};
  std::chrono::milliseconds max_backoff{5000};
};

// The policy for a Loader's IoOptions: io.max_attempts, else
// `configured_max_attempts` (AWS_MAX_ATTEMPTS or the profile's; 0: none),
// else no cap; the deadline is io.io_timeout_s.
RetryPolicy RetryPolicyFor(const IoOptions& io, int configured_max_attempts);

// Full-jitter backoff before retry number `retry` (1 for the first retry),
// from a uniformly distributed 64-bit `random`.
std::chrono::nanoseconds Backoff(const RetryPolicy& policy, int retry, uint64_t random);

// True for failures that a later attempt may not see: timeouts, refused or
// reset connections, truncated bodies, names that did not resolve; HTTP 500,
// 502, 503, 504 and 429. Not TLS failures (a certificate does not fix
// itself), nor first-contact failures (IsFirstContactFailure).
bool IsTransient(const Response& response);

// A TLS, certificate or name-resolution failure at an origin that has never
// answered through this transport: a configuration error (wrong endpoint,
// missing CA bundle, wrong certificate), like an unreachable server. Not
// retried; the backends report it as StatusCode::kUnavailable, which ends
// the pass whatever on_error says. A later, isolated TLS failure (the origin
// answered before) is a per-request error.
bool IsFirstContactFailure(const Response& response);

// The reason of a kTls or kResolve failure in words, e.g. "the server's
// certificate is not signed by a trusted CA (unknown CA): ...", followed by
// the transport's own message.
std::string DescribeNetFailure(const Response& response);

// The Unavailable status of a first-contact failure of a request for `uri`
// to `endpoint` (the origin, as messages name it).
Status FirstContactStatus(const Response& response, const std::string& uri,
                          const std::string& endpoint);

// "scheme://host[:port]" of an absolute URL, lower-cased, without any
// user:password@ part; the whole string when it has no "://".
std::string OriginOf(std::string_view url);

// S3 (and generic AWS) error codes that mean "slow down or try again",
// whatever the HTTP status: SlowDown, InternalError, RequestTimeout, ...
bool IsTransientErrorCode(std::string_view code);

}  // namespace stoker::storage::http
