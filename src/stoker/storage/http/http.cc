#include "stoker/storage/http/http.h"

namespace stoker::storage::http {

const char* NetErrorName(NetError e) {
  switch (e) {
    case NetError::kNone: return "ok";
    case NetError::kTimeout: return "timeout";
    case NetError::kConnect: return "connection failed";
    case NetError::kReset: return "connection reset";
    case NetError::kOther: return "transfer failed";
    case NetError::kCancelled: return "cancelled";
    case NetError::kResolve: return "name resolution failed";
    case NetError::kTls: return "TLS failure";
  }
  return "unknown";
}

std::optional<uint64_t> ParseContentLength(std::string_view value) {
  constexpr uint64_t kMax = uint64_t{1} << 50;
  if (value.empty()) return std::nullopt;
  uint64_t len = 0;
  for (char c : value) {
    if (c < '0' || c > '9' || len > kMax / 10) return std::nullopt;
    len = len * 10 + static_cast<uint64_t>(c - '0');
  }
  if (len > kMax) return std::nullopt;
  return len;
}

const std::string* Response::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return &v;
  }
  return nullptr;
}

}  // namespace stoker::storage::http
