// libFuzzer target: the epoll transport's HTTP/1.1 reply reader
// (reply_reader.h), which reads whatever a server sends back. The input's
// first byte picks HEAD or GET and a seed for the piece sizes; the rest is
// what the server sent.
//
// Checked beyond "no crash": the reply read in one piece, byte by byte, and
// in pseudo-random pieces (bodies of known length received through
// BodyWindow/CommitBody, as the transport does) gives the same outcome:
// status, headers, body, keep-alive, leftover, error. A whole reply with a
// Content-Length (and no chunked coding) has a body of exactly that length;
// a refused reply says "bad reply from the server", one cut short that the
// connection closed; no body exceeds the 1 MiB limit given.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <string>
#include <string_view>

#include "stoker/storage/http/reply_reader.h"

namespace {

namespace http = stoker::storage::http;

[[noreturn]] void Fail(const char* what, std::string_view detail = "") {
  std::fprintf(stderr, "http_reply_fuzz invariant broken: %s [%.*s]\n", what,
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}

constexpr uint64_t kMaxBody = uint64_t{1} << 20;

struct Outcome {
  http::ReplyReader::Status status;
  int http_status = 0;
  http::Headers headers;
  std::string body;
  bool keep_alive = false;
  size_t leftover = 0;
  std::string error;

  bool operator==(const Outcome&) const = default;
};

// Feeds `data` in pieces: `piece(i)` gives the size of the next one.
template <class Piece>
Outcome Read(bool head, std::string_view data, Piece piece, bool use_window) {
  http::ReplyReader r;
  r.Start(head, nullptr, kMaxBody);
  http::ReplyReader::Status st = http::ReplyReader::kMore;
  size_t pos = 0;
  for (int i = 0; pos < data.size() && st == http::ReplyReader::kMore; ++i) {
    size_t n = std::min(piece(i), data.size() - pos);
    const http::ReplyReader::Window w = r.BodyWindow();
    if (use_window && w.size > 0) {
      n = std::min(n, w.size);
      std::memcpy(w.data, data.data() + pos, n);
      st = r.CommitBody(n);
    } else {
      st = r.Feed(data.data() + pos, n);
    }
    pos += n;
  }
  if (st == http::ReplyReader::kDone && pos < data.size()) {
    st = r.Feed(data.data() + pos, data.size() - pos);  // leftover
  } else if (st == http::ReplyReader::kMore) {
    st = r.Eof();
  }
  Outcome o;
  o.status = st;
  o.error = r.error();
  if (st == http::ReplyReader::kDone) {
    o.http_status = r.response().status;
    o.headers = r.response().headers;
    o.body = std::string(r.response().BodyText());
    o.keep_alive = r.keep_alive();
    o.leftover = r.leftover();
  }
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool head = data[0] & 1;
  uint32_t seed = data[0] >> 1;
  const std::string_view reply(reinterpret_cast<const char*>(data + 1), size - 1);

  const Outcome whole = Read(head, reply, [](int) { return ~size_t{0}; }, false);
  const Outcome bytes = Read(head, reply, [](int) { return size_t{1}; }, true);
  const Outcome pieces = Read(head, reply, [&](int) {
    seed = seed * 1103515245u + 12345u;
    return size_t{1} + (seed >> 16) % 64;
  }, true);
  if (!(whole == bytes)) Fail("byte-by-byte differs from one piece", reply.substr(0, 200));
  if (!(whole == pieces)) Fail("pieces differ from one piece", reply.substr(0, 200));

  if (whole.status == stoker::storage::http::ReplyReader::kError) {
    if (whole.error.rfind("bad reply from the server: ", 0) != 0) Fail("unexpected error text", whole.error);
    return 0;
  }
  if (whole.status == stoker::storage::http::ReplyReader::kCutShort) {
    if (whole.error.rfind("the server closed the connection before ", 0) != 0) {
      Fail("unexpected cut-short text", whole.error);
    }
    return 0;
  }
  if (whole.status != stoker::storage::http::ReplyReader::kDone) Fail("neither done nor failed");
  if (whole.body.size() > kMaxBody) Fail("body over the limit");
  if (whole.http_status < 200 || whole.http_status > 999) Fail("final status out of range");
  bool chunked = false;
  const std::string* length = nullptr;
  for (const auto& [k, v] : whole.headers) {
    if (k == "transfer-encoding" && v.size() >= 7 && v.substr(v.size() - 7) == "chunked") chunked = true;
    if (k == "content-length") length = &v;
  }
  const bool bodiless = head || whole.http_status == 204 || whole.http_status == 304;
  if (bodiless && !whole.body.empty()) Fail("a body where none may be");
  if (!bodiless && !chunked && length && std::to_string(whole.body.size()) != *length &&
      std::strtoull(length->c_str(), nullptr, 10) != whole.body.size()) {
    Fail("body length differs from Content-Length", *length);
  }
  return 0;
}
