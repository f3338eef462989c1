#include "stoker/storage/http/retry.h"

#include <algorithm>

#include "stoker/storage/http/url.h"

namespace stoker::storage::http {

RetryPolicy RetryPolicyFor(const IoOptions& io, int configured_max_attempts) {
  RetryPolicy p;
  p.max_attempts = io.max_attempts > 0 ? io.max_attempts : std::max(0, configured_max_attempts);
  p.deadline = std::chrono::nanoseconds(static_cast<int64_t>(std::max(0.0, io.io_timeout_s) * 1e9));
  return p;
}

std::chrono::nanoseconds Backoff(const RetryPolicy& policy, int retry, uint64_t random) {
  using std::chrono::nanoseconds;
  const auto base = std::chrono::duration_cast<nanoseconds>(policy.base_backoff).count();
  const auto cap = std::chrono::duration_cast<nanoseconds>(policy.max_backoff).count();
  if (base <= 0 || cap <= 0) return nanoseconds(0);
  // base * 2^(retry-1) without overflow: stop doubling once past the cap.
  int64_t ceiling = base;
  for (int i = 1; i < retry && ceiling < cap; ++i) ceiling *= 2;
  ceiling = std::min(ceiling, cap);
  // Uniform in [0, ceiling]: 53 random bits as a fraction.
  const double u = static_cast<double>(random >> 11) * (1.0 / 9007199254740992.0);
  return nanoseconds(static_cast<int64_t>(u * static_cast<double>(ceiling)));
}

bool IsTransient(const Response& r) {
  switch (r.error) {
    case NetError::kTimeout:
    case NetError::kConnect:
    case NetError::kReset: return true;
    case NetError::kResolve: return !r.first_contact;
    case NetError::kTls:
    case NetError::kOther:
    case NetError::kCancelled: return false;
    case NetError::kNone: break;
  }
  return r.status == 500 || r.status == 502 || r.status == 503 || r.status == 504 ||
         r.status == 429;
}

bool IsFirstContactFailure(const Response& r) {
  return r.first_contact && (r.error == NetError::kTls || r.error == NetError::kResolve);
}

std::string DescribeNetFailure(const Response& r) {
  const std::string& m = r.error_message;
  const auto has = [&m](std::string_view s) { return m.find(s) != std::string::npos; };
  std::string why;
  if (r.error == NetError::kResolve) {
    why = "the host name does not resolve";
  } else if (r.error == NetError::kTls) {
    if (has("expired")) {
      why = "the server's certificate has expired";
    } else if (has("not yet valid")) {
      why = "the server's certificate is not valid yet";
    } else if (has("does not match target host") || has("subject name matches")) {
      why = "the server's certificate is for another host name (wrong host name)";
    } else if (has("local issuer") || has("self-signed") || has("self signed") ||
               has("unable to get issuer") || has("unknown ca")) {
      why = "the server's certificate is not signed by a trusted CA (unknown CA; "
            "give the CA with ca_bundle=, AWS_CA_BUNDLE or the AWS profile's ca_bundle)";
    } else if (has("certificate file") || has("CA cert") || has("ca_bundle")) {
      why = "the CA bundle cannot be used";
    } else {
      why = "the TLS handshake failed";
    }
  }
  if (why.empty()) return m;
  return why + ": " + m;
}

Status FirstContactStatus(const Response& r, const std::string& uri, const std::string& endpoint) {
  return Unavailable(uri + ": " + NetErrorName(r.error) + " at " + endpoint + ": " +
                     DescribeNetFailure(r) + "; no request to " + endpoint +
                     " has succeeded, so none is retried");
}

std::string OriginOf(std::string_view url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  const size_t start = scheme + 3;
  size_t end = url.find_first_of("/?#", start);
  if (end == std::string_view::npos) end = url.size();
  std::string_view authority = url.substr(start, end - start);
  if (const size_t at = authority.rfind('@'); at != std::string_view::npos) {
    authority.remove_prefix(at + 1);
  }
  return ToLower(url.substr(0, start)) + ToLower(authority);
}

bool IsTransientErrorCode(std::string_view code) {
  static constexpr std::string_view kCodes[] = {
      "SlowDown",          "InternalError",         "ServiceUnavailable", "RequestTimeout",
      "RequestTimeoutException", "Throttling",      "ThrottlingException", "ThrottledException",
      "RequestThrottled",  "RequestLimitExceeded",  "TooManyRequestsException",
      "OperationAborted",  "BandwidthLimitExceeded", "PriorRequestNotComplete",
  };
  return std::find(std::begin(kCodes), std::end(kCodes), code) != std::end(kCodes);
}

}  // namespace stoker::storage::http
