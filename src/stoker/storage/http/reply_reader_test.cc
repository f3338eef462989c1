// The HTTP/1.1 reply reader alone: every framing, every split of the bytes,
// keep-alive rules, and what it refuses. (The transport around it:
// transport_test.cc; arbitrary bytes: http_reply_fuzz.cc.)
#include "stoker/storage/http/reply_reader.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace stoker::storage::http {
namespace {

struct Read {
  ReplyReader::Status status;
  int code = 0;
  std::string body;
  bool keep_alive = false;
  size_t leftover = 0;
  std::string error;
};

// Feeds `bytes` cut at `cut` (0: whole), through BodyWindow where it can,
// then reports the end of the connection if the reply is not whole.
Read ReadReply(const std::string& bytes, size_t cut = 0, bool head = false) {
  ReplyReader r;
  r.Start(head, nullptr, 1 << 20);
  ReplyReader::Status st = ReplyReader::kMore;
  size_t pos = 0;
  while (pos < bytes.size() && st == ReplyReader::kMore) {
    size_t n = bytes.size() - pos;
    if (cut && pos < cut) n = cut - pos;
    if (const auto w = r.BodyWindow(); w.size > 0) {
      n = std::min(n, w.size);
      std::memcpy(w.data, bytes.data() + pos, n);
      st = r.CommitBody(n);
    } else {
      st = r.Feed(bytes.data() + pos, n);
    }
    pos += n;
  }
  if (st == ReplyReader::kDone && pos < bytes.size()) st = r.Feed(bytes.data() + pos, bytes.size() - pos);
  if (st == ReplyReader::kMore) st = r.Eof();
  Read out{st, r.response().status, std::string(r.response().BodyText()), r.keep_alive(),
           r.leftover(), r.error()};
  return out;
}

TEST(ReplyReader, EveryFramingReadsTheSameAtEverySplit) {
  const struct {
    std::string bytes;
    int code;
    std::string body;
    bool keep_alive;
  } cases[] = {
      {"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", 200, "hello world", true},
      {"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n5;x=y\r\nhello\r\n"
       "6\r\n world\r\n0\r\nTrailer: t\r\n\r\n", 200, "hello world", true},
      {"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end", 200, "to the end", false},
      {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!",
       404, "no!", true},
      {"HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n", 204, "", true},
      {"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, "ok", false},
      {"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok", 200, "ok", true},
      {"HTTP/1.1 200\r\nContent-Length: 0\r\nConnection: keep-alive, close\r\n\r\n", 200, "", false},
  };
  for (const auto& c : cases) {
    for (size_t cut = 0; cut < c.bytes.size(); ++cut) {
      const Read r = ReadReply(c.bytes, cut);
      ASSERT_EQ(r.status, ReplyReader::kDone) << c.bytes << " cut " << cut << ": " << r.error;
      EXPECT_EQ(r.code, c.code) << c.bytes;
      EXPECT_EQ(r.body, c.body) << c.bytes << " cut " << cut;
      EXPECT_EQ(r.keep_alive, c.keep_alive) << c.bytes;
      EXPECT_EQ(r.leftover, 0u);
    }
  }
}

TEST(ReplyReader, HeadRepliesHaveNoBodyAndExtraBytesAreLeftOver) {
  const Read head = ReadReply("HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n", 0, /*head=*/true);
  ASSERT_EQ(head.status, ReplyReader::kDone) << head.error;
  EXPECT_TRUE(head.body.empty());
  const Read extra = ReadReply("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", 5);
  ASSERT_EQ(extra.status, ReplyReader::kDone);
  EXPECT_EQ(extra.body, "ok");
  EXPECT_EQ(extra.leftover, 5u);
}

TEST(ReplyReader, TheEndOfTheConnectionMidReplyIsAnError) {
  Read r = ReadReply("");
  EXPECT_EQ(r.status, ReplyReader::kCutShort);
  EXPECT_EQ(r.error, "the server closed the connection before replying");
  for (const std::string& cut : std::vector<std::string>{"HTTP/1.1 200 OK\r\nContent-Len", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
                                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"}) {
    r = ReadReply(cut);
    EXPECT_EQ(r.status, ReplyReader::kCutShort) << cut;
    EXPECT_EQ(r.error, "the server closed the connection before the reply ended") << cut;
    EXPECT_TRUE(r.body.empty());
  }
}

TEST(ReplyReader, RefusesWhatIsNotAReplyItCanRead) {
  for (const std::string& bad : std::vector<std::string>{
        "HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n",
        "ICY 200 OK\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n",  // over the 1 MiB limit
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
        "HTTP/1.1 200 OK\r\n" + std::string(70000, 'a') + "\r\n\r\n"}) {
    const Read r = ReadReply(bad);
    EXPECT_EQ(r.status, ReplyReader::kError) << bad.substr(0, 80);
    EXPECT_EQ(r.error.rfind("bad reply from the server: ", 0), 0u) << r.error;
  }
}

TEST(ReplyReader, ABodyOfKnownLengthLandsInTheRecycledBuffer) {
  auto recycler = std::make_shared<BufferRecycler>();
  BufferRecycler::Bytes kept;
  kept.reserve(8192);
  const uint8_t* where = kept.data();
  recycler->Put(std::move(kept));
  ReplyReader r;
  r.Start(false, recycler);
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n";
  ASSERT_EQ(r.Feed(head.data(), head.size()), ReplyReader::kMore);
  const auto w = r.BodyWindow();
  ASSERT_EQ(w.size, 5000u);
  EXPECT_EQ(w.data, where);  // received in place, no copy
  std::memset(w.data, 'z', w.size);
  ASSERT_EQ(r.CommitBody(w.size), ReplyReader::kDone);
  EXPECT_EQ(r.response().BodyText(), std::string(5000, 'z'));
  EXPECT_EQ(r.response().body.data(), where);
}

TEST(ReplyReader, FuzzFindingStatusWithoutAClassIsRefused) {
  // Three digits, but below 100: it was taken as a final reply.
  const Read r = ReadReply("HTTP/1.1 008 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(r.status, ReplyReader::kError);
  EXPECT_EQ(r.error, "bad reply from the server: malformed status code");
}

}  // namespace
}  // namespace stoker::storage::http
