// The lookahead across epochs against real backends (README: "cancels them
// and hands their buffers back"): reads ahead of a pass that will not come
// are aborted on the wire when the lookahead is dropped, not run to
// completion, and the buffer one of them was filling goes back to the
// storage. The backends are http and path-style S3 over a loopback server
// whose objects never arrive (storage/testing/object_server.h), with every
// io timeout very large, so only the cancellation can end the reads.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "stoker/pipeline/lookahead.h"
#include "stoker/storage/http/epoll_transport.h"
#include "stoker/storage/http/http_storage.h"
#include "stoker/storage/s3/s3_storage.h"
#include "stoker/storage/testing/object_server.h"

namespace stoker::pipeline {
namespace {

using storage::testing::ObjectServer;

storage::http::CurlOptions NoTimeouts() {
  storage::http::CurlOptions o;
  o.connect_timeout_ms = 3600 * 1000;
  o.read_timeout_ms = 0;
  o.low_speed_bytes_per_s = 0;
  return o;
}

struct Remote {
  std::shared_ptr<storage::Storage> storage;
  const storage::BufferRecycler* buffers;
  std::string prefix;  // + "silent/..." or "trickle/..."
};

Remote Http(ObjectServer& server) {
  auto s = std::make_shared<storage::http::HttpStorage>(storage::http::NewTransport(NoTimeouts()));
  return {s, &s->buffers(), server.origin() + "/bkt/"};
}

Remote S3(ObjectServer& server) {
  storage::s3::S3Config config;
  config.endpoint_url = server.origin();
  config.credentials = {"AKIDEXAMPLE", "secret-key-for-tests", ""};
  storage::s3::S3Options options;
  options.curl = NoTimeouts();
  auto s = storage::s3::S3Storage::Create(config, storage::http::NewTransport(options.curl), options);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return {*s, &(*s)->buffers(), "s3://bkt/"};
}

class LookaheadOnStorage : public ::testing::TestWithParam<std::string> {};

TEST_P(LookaheadOnStorage, DropAbortsReadsOnTheWireAndRecyclesTheirBuffer) {
  ObjectServer server;
  Remote remote = GetParam() == "http" ? Http(server) : S3(server);
  constexpr int kReads = 6;
  std::vector<int64_t> indices;
  std::vector<std::string> uris;
  for (int k = 0; k < kReads - 1; ++k) {
    indices.push_back(k);
    uris.push_back(remote.prefix + "silent/" + std::to_string(k) + ".jpg");
  }
  indices.push_back(kReads - 1);
  uris.push_back(remote.prefix + "trickle/part.jpg");  // a body that stops part way
  auto lookahead = std::make_shared<Lookahead>(remote.storage);
  lookahead->Begin(1, indices, uris);
  ASSERT_TRUE(server.WaitUntil([&](int requests, int) { return requests == kReads; }));
  remote.buffers->WaitForTakes(1);
  EXPECT_EQ(remote.storage->counters().in_flight, kReads);
  // Drop requests the stop under the lookahead's own lock, which its read
  // callbacks take: a backend that ran them inside request_stop() would
  // deadlock here.
  lookahead->Drop();
  // Every connection closed by the client: the reads were taken off the wire.
  ASSERT_TRUE(server.WaitUntil([&](int, int closed) { return closed == kReads; }))
      << "the reads ahead were not taken off the wire";
  // Joins the I/O thread: every callback has run.
  remote.storage->Shutdown();
  const auto c = remote.storage->counters();
  EXPECT_EQ(c.in_flight, 0);
  EXPECT_EQ(c.cancelled, kReads);
  EXPECT_EQ(c.bytes_read, 0);
  EXPECT_EQ(remote.buffers->kept(), 1u);  // the part-filled body went back
  EXPECT_GE(remote.buffers->kept_bytes(), ObjectServer::kTrickleSize);
  EXPECT_EQ(lookahead->used(), 0);
}

INSTANTIATE_TEST_SUITE_P(Backends, LookaheadOnStorage, ::testing::Values("http", "s3"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace stoker::pipeline
