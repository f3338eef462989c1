#include "stoker/storage/http/retry.h"

#include <algorithm>

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
    case NetError::kOther:
    case NetError::kCancelled: return false;
    case NetError::kNone: break;
  }
  return r.status == 500 || r.status == 502 || r.status == 503 || r.status == 504 ||
         r.status == 429;
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
