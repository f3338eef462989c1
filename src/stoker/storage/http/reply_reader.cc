#include "stoker/storage/http/reply_reader.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <utility>

#include "stoker/storage/http/url.h"

namespace stoker::storage::http {
namespace {

// A reply head (or a trailer) larger than this is refused.
constexpr size_t kMaxHead = size_t{64} << 10;
// A body of known length up to this is sized whole when its head arrives;
// a larger one grows by this much at a time (a bogus length then costs
// nothing until bytes come).
constexpr uint64_t kWholeBody = uint64_t{256} << 20;
constexpr uint64_t kGrowBy = uint64_t{16} << 20;
// No length field or chunk size is read past this many digits' worth.
constexpr uint64_t kMaxLength = uint64_t{1} << 50;

}  // namespace

void ReplyReader::Start(bool head_request, std::shared_ptr<BufferRecycler> body_buffers,
                        uint64_t max_body) {
  phase_ = kHead;
  head_request_ = head_request;
  keep_alive_ = true;
  got_bytes_ = false;
  max_body_ = max_body;
  body_buffers_ = std::move(body_buffers);
  response_ = Response{};
  in_.clear();
  filled_ = 0;
  body_left_ = 0;
  chunk_left_ = 0;
  error_.clear();
}

ReplyReader::Status ReplyReader::Fail(std::string why) {
  phase_ = kFailed;
  error_ = "bad reply from the server: " + std::move(why);
  response_.body.clear();
  return kError;
}

ReplyReader::Status ReplyReader::Finish() {
  phase_ = kFinished;
  response_.body.resize(filled_);
  return kDone;
}

void ReplyReader::Append(const char* data, size_t n) {
  if (n == 0) return;  // memcpy to an empty body's null data() is undefined
  auto& body = response_.body;
  body.resize(filled_ + n);
  std::memcpy(body.data() + filled_, data, n);
  filled_ += n;
}

ReplyReader::Status ReplyReader::Feed(const char* data, size_t n) {
  if (phase_ == kFinished || phase_ == kFailed) {
    in_.append(data, n);
    return phase_ == kFinished ? kDone : kError;
  }
  if (n > 0) got_bytes_ = true;
  if (phase_ == kBody) {
    // Bytes of a body of known length that came by Feed: into place.
    while (n > 0 && phase_ == kBody) {
      const Window w = BodyWindow();
      const size_t take = std::min(n, w.size);
      if (take == 0) break;
      std::memcpy(w.data, data, take);
      data += take;
      n -= take;
      if (CommitBody(take) == kDone) break;
    }
    in_.append(data, n);  // past the body: leftover
    return phase_ == kFinished ? kDone : phase_ == kFailed ? kError : kMore;
  }
  if (phase_ == kUntilClose) {
    if (filled_ + n > max_body_) return Fail("body over " + std::to_string(max_body_) + " bytes");
    Append(data, n);
    return kMore;
  }
  in_.append(data, n);
  return Parse();
}

ReplyReader::Window ReplyReader::BodyWindow() {
  if (phase_ != kBody || body_left_ == 0) return {};
  auto& body = response_.body;
  if (filled_ == body.size()) {
    // A body too large to size whole up front grows as it comes.
    try {
      body.resize(filled_ + static_cast<size_t>(std::min(body_left_, kGrowBy)));
    } catch (const std::bad_alloc&) {
      Fail("out of memory for the body");
      return {};
    }
  }
  const size_t room = std::min<uint64_t>(body.size() - filled_, body_left_);
  return {body.data() + filled_, room};
}

ReplyReader::Status ReplyReader::CommitBody(size_t n) {
  if (phase_ == kFailed) return kError;
  got_bytes_ = got_bytes_ || n > 0;
  filled_ += n;
  body_left_ -= n;
  if (body_left_ == 0) return Finish();
  return kMore;
}

ReplyReader::Status ReplyReader::Eof() {
  if (phase_ == kFinished) return kDone;
  if (phase_ == kUntilClose) {
    keep_alive_ = false;
    return Finish();
  }
  if (phase_ == kFailed) return kError;
  error_ = got_bytes_ ? "the server closed the connection before the reply ended"
                      : "the server closed the connection before replying";
  phase_ = kFailed;
  response_.body.clear();
  return kCutShort;
}

ReplyReader::Status ReplyReader::Parse() {
  for (;;) {
    switch (phase_) {
      case kHead: {
        const size_t end = in_.find("\r\n\r\n");
        if (end == std::string::npos) {
          if (in_.size() > kMaxHead) return Fail("reply head over 64 KiB");
          return kMore;
        }
        if (end + 4 > kMaxHead) return Fail("reply head over 64 KiB");
        const std::string head = in_.substr(0, end + 2);
        in_.erase(0, end + 4);
        if (!ParseHead(head)) return kError;
        if (phase_ == kBody || phase_ == kUntilClose) {
          // Body bytes that came with the head go where Feed puts a body's.
          std::string rest;
          rest.swap(in_);
          return Feed(rest.data(), rest.size());
        }
        if (phase_ == kFinished) return Finish();
        continue;  // kHead again after a 1xx, or chunked
      }
      case kChunkSize: {
        const size_t eol = in_.find("\r\n");
        if (eol == std::string::npos) {
          if (in_.size() > 4096) return Fail("malformed chunk size");
          return kMore;
        }
        uint64_t size = 0;
        size_t i = 0;
        for (; i < eol; ++i) {
          const char ch = in_[i];
          const int d = ch >= '0' && ch <= '9'   ? ch - '0'
                        : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                        : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                                 : -1;
          if (d < 0) break;
          if (size > kMaxLength) return Fail("chunk size too large");
          size = size * 16 + static_cast<uint64_t>(d);
        }
        if (i == 0 || (i < eol && in_[i] != ';' && in_[i] != ' ' && in_[i] != '\t')) {
          return Fail("malformed chunk size");
        }
        if (filled_ + size > max_body_) return Fail("body over " + std::to_string(max_body_) + " bytes");
        in_.erase(0, eol + 2);
        chunk_left_ = size;
        phase_ = size == 0 ? kTrailer : kChunkData;
        continue;
      }
      case kChunkData: {
        const size_t take = static_cast<size_t>(std::min<uint64_t>(in_.size(), chunk_left_));
        Append(in_.data(), take);
        in_.erase(0, take);
        chunk_left_ -= take;
        if (chunk_left_ > 0) return kMore;
        phase_ = kChunkEnd;
        continue;
      }
      case kChunkEnd:
        if (in_.size() < 2) return kMore;
        if (in_.compare(0, 2, "\r\n") != 0) return Fail("malformed chunk end");
        in_.erase(0, 2);
        phase_ = kChunkSize;
        continue;
      case kTrailer: {
        const size_t eol = in_.find("\r\n");
        if (eol == std::string::npos) {
          if (in_.size() > kMaxHead) return Fail("trailer over 64 KiB");
          return kMore;
        }
        in_.erase(0, eol + 2);
        if (eol == 0) return Finish();
        continue;
      }
      case kFinished:
        return kDone;
      case kFailed:
        return kError;
      case kBody:
      case kUntilClose:
        return kMore;  // reached through Feed, never here
    }
  }
}

// `head`: the status line and fields, each ending in CRLF.
bool ReplyReader::ParseHead(std::string_view head) {
  Response& r = response_;
  const size_t eol = head.find("\r\n");
  const std::string_view status_line = head.substr(0, eol);
  // "HTTP/1.x NNN reason"
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." ||
      (status_line[7] != '0' && status_line[7] != '1') || status_line[8] != ' ' ||
      (status_line.size() > 12 && status_line[12] != ' ')) {
    Fail("not an HTTP/1.x status line");
    return false;
  }
  int status = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (status_line[i] < '0' || status_line[i] > '9') {
      Fail("malformed status code");
      return false;
    }
    status = status * 10 + (status_line[i] - '0');
  }
  if (status < 100) {  // three digits, but no status class (fuzz finding: "008")
    Fail("malformed status code");
    return false;
  }
  const bool http10 = status_line[7] == '0';
  r.headers.clear();
  bool chunked = false, close = false, keep_alive_token = false, have_length = false;
  uint64_t length = 0;
  std::string_view fields = head.substr(eol + 2);
  while (!fields.empty()) {
    const size_t e = fields.find("\r\n");
    const std::string_view line = fields.substr(0, e);
    fields.remove_prefix(e + 2);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) continue;
    std::string name = ToLower(Trim(line.substr(0, colon)));
    std::string value(Trim(line.substr(colon + 1)));
    if (name == "content-length") {
      const std::optional<uint64_t> len = ParseContentLength(value);
      if (!len || (have_length && *len != length)) {
        Fail("malformed Content-Length");
        return false;
      }
      have_length = true;
      length = *len;
    } else if (name == "transfer-encoding") {
      const std::string v = ToLower(value);
      chunked = v.size() >= 7 && v.compare(v.size() - 7, 7, "chunked") == 0;
    } else if (name == "connection") {
      const std::string v = ToLower(value);
      if (v.find("close") != std::string::npos) close = true;
      if (v.find("keep-alive") != std::string::npos) keep_alive_token = true;
    }
    r.headers.emplace_back(std::move(name), std::move(value));
  }
  if (status >= 100 && status < 200) {
    r.headers.clear();
    phase_ = kHead;  // the final reply follows
    return true;
  }
  r.status = status;
  keep_alive_ = http10 ? keep_alive_token && !close : !close;
  if (head_request_ || status == 204 || status == 304) {
    phase_ = kFinished;
    return true;
  }
  if (chunked) {
    phase_ = kChunkSize;
    return true;
  }
  if (!have_length) {
    phase_ = kUntilClose;
    keep_alive_ = false;
    return true;
  }
  if (length > max_body_) {
    Fail("body of " + std::to_string(length) + " bytes, over " + std::to_string(max_body_));
    return false;
  }
  if (length == 0) {
    phase_ = kFinished;
    return true;
  }
  auto& body = r.body;
  try {
    const size_t whole = static_cast<size_t>(std::min(length, kWholeBody));
    if (body_buffers_ && length <= kWholeBody) body = body_buffers_->Take(whole);
    body.resize(whole);  // default-initialised: nothing is zeroed
  } catch (const std::bad_alloc&) {
    Fail("out of memory for a " + std::to_string(length) + "-byte body");
    return false;
  }
  body_left_ = length;
  filled_ = 0;
  phase_ = kBody;
  return true;
}

}  // namespace stoker::storage::http
