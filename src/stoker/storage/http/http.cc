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
  }
  return "unknown";
}

const std::string* Response::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return &v;
  }
  return nullptr;
}

}  // namespace stoker::storage::http
