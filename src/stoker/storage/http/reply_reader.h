// Reads one HTTP/1.1 reply from the bytes of a connection, whatever pieces
// they arrive in: the status line and header fields, then a body framed by
// Content-Length, chunked transfer coding, or the end of the connection;
// interim 1xx replies skipped, HEAD/204/304 without a body. No sockets here:
// the epoll transport feeds it what it receives, and the fuzz target
// (reply_reader_fuzz.cc) whatever it likes.
//
// A body of known length is received in place: BodyWindow() is where the
// next bytes go, so the transport can recv() straight into the sample's
// (recycled) buffer and never copy a body byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "stoker/storage/buffer_recycler.h"
#include "stoker/storage/http/http.h"

namespace stoker::storage::http {

class ReplyReader {
 public:
  enum Status {
    kMore,   // the reply is not whole yet
    kDone,   // the reply is whole: response() holds it
    kError,     // not a reply we can read: error() says why
    kCutShort,  // the connection ended before the reply did: error() says
                // whether any of it came (got_bytes())
  };

  // Begins a new reply. `head_request`: the request was HEAD (no body
  // follows whatever the head says). `body_buffers` (may be null): where a
  // body of known length gets its buffer. A declared body over `max_body`
  // bytes is refused (kError).
  void Start(bool head_request, std::shared_ptr<BufferRecycler> body_buffers,
             uint64_t max_body = kNoLimit);

  // Bytes received. Bytes past the end of the reply are kept (leftover()).
  Status Feed(const char* data, size_t n);
  // While a body of known length is due: where up to `size` next bytes may
  // be received directly, then CommitBody(n) with what arrived. size 0 when
  // the reader is elsewhere (feed it instead).
  struct Window {
    uint8_t* data = nullptr;
    size_t size = 0;
  };
  Window BodyWindow();
  Status CommitBody(size_t n);
  // The peer closed the connection: kDone if the body ran to the close,
  // kCutShort if the reply had not ended (or not begun), kError if it was
  // already refused.
  Status Eof();

  Response& response() { return response_; }
  // Whether the connection can carry the next request once this reply is done.
  bool keep_alive() const { return keep_alive_; }
  // Whether any byte of this reply arrived.
  bool got_bytes() const { return got_bytes_; }
  const std::string& error() const { return error_; }
  size_t leftover() const { return in_.size(); }

  static constexpr uint64_t kNoLimit = ~uint64_t{0};

 private:
  enum Phase {
    kHead,
    kBody,        // Content-Length: body_left_ more bytes
    kChunkSize,   // a chunk-size line
    kChunkData,   // chunk_left_ more bytes of a chunk
    kChunkEnd,    // the CRLF after a chunk
    kTrailer,     // trailer fields up to an empty line
    kUntilClose,  // no length: the body ends with the connection
    kFinished,
    kFailed,
  };

  Status Parse();
  bool ParseHead(std::string_view head);  // false: failed
  Status Fail(std::string why);
  Status Finish();
  void Append(const char* data, size_t n);

  Phase phase_ = kHead;
  bool head_request_ = false;
  bool keep_alive_ = true;
  bool got_bytes_ = false;
  uint64_t max_body_ = kNoLimit;
  std::shared_ptr<BufferRecycler> body_buffers_;
  Response response_;
  std::string in_;          // bytes not consumed yet: head, chunk framing, leftover
  size_t filled_ = 0;       // body bytes received (kBody: body is pre-sized)
  uint64_t body_left_ = 0;  // kBody
  uint64_t chunk_left_ = 0;
  std::string error_;
};

}  // namespace stoker::storage::http
