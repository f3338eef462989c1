// One contract (storage.h), one suite, every backend: in-memory, local
// files, http:// and path-style S3 against a loopback object server
// (testing/object_server.h), and S3 against moto when
// tests/integration/test_s3.py runs this binary with STOKER_S3_TEST_ENDPOINT
// set (the s3_moto cases skip otherwise).
//
// Cancellation is tested where a read can wait: a loopback server that
// reads the request and never answers (or sends part of a body and stops),
// with every io timeout very large, so only the stop token can end the read;
// no case asserts on time.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string_view>

#include "stoker/storage/file/file_storage.h"
#include "stoker/storage/http/epoll_transport.h"
#include "stoker/storage/http/http_storage.h"
#include "stoker/storage/registry.h"
#include "stoker/storage/s3/s3_storage.h"
#include "stoker/storage/testing/memory_storage.h"
#include "stoker/storage/testing/object_server.h"

namespace stoker::storage::testing {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kBlobSize = 100003;  // test_s3.py uploads the same

// The blob's bytes (as tests/integration/test_s3.py writes them).
uint8_t BlobByte(int64_t i) { return static_cast<uint8_t>((i * 7 + i / 256) % 251); }

std::string BlobBytes() {
  std::string s(kBlobSize, '\0');
  for (int64_t i = 0; i < kBlobSize; ++i) s[i] = static_cast<char>(BlobByte(i));
  return s;
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// Every backend holds, under its prefix: conformance/blob.bin (kBlobSize
// bytes of BlobByte), conformance/empty.bin (0 bytes), and no
// conformance/missing.bin. `Stalled` gives a storage of the same backend
// and a URI whose read only a stop can end.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::shared_ptr<Storage> storage() = 0;
  virtual std::string Uri(const std::string& key) = 0;
  // Empty when the backend can run here; else why not.
  virtual std::string Unavailable() { return ""; }

  // Reads of Uri("conformance/denied.bin") are refused: checks it and
  // returns true, or returns false if this backend cannot arrange it.
  virtual bool CheckDenied() = 0;

  struct Stalled {
    std::shared_ptr<Storage> storage;
    std::string uri;
    ObjectServer* server = nullptr;        // remote backends: the silent server
    const BufferRecycler* buffers = nullptr;  // where a cancelled body goes back
  };
  // Null when reads of this backend never wait (local ones): they are
  // tested as cancelled before they start.
  virtual std::optional<Stalled> MakeStalled() { return std::nullopt; }

  // Whether the backend writes (http(s) does not).
  virtual bool Writes() { return true; }
  // The part size the write cases use (S3 servers want 5 MiB at least).
  virtual int64_t PartSize() { return 100000; }
};

// Remote backends: every timeout very large, so only a stop ends a read.
http::CurlOptions NoTimeouts() {
  http::CurlOptions o;
  o.connect_timeout_ms = 3600 * 1000;
  o.read_timeout_ms = 0;
  o.low_speed_bytes_per_s = 0;
  o.total_timeout_ms = 0;
  return o;
}

class MemoryBackend final : public Backend {
 public:
  MemoryBackend() {
    mem_->Put(Uri("conformance/blob.bin"), BlobBytes());
    mem_->Put(Uri("conformance/empty.bin"), "");
    mem_->Put(Uri("conformance/denied.bin"), "secret");
    mem_->Deny(Uri("conformance/denied.bin"));
  }
  std::shared_ptr<Storage> storage() override { return mem_; }
  std::string Uri(const std::string& key) override { return "mem://bucket/" + key; }
  bool CheckDenied() override {
    auto r = mem_->Read(Uri("conformance/denied.bin"));
    EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied) << r.status().ToString();
    return true;
  }

 private:
  std::shared_ptr<MemoryStorage> mem_ = std::make_shared<MemoryStorage>();
};

class FileBackend final : public Backend {
 public:
  FileBackend() {
    char tmpl[] = "/tmp/stoker_conformance_XXXXXX";
    root_ = ::mkdtemp(tmpl);
    ::chmod(root_.c_str(), 0755);  // "nobody" must enter it (CheckDenied)
    fs::create_directories(root_ / "conformance");
    std::ofstream(root_ / "conformance/blob.bin", std::ios::binary) << BlobBytes();
    std::ofstream(root_ / "conformance/empty.bin", std::ios::binary);
    std::ofstream(root_ / "conformance/denied.bin", std::ios::binary) << "secret";
    ::chmod((root_ / "conformance").c_str(), 0755);
    ::chmod((root_ / "conformance/denied.bin").c_str(), 0);
  }
  ~FileBackend() override { fs::remove_all(root_); }
  std::shared_ptr<Storage> storage() override { return storage_; }
  std::string Uri(const std::string& key) override { return "file://" + (root_ / key).string(); }

  // Root reads a mode-000 file anyway: as root, the read runs in a child
  // that first becomes "nobody" (its capabilities go with root), which
  // checks open() really fails before reporting the storage's answer.
  bool CheckDenied() override {
    const std::string uri = Uri("conformance/denied.bin");
    if (::geteuid() != 0) {
      auto r = storage_->Read(uri);
      EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied) << r.status().ToString();
      EXPECT_NE(r.status().message().find((root_ / "conformance/denied.bin").string()),
                std::string::npos);
      return true;
    }
    const passwd* nobody = ::getpwnam("nobody");
    if (!nobody) return false;
    int fds[2];
    if (::pipe(fds) != 0) return false;
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      std::string out;
      if (::setgroups(0, nullptr) != 0 || ::setgid(nobody->pw_gid) != 0 ||
          ::setuid(nobody->pw_uid) != 0) {
        out = "setuid failed";
      } else if (::open((root_ / "conformance/denied.bin").c_str(), O_RDONLY) >= 0) {
        out = "open succeeded";
      } else {
        FileStorage fresh;
        auto whole = fresh.Read(uri);
        auto range = fresh.ReadRangeNow(uri, {0, 3});
        out = std::string(StatusCodeName(whole.status().code())) + "|" +
              StatusCodeName(range.status().code()) + "|" + whole.status().message();
      }
      [[maybe_unused]] ssize_t n = ::write(fds[1], out.data(), out.size());
      ::_exit(0);
    }
    ::close(fds[1]);
    std::string got;
    char buf[512];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof(buf))) > 0;) got.append(buf, n);
    ::close(fds[0]);
    int wstatus = 0;
    ::waitpid(pid, &wstatus, 0);
    const std::string denied = StatusCodeName(StatusCode::kPermissionDenied);
    EXPECT_EQ(got.rfind(denied + "|" + denied + "|", 0), 0u) << got;
    EXPECT_NE(got.find((root_ / "conformance/denied.bin").string()), std::string::npos) << got;
    return true;
  }

 private:
  fs::path root_;
  std::shared_ptr<FileStorage> storage_ = std::make_shared<FileStorage>();
};

// http:// and path-style s3:// share one loopback server: /bkt/<key>.
class LoopbackServer {
 public:
  LoopbackServer() {
    server.Put("/bkt/conformance/blob.bin", BlobBytes());
    server.Put("/bkt/conformance/empty.bin", "");
    server.Put("/bkt/conformance/denied.bin", "secret");
    server.Deny("/bkt/conformance/denied.bin");
  }
  ObjectServer server;
};

// `curl`: libcurl's transport for http:// too (https:// always uses it).
class HttpBackend final : public Backend {
 public:
  explicit HttpBackend(bool curl) : curl_(curl) {
    storage_ = std::make_shared<http::HttpStorage>(Transport(http::CurlOptions{}));
  }
  std::unique_ptr<http::Transport> Transport(const http::CurlOptions& o) {
    return curl_ ? http::NewCurlTransport(o) : http::NewTransport(o);
  }
  std::shared_ptr<Storage> storage() override { return storage_; }
  std::string Uri(const std::string& key) override { return loop_.server.origin() + "/bkt/" + key; }
  bool Writes() override { return false; }
  bool CheckDenied() override {
    auto r = storage_->Read(Uri("conformance/denied.bin"));
    EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied) << r.status().ToString();
    EXPECT_NE(r.status().message().find(Uri("conformance/denied.bin")), std::string::npos);
    return true;
  }
  std::optional<Stalled> MakeStalled() override {
    stalled_ = std::make_shared<http::HttpStorage>(Transport(NoTimeouts()));
    return Stalled{stalled_, Uri("silent/never.bin"), &loop_.server, &stalled_->buffers()};
  }

 private:
  const bool curl_;
  LoopbackServer loop_;
  std::shared_ptr<http::HttpStorage> storage_;
  std::shared_ptr<http::HttpStorage> stalled_;
};

std::shared_ptr<s3::S3Storage> OpenS3(const std::string& endpoint, const http::CurlOptions& curl) {
  s3::S3Config config;
  config.endpoint_url = endpoint;
  config.region = "us-east-1";
  config.credentials = {"AKIDEXAMPLE", "secret-key-for-tests", ""};
  config.credentials_source = "test";
  s3::S3Options options;
  options.curl = curl;
  auto s = s3::S3Storage::Create(config, http::NewTransport(curl), options);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? *s : nullptr;
}

class S3Backend final : public Backend {
 public:
  std::shared_ptr<Storage> storage() override { return storage_; }
  std::string Uri(const std::string& key) override { return "s3://bkt/" + key; }
  bool CheckDenied() override {
    auto r = storage_->Read(Uri("conformance/denied.bin"));
    EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied) << r.status().ToString();
    EXPECT_NE(r.status().message().find(Uri("conformance/denied.bin")), std::string::npos);
    EXPECT_NE(r.status().message().find("AccessDenied"), std::string::npos);
    return true;
  }
  std::optional<Stalled> MakeStalled() override {
    stalled_ = OpenS3(loop_.server.origin(), NoTimeouts());
    return Stalled{stalled_, Uri("silent/never.bin"), &loop_.server, &stalled_->buffers()};
  }

 private:
  LoopbackServer loop_;
  std::shared_ptr<s3::S3Storage> storage_ = OpenS3(loop_.server.origin(), http::CurlOptions{});
  std::shared_ptr<s3::S3Storage> stalled_;
};

// moto, started by tests/integration/test_s3.py, which uploads the objects.
class S3MotoBackend final : public Backend {
 public:
  S3MotoBackend() : endpoint_(Env("STOKER_S3_TEST_ENDPOINT")), bucket_(Env("STOKER_S3_TEST_BUCKET")) {
    if (!endpoint_.empty() && !bucket_.empty()) {
      auto s = s3::S3Storage::Open({.endpoint_url = endpoint_});
      EXPECT_TRUE(s.ok()) << s.status().ToString();
      if (s.ok()) storage_ = *s;
    }
  }
  std::string Unavailable() override {
    if (endpoint_.empty() || bucket_.empty()) {
      return "set STOKER_S3_TEST_ENDPOINT and STOKER_S3_TEST_BUCKET (tests/integration/test_s3.py "
             "does) to run against moto";
    }
    return "";
  }
  std::shared_ptr<Storage> storage() override { return storage_; }
  std::string Uri(const std::string& key) override { return "s3://" + bucket_ + "/" + key; }
  bool CheckDenied() override { return false; }  // moto grants everything
  int64_t PartSize() override { return int64_t{5} << 20; }  // moto's minimum, as S3's

 private:
  std::string endpoint_, bucket_;
  std::shared_ptr<s3::S3Storage> storage_;
};

std::unique_ptr<Backend> MakeBackend(const std::string& name) {
  if (name == "memory") return std::make_unique<MemoryBackend>();
  if (name == "file") return std::make_unique<FileBackend>();
  if (name == "http") return std::make_unique<HttpBackend>(false);
  if (name == "http_curl") return std::make_unique<HttpBackend>(true);
  if (name == "s3") return std::make_unique<S3Backend>();
  return std::make_unique<S3MotoBackend>();
}

std::string S(const Bytes& b) { return std::string(b.begin(), b.end()); }

// The blob's bytes [offset, offset + length), clamped.
std::string BlobRange(int64_t offset, int64_t length) {
  const int64_t begin = std::min(offset, kBlobSize);
  const int64_t end = begin + std::min(length, kBlobSize - begin);
  return BlobBytes().substr(begin, end - begin);
}

class StorageConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    backend_ = MakeBackend(GetParam());
    if (std::string why = backend_->Unavailable(); !why.empty()) GTEST_SKIP() << why;
    storage_ = backend_->storage();
    ASSERT_NE(storage_, nullptr);
  }
  std::string Uri(const std::string& key) { return backend_->Uri(key); }

  Result<Bytes> ReadAsyncWait(const std::string& uri) {
    std::promise<Result<Bytes>> p;
    auto f = p.get_future();
    storage_->ReadAsync(uri, [&p](Result<Bytes> r) { p.set_value(std::move(r)); }, std::stop_token());
    return f.get();
  }

  std::unique_ptr<Backend> backend_;
  std::shared_ptr<Storage> storage_;
};

TEST_P(StorageConformance, WholeObject) {
  auto r = storage_->Read(Uri("conformance/blob.bin"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(S(*r), BlobBytes());
  auto a = ReadAsyncWait(Uri("conformance/blob.bin"));
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(S(*a), BlobBytes());
  const auto c = storage_->counters();
  EXPECT_GE(c.bytes_read, 2 * kBlobSize);
  EXPECT_EQ(c.in_flight, 0);
}

TEST_P(StorageConformance, Ranges) {
  const std::pair<int64_t, int64_t> ranges[] = {
      {0, 1}, {0, 4096}, {1, 10}, {kBlobSize / 2, 65536}, {kBlobSize - 100, 100},
      {kBlobSize - 10, 1000},  // runs past the end: what there is
      {kBlobSize - 5, ByteRange::kToEnd}, {7, ByteRange::kToEnd}, {3, 0}};
  for (auto [off, len] : ranges) {
    auto r = storage_->ReadRange(Uri("conformance/blob.bin"), {off, len});
    ASSERT_TRUE(r.ok()) << off << "+" << len << ": " << r.status().ToString();
    EXPECT_EQ(S(*r), BlobRange(off, len)) << off << "+" << len;
  }
  auto bad = storage_->ReadRange(Uri("conformance/blob.bin"), {-1, 5});
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument) << bad.status().ToString();
  bad = storage_->ReadRange(Uri("conformance/blob.bin"), {5, -1});
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument) << bad.status().ToString();
}

TEST_P(StorageConformance, RangePastTheEndIsEmpty) {
  for (int64_t off : {kBlobSize, kBlobSize + 1, kBlobSize + 1000000}) {
    auto r = storage_->ReadRange(Uri("conformance/blob.bin"), {off, 10});
    ASSERT_TRUE(r.ok()) << off << ": " << r.status().ToString();
    EXPECT_TRUE(r->empty()) << off;
  }
}

TEST_P(StorageConformance, EmptyObject) {
  auto r = storage_->Read(Uri("conformance/empty.bin"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->empty());
  for (ByteRange range : {ByteRange{0, 10}, ByteRange{5, 5}, ByteRange{0, ByteRange::kToEnd}}) {
    auto part = storage_->ReadRange(Uri("conformance/empty.bin"), range);
    ASSERT_TRUE(part.ok()) << range.offset << ": " << part.status().ToString();
    EXPECT_TRUE(part->empty());
  }
}

TEST_P(StorageConformance, MissingObjectIsNotFoundNamingTheUri) {
  const std::string uri = Uri("conformance/missing.bin");
  auto r = storage_->Read(uri);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound) << r.status().ToString();
  // The URI, or for files the path it names.
  const std::string named = GetParam() == "file" ? FileStorage::ToPath(uri) : uri;
  EXPECT_NE(r.status().message().find(named), std::string::npos) << r.status().message();
  auto part = storage_->ReadRange(uri, {0, 10});
  EXPECT_EQ(part.status().code(), StatusCode::kNotFound) << part.status().ToString();
  EXPECT_EQ(storage_->counters().retries, 0);
}

TEST_P(StorageConformance, PermissionDenied) {
  if (!backend_->CheckDenied()) GTEST_SKIP() << GetParam() << " cannot refuse a read here";
}

// A read whose stop is requested before it starts never reads.
TEST_P(StorageConformance, StoppedBeforeStartIsCancelled) {
  std::stop_source stop;
  stop.request_stop();
  const int64_t before = storage_->counters().bytes_read;
  std::promise<Result<Bytes>> p;
  storage_->ReadAsync(Uri("conformance/blob.bin"), [&p](Result<Bytes> r) { p.set_value(std::move(r)); },
                      stop.get_token());
  auto r = p.get_future().get();
  EXPECT_EQ(r.status().code(), StatusCode::kCancelled) << r.status().ToString();
  std::promise<Result<Bytes>> q;
  storage_->ReadRangeAsync(Uri("conformance/blob.bin"), {0, 10},
                           [&q](Result<Bytes> r) { q.set_value(std::move(r)); }, stop.get_token());
  r = q.get_future().get();
  EXPECT_EQ(r.status().code(), StatusCode::kCancelled) << r.status().ToString();
  EXPECT_EQ(storage_->counters().bytes_read, before);
}

// Reads in flight against a server that never answers (every timeout very
// large): only the stop ends them. Each ends Cancelled, on the backend's
// thread (requesting stop here, under a lock their callbacks take, would
// deadlock otherwise), its connection is closed (the server sees it), and a
// body cut off mid-way goes back to the recycler.
TEST_P(StorageConformance, CancellationEndsReadsInFlight) {
  auto stalled = backend_->MakeStalled();
  if (!stalled) GTEST_SKIP() << GetParam() << " reads never wait (covered by StoppedBeforeStart)";
  constexpr int kReads = 12;
  std::stop_source stop;
  std::mutex mu;  // held while requesting stop; the callbacks take it
  std::condition_variable cv;
  std::vector<Result<Bytes>> results;
  std::set<std::thread::id> threads;
  auto done = [&](Result<Bytes> r) {
    std::lock_guard<std::mutex> lock(mu);
    results.push_back(std::move(r));
    threads.insert(std::this_thread::get_id());
    cv.notify_all();
  };
  const std::string trickle = stalled->uri.substr(0, stalled->uri.find("silent/")) + "trickle/part.bin";
  for (int i = 0; i < kReads - 1; ++i) stalled->storage->ReadAsync(stalled->uri, done, stop.get_token());
  stalled->storage->ReadRangeAsync(trickle, {0, ByteRange::kToEnd}, done, stop.get_token());
  // All on the wire: the server has every request, and the client has the
  // head of the one whose body stops part way (so a buffer is being filled).
  if (!stalled->server->WaitUntil([&](int requests, int) { return requests == kReads; })) {
    ADD_FAILURE() << "the server did not get every request";
    stalled->storage->Shutdown();  // ends the reads before their captures go
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return results.size() == kReads; });
    return;
  }
  stalled->buffers->WaitForTakes(1);
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_TRUE(results.empty());
    EXPECT_EQ(stalled->storage->counters().in_flight, kReads);
    EXPECT_EQ(stalled->buffers->kept(), 0u);
    stop.request_stop();  // under mu: a callback run in here would deadlock
  }
  {
    // A safety bound only (nothing here is timed): a backend that ignores
    // the stop would otherwise hang the suite. Shutdown then ends the reads,
    // before their callbacks' captures go out of scope.
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, std::chrono::minutes(2), [&] { return results.size() == kReads; })) {
      ADD_FAILURE() << "the stop did not end the reads in flight";
      lock.unlock();
      stalled->storage->Shutdown();
      lock.lock();
      cv.wait(lock, [&] { return results.size() == kReads; });
      return;
    }
  }
  for (const auto& r : results) {
    EXPECT_EQ(r.status().code(), StatusCode::kCancelled) << r.status().ToString();
  }
  EXPECT_EQ(threads.count(std::this_thread::get_id()), 0u);
  // Every connection closed by the client.
  EXPECT_TRUE(stalled->server->WaitUntil([&](int, int closed) { return closed == kReads; }));
  EXPECT_EQ(stalled->server->closed_silent(), kReads);
  // The partly filled body went back.
  EXPECT_EQ(stalled->buffers->kept(), 1u);
  EXPECT_GE(stalled->buffers->kept_bytes(), ObjectServer::kTrickleSize);
  const auto c = stalled->storage->counters();
  EXPECT_EQ(c.in_flight, 0);
  EXPECT_EQ(c.cancelled, kReads);
  EXPECT_EQ(c.retries, 0);
}

TEST_P(StorageConformance, ManyInFlight) {
  constexpr int kReads = 300;
  const auto before = storage_->counters();
  std::mutex mu;
  std::condition_variable cv;
  int left = kReads;
  std::vector<std::string> got(kReads);
  std::vector<Status> errors(kReads);
  for (int i = 0; i < kReads; ++i) {
    const ByteRange range{static_cast<int64_t>(i) * 331, 100 + i};
    storage_->ReadRangeAsync(Uri("conformance/blob.bin"), range,
                             [&, i](Result<Bytes> r) {
                               std::lock_guard<std::mutex> lock(mu);
                               if (r.ok()) {
                                 got[i] = S(*r);
                                 storage_->Recycle(std::move(r).value());
                               } else {
                                 errors[i] = r.status();
                               }
                               if (--left == 0) cv.notify_all();
                             },
                             std::stop_token());
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return left == 0; });
  }
  for (int i = 0; i < kReads; ++i) {
    ASSERT_TRUE(errors[i].ok()) << i << ": " << errors[i].ToString();
    ASSERT_EQ(got[i], BlobRange(i * 331, 100 + i)) << i;
  }
  const auto c = storage_->counters();
  EXPECT_EQ(c.in_flight, 0);
  EXPECT_GE(c.requests - before.requests, kReads);
  EXPECT_GE(c.latency_us.count - before.latency_us.count, kReads);
}

TEST_P(StorageConformance, CoalescedRanges) {
  const std::vector<ByteRange> ranges = {
      {30, 5}, {10, 20}, {35, 100},  // adjacent: one request for [10, 135)
      {1000, 10},                    // 865 bytes further
      {kBlobSize - 3, 10},           // runs past the end
      {50, 0}};                      // nothing: no request
  auto check = [&](const Result<std::vector<Bytes>>& r) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->size(), ranges.size());
    for (size_t i = 0; i < ranges.size(); ++i) {
      EXPECT_EQ(S((*r)[i]), BlobRange(ranges[i].offset, ranges[i].length)) << i;
    }
  };
  int64_t before = storage_->counters().requests;
  check(storage_->ReadRanges(Uri("conformance/blob.bin"), ranges));
  EXPECT_EQ(storage_->counters().requests - before, 3);
  before = storage_->counters().requests;
  check(storage_->ReadRanges(Uri("conformance/blob.bin"), ranges, {.max_gap = 1000}));
  EXPECT_EQ(storage_->counters().requests - before, 2);
  auto missing = storage_->ReadRanges(Uri("conformance/missing.bin"), ranges);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound) << missing.status().ToString();
}

// ---- writing -----------------------------------------------------------------

Status PutText(Storage& s, const std::string& uri, std::string_view text) {
  return s.Put(uri, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()),
                                             text.size()));
}

// An object written in pieces (in parts, remotely: more than two parts'
// worth) is nowhere until Commit, then whole, readable and listed as
// itself alone (no temporary beside it); Delete removes it, and deleting
// it again is no error.
TEST_P(StorageConformance, WrittenObjectAppearsWholeAtCommit) {
  const std::string uri = Uri("conformance/written/obj.bin");
  if (!backend_->Writes()) {
    auto w = storage_->OpenWriter(uri, {});
    EXPECT_EQ(w.status().code(), StatusCode::kUnsupported);
    EXPECT_NE(w.status().message().find(uri), std::string::npos) << w.status().message();
    EXPECT_EQ(PutText(*storage_, uri, "x").code(), StatusCode::kUnsupported);
    EXPECT_EQ(storage_->Delete(uri).code(), StatusCode::kUnsupported);
    return;
  }
  const int64_t part = backend_->PartSize();
  std::string bytes(static_cast<size_t>(2 * part + part / 3 + 7), '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(BlobByte(i * 3 + 1));
  auto w = storage_->OpenWriter(uri, {.part_size = part, .parts_in_flight = 2});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  for (size_t at = 0; at < bytes.size(); at += 65537) {
    ASSERT_TRUE((*w)->Append(std::string_view(bytes).substr(at, 65537)).ok());
  }
  EXPECT_EQ((*w)->size(), static_cast<int64_t>(bytes.size()));
  EXPECT_EQ(storage_->Read(uri).status().code(), StatusCode::kNotFound);
  Status st = (*w)->Commit();
  ASSERT_TRUE(st.ok()) << st.ToString();
  auto r = storage_->Read(uri);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(S(*r) == bytes) << r->size() << " bytes";
  auto range = storage_->ReadRange(uri, {part - 3, 10});  // across a part boundary
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(S(*range), bytes.substr(static_cast<size_t>(part - 3), 10));
  auto listed = storage_->List(Uri("conformance/written/"));
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].key, "obj.bin");
  EXPECT_EQ((*listed)[0].size, static_cast<int64_t>(bytes.size()));
  ASSERT_TRUE(storage_->Delete(uri).ok());
  EXPECT_EQ(storage_->Read(uri).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(storage_->Delete(uri).ok());
}

// Put replaces an object whole; a writer aborted, or dropped uncommitted,
// leaves the earlier object as it was and nothing else.
TEST_P(StorageConformance, AbortedWritesLeaveTheEarlierObject) {
  if (!backend_->Writes()) GTEST_SKIP() << GetParam() << " does not write";
  const std::string uri = Uri("conformance/replaced/obj.bin");
  ASSERT_TRUE(PutText(*storage_, uri, "first version").ok());
  const int64_t part = backend_->PartSize();
  const std::string big(static_cast<size_t>(part + 1), 'b');  // in parts, remotely
  {
    auto w = storage_->OpenWriter(uri, {.part_size = part, .parts_in_flight = 2});
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(big).ok());
    ASSERT_TRUE((*w)->Append("more").ok());
    ASSERT_TRUE((*w)->Abort().ok());
  }
  {
    auto w = storage_->OpenWriter(uri, {.part_size = part, .parts_in_flight = 2});
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(big).ok());
    ASSERT_TRUE((*w)->Append("more").ok());
  }  // dropped
  auto r = storage_->Read(uri);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(S(*r), "first version");
  auto listed = storage_->List(Uri("conformance/replaced/"));
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].key, "obj.bin");
  ASSERT_TRUE(PutText(*storage_, uri, "second").ok());
  r = storage_->Read(uri);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(S(*r), "second");
  ASSERT_TRUE(storage_->Delete(uri).ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, StorageConformance,
                         ::testing::Values("memory", "file", "http", "http_curl", "s3", "s3_moto"),
                         [](const auto& info) { return info.param; });

// ---- pieces of the contract outside the backends ------------------------------

TEST(CoalesceRanges, MergesTouchingAndNearRangesAndKeepsTheAskedOrder) {
  const std::vector<ByteRange> ranges = {{100, 10}, {0, 10}, {10, 5}, {120, 5}, {5, 2}, {7, 0}};
  auto reqs = CoalesceRanges(ranges, {});
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[0].range, (ByteRange{0, 15}));
  EXPECT_EQ(reqs[0].parts, (std::vector<size_t>{1, 4, 2}));
  EXPECT_EQ(reqs[1].range, (ByteRange{100, 10}));
  EXPECT_EQ(reqs[2].range, (ByteRange{120, 5}));
  reqs = CoalesceRanges(ranges, {.max_gap = 10});
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[1].range, (ByteRange{100, 25}));
  EXPECT_EQ(reqs[1].parts, (std::vector<size_t>{0, 3}));
  reqs = CoalesceRanges(ranges, {.max_gap = 1000, .max_request = 50});
  ASSERT_EQ(reqs.size(), 2u);  // [0, 15) and [100, 125): together they would be 125
}

TEST(StorageRegistry, BuiltinSchemesAndOneRegisteredByATest) {
  const auto schemes = RegisteredSchemes();
  for (const char* s : {"file", "http", "https", "s3"}) {
    EXPECT_NE(std::find(schemes.begin(), schemes.end(), s), schemes.end()) << s;
  }
  auto mem = std::make_shared<MemoryStorage>();
  mem->Put("mem://b/x", "xyz");
  RegisterStorage("mem", [mem](const std::string&, const StorageOptions&) {
    return Result<std::shared_ptr<Storage>>(mem);
  });
  auto s = OpenStorage("MEM://b/");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto r = (*s)->Read("mem://b/x");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(S(*r), "xyz");
  auto range = (*s)->ReadRange("mem://b/x", {1, 5});
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(S(*range), "yz");
  auto unknown = OpenStorage("gopher://host/x");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(unknown.status().message().find("gopher://host/x"), std::string::npos);
  // The schemes offered, sorted (other tests of this binary may have
  // registered more before this one runs).
  const std::string& m = unknown.status().message();
  const size_t open = m.find("(supported: "), close = m.rfind(')');
  ASSERT_TRUE(open != std::string::npos && close != std::string::npos && close > open) << m;
  std::vector<std::string> offered;
  std::string rest = m.substr(open + 12, close - open - 12);
  for (size_t comma; (comma = rest.find(", ")) != std::string::npos; rest.erase(0, comma + 2)) {
    offered.push_back(rest.substr(0, comma));
  }
  offered.push_back(rest);
  EXPECT_TRUE(std::is_sorted(offered.begin(), offered.end())) << m;
  for (const char* s : {"file", "http", "https", "mem", "s3"}) {
    EXPECT_NE(std::find(offered.begin(), offered.end(), s), offered.end()) << s << " in " << m;
  }
}

// A server that ignores Range and sends the whole object: the range is cut
// out of it, the same bytes as from a 206.
TEST(HttpRanges, ServerWithoutRangeSupportGivesTheSameBytes) {
  ObjectServer server;
  server.Put("/o", BlobBytes());
  server.set_ignore_range(true);
  http::HttpStorage storage;
  for (ByteRange r : {ByteRange{0, 10}, ByteRange{500, 70000}, ByteRange{kBlobSize - 3, 10},
                      ByteRange{kBlobSize + 5, 10}}) {
    auto got = storage.ReadRange(server.origin() + "/o", r);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(S(*got), BlobRange(r.offset, r.length)) << r.offset;
  }
}

}  // namespace
}  // namespace stoker::storage::testing
