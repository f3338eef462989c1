#include "stoker/storage/http/range.h"

#include <charconv>

namespace stoker::storage::http {

std::string RangeHeader(ByteRange range) {
  const std::string first = "bytes=" + std::to_string(range.offset) + "-";
  // An end past any object's (2^62 bytes): ask for "to the end".
  if (range.End() >= (int64_t{1} << 62)) return first;
  return first + std::to_string(range.End() - 1);
}

bool IsRangeAnswer(const Response& r) { return r.error == NetError::kNone && r.status == 416; }

Result<Bytes> RangeBody(Response& r, const std::string& uri, ByteRange range) {
  if (r.status == 416) return Bytes{};
  Bytes body = std::move(r.body);
  if (r.status != 206) {
    // The whole object, Range ignored: keep the range.
    KeepRange(body, range);
    return body;
  }
  if (const std::string* cr = r.Header("content-range")) {
    // "bytes FIRST-LAST/TOTAL"
    int64_t first = -1;
    const std::string_view v(*cr);
    if (v.rfind("bytes ", 0) == 0) {
      const char* begin = v.data() + 6;
      const char* end = v.data() + v.size();
      auto [p, ec] = std::from_chars(begin, end, first);
      if (ec != std::errc() || p == end || *p != '-') first = -1;
    }
    if (first != range.offset) {
      return Corrupt(uri + ": asked for bytes from " + std::to_string(range.offset) +
                     ", the server sent Content-Range '" + cr->substr(0, 80) + "'");
    }
  }
  if (static_cast<int64_t>(body.size()) > range.length) {
    return Corrupt(uri + ": range reply has " + std::to_string(body.size()) +
                   " bytes, asked for " + std::to_string(range.length));
  }
  return body;
}

}  // namespace stoker::storage::http
