// Storage: where sample bytes come from. Backends are chosen by URI scheme
// (registry.h: plain paths and file://, s3://, http:// and https://).
//
// One contract for every backend, checked by one conformance suite
// (testing/conformance_test.cc) against each of them:
//   - Read/ReadAsync: the whole object. ReadRange/ReadRangeAsync: bytes
//     [offset, offset + length) of it, clamped to the object like pread(2):
//     fewer bytes if the object ends sooner, none if it ends at or before
//     `offset` (an empty object gives none for any range). length 0 asks for
//     nothing and sends no request; ByteRange::kToEnd asks for all from
//     offset on. A negative offset or length is InvalidArgument.
//   - Errors name the URI. A missing object is NotFound, a refused one
//     PermissionDenied, whole or range alike.
//   - A read whose stop token is requested before it completes ends with
//     Cancelled: a remote request is taken off the wire (its connection
//     closed) and the buffer it was filling goes back to the backend's
//     recycler. The callback then runs on the backend's own thread (never
//     inside request_stop()), so a caller may request stop under a lock its
//     callbacks take.
//   - Writes (file, S3, in-memory; docs/storage.md, "Writing"): an object
//     written through an ObjectWriter (or Put) appears only when committed,
//     whole, replacing any earlier object of its URI; until then readers
//     see the earlier object or none. A writer aborted, failed or destroyed
//     uncommitted leaves no trace of its bytes and the earlier object as it
//     was. Delete of a missing object succeeds.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "stoker/base/histogram.h"
#include "stoker/options.h"
#include "stoker/status.h"
#include "stoker/storage/buffer_recycler.h"

namespace stoker::storage {

// Sample bytes: large-buffer memory (stoker/base/large_alloc.h), and a
// resize() that does not zero what the read overwrites.
using Bytes = BufferRecycler::Bytes;

struct ObjectInfo {
  std::string key;   // path relative to the listed prefix, '/'-separated
  int64_t size = -1; // -1 when unknown
};

// Counters every backend keeps (atomics: nothing on the read path takes a
// lock for them); read by the pipeline's stats.
struct StorageCounters {
  int64_t requests = 0;  // requests sent (remote: attempts, retries included)
  int64_t bytes_read = 0;
  int64_t retries = 0;
  int64_t timeouts = 0;  // attempts aborted by a timeout
  int64_t in_flight = 0;  // reads asked for and not yet completed (now)
  int64_t cancelled = 0;  // reads that ended with Cancelled
  // Latency of each request (remote: each attempt, from sending it to its
  // outcome), in microseconds: latency.Percentile(0.99) is the p99.
  HistogramSnapshot latency_us;
  // A cache in front of the storage (storage/cache/): reads it answered,
  // reads it passed on, bytes it holds in memory and on disk, entries found
  // corrupt (read again from storage), and reads not kept because the
  // budget was full or the disk writer was behind.
  int64_t cache_hits = 0;
  int64_t cache_misses = 0;
  int64_t cache_memory_bytes = 0;
  int64_t cache_disk_bytes = 0;
  int64_t cache_corrupt = 0;
  int64_t cache_not_kept = 0;

  // Adds `other`'s counts to these (a storage made of several backends).
  void Add(const StorageCounters& other);
};

// Bytes [offset, offset + length) of an object; length kToEnd: to its end.
struct ByteRange {
  static constexpr int64_t kToEnd = INT64_MAX;
  int64_t offset = 0;
  int64_t length = 0;
  // offset + length, saturated at kToEnd.
  int64_t End() const { return length > kToEnd - offset ? kToEnd : offset + length; }
  bool operator==(const ByteRange&) const = default;
};

// How ReadRanges groups ranges into requests.
struct CoalesceOptions {
  // Ranges (sorted by offset) whose gap is at most this many bytes share one
  // request; the gap's bytes are read and dropped. 0: only adjacent or
  // overlapping ranges.
  int64_t max_gap = 0;
  // A merged request grows no larger than this (a single range larger than
  // it is still read whole, in one request).
  int64_t max_request = int64_t{64} << 20;
};

// How an ObjectWriter uploads (remote backends; local files ignore it).
struct WriteOptions {
  // S3: an object of at most this many bytes is sent by one PutObject when
  // committed; a larger one by a multipart upload in parts of exactly this
  // size (the last one smaller), each sent as soon as it is full, so the
  // writer never holds more than about part_size * (parts_in_flight + 1)
  // bytes. S3 wants parts of 5 MiB or more (but the last); at most 10,000
  // parts, so an object is at most 10,000 * part_size bytes.
  int64_t part_size = int64_t{16} << 20;
  // Parts uploading at once; Append waits while this many are on the way.
  int parts_in_flight = 4;
};

// One object being written: Append its bytes in order, then Commit. Not
// thread-safe (one writer, one thread); the storage that opened it must
// outlive it. After an error every later call returns it, and the writer
// has already aborted.
class ObjectWriter {
 public:
  // Aborts, unless committed or aborted already.
  virtual ~ObjectWriter() = default;

  // Adds `bytes` after those appended so far. Remote backends may upload
  // here (a part once it is full); errors name the URI and the reason.
  virtual Status Append(std::span<const uint8_t> bytes) = 0;
  Status Append(std::string_view bytes) {
    return Append(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()),
                                           bytes.size()));
  }

  // Makes the object visible, whole, under its URI (replacing an earlier
  // one): local files are synced and renamed into place, S3's PutObject or
  // CompleteMultipartUpload is sent. On failure nothing of it is visible
  // (the writer aborts) and the error names the URI. Once.
  virtual Status Commit() = 0;

  // Drops what was written: the temporary file is removed, an S3 multipart
  // upload aborted (its parts deleted). Idempotent; a no-op after Commit.
  // An error (the abort request failed: the parts stay until the bucket's
  // lifecycle rule removes them) names the URI and the upload.
  virtual Status Abort() = 0;

  // Bytes appended so far.
  int64_t size() const { return size_; }
  const std::string& uri() const { return uri_; }

 protected:
  explicit ObjectWriter(std::string uri) : uri_(std::move(uri)) {}
  int64_t size_ = 0;

 private:
  const std::string uri_;
};

class Storage {
 public:
  virtual ~Storage() = default;

  // Every object under `prefix_uri` (recursively), sorted by key. Fails with
  // the URI and the reason if the prefix cannot be listed.
  virtual Result<std::vector<ObjectInfo>> List(const std::string& prefix_uri) = 0;

  // Whole object. Errors name the URI.
  virtual Result<Bytes> Read(const std::string& uri) = 0;

  // Starts reading `uri`; calls `done` exactly once, possibly before
  // returning and possibly on another thread. Backends with real latency keep
  // many reads in flight; the default reads synchronously.
  using ReadCallback = std::function<void(Result<Bytes>)>;
  virtual void ReadAsync(const std::string& uri, ReadCallback done) { done(Read(uri)); }

  // As above, for a caller that may give up: once `stop` is requested, a read
  // that could otherwise block without end (a FIFO or pipe nobody writes)
  // finishes with Cancelled, so a stopped pipeline never waits on storage.
  // Backends whose ReadAsync never blocks the caller need not override it.
  virtual void ReadAsync(const std::string& uri, ReadCallback done, std::stop_token stop) {
    (void)stop;
    ReadAsync(uri, std::move(done));
  }

  // Bytes [range.offset, range.offset + range.length) of `uri`, clamped to
  // the object (see the contract at the top of this file); `done` as for
  // ReadAsync. The default reads the whole object and keeps the range (for
  // storages with no cheaper way); every shipped backend reads only the range.
  virtual void ReadRangeAsync(const std::string& uri, ByteRange range, ReadCallback done,
                              std::stop_token stop);
  // Blocks; do not call from a ReadAsync callback.
  Result<Bytes> ReadRange(const std::string& uri, ByteRange range);

  // Several ranges of one object. Ranges that touch, overlap or lie within
  // options.max_gap bytes of each other are read with one request; `done`
  // gets one buffer per range asked for, in the order asked, or the first
  // error. Each buffer holds exactly what ReadRange would return for its
  // range.
  using RangesCallback = std::function<void(Result<std::vector<Bytes>>)>;
  void ReadRangesAsync(const std::string& uri, std::vector<ByteRange> ranges, RangesCallback done,
                       std::stop_token stop, const CoalesceOptions& options = {});
  Result<std::vector<Bytes>> ReadRanges(const std::string& uri, std::vector<ByteRange> ranges,
                                        const CoalesceOptions& options = {});

  // Hands back a buffer a read returned, once its bytes are no longer
  // needed, so a backend can reuse its capacity for the next read: steady
  // state then allocates no sample-sized blocks (which fragment malloc's
  // per-thread arenas and make resident memory creep). Optional.
  virtual void Recycle(Bytes bytes) { (void)bytes; }

  // ---- writing (see the contract at the top of this file) ----

  // A writer for the object at `uri`; nothing is visible there until its
  // Commit. Local files: missing parent folders are created. Backends that
  // cannot write (http) answer Unsupported, naming the URI.
  virtual Result<std::unique_ptr<ObjectWriter>> OpenWriter(const std::string& uri,
                                                           const WriteOptions& options);

  // The whole object at once: S3 sends it in one PutObject whatever its
  // size, so it appears atomically; others write and commit a writer.
  virtual Status Put(const std::string& uri, std::span<const uint8_t> bytes);

  // Removes the object at `uri`. A missing object is not an error; a
  // missing S3 bucket is NotFound (NoSuchBucket). Unsupported by backends
  // that cannot write.
  virtual Status Delete(const std::string& uri);

  // Joins `base` (a prefix URI) and a relative key into an object URI.
  virtual std::string Join(const std::string& base, const std::string& key) const = 0;

  virtual StorageCounters counters() const = 0;

  // The owner is done with this storage: reads still in flight or waiting
  // to be retried end now (their callbacks run with Cancelled) and later
  // ones fail at once. Backends with background threads (S3, HTTP) need it:
  // a pending read's callback can hold its owner, which holds the storage,
  // so the storage would otherwise live, and retry, until its deadline.
  virtual void Shutdown() {}
};

// A storage in front of another (a cache, a fault injector): what it does
// not override goes to `inner`; Read waits for ReadAsync (so it must not be
// called from a callback of this storage).
class StorageDecorator : public Storage {
 public:
  explicit StorageDecorator(std::shared_ptr<Storage> inner) : inner_(std::move(inner)) {}

  Result<std::vector<ObjectInfo>> List(const std::string& prefix_uri) override {
    return inner_->List(prefix_uri);
  }
  Result<Bytes> Read(const std::string& uri) override;
  void ReadAsync(const std::string& uri, ReadCallback done) override {
    ReadAsync(uri, std::move(done), std::stop_token());
  }
  void ReadAsync(const std::string& uri, ReadCallback done, std::stop_token stop) override = 0;
  void Recycle(Bytes bytes) override { inner_->Recycle(std::move(bytes)); }
  std::string Join(const std::string& base, const std::string& key) const override {
    return inner_->Join(base, key);
  }
  StorageCounters counters() const override { return inner_->counters(); }
  void Shutdown() override { inner_->Shutdown(); }
  Result<std::unique_ptr<ObjectWriter>> OpenWriter(const std::string& uri,
                                                   const WriteOptions& options) override {
    return inner_->OpenWriter(uri, options);
  }
  Status Delete(const std::string& uri) override { return inner_->Delete(uri); }

 protected:
  const std::shared_ptr<Storage> inner_;
};

struct StorageOptions {
  // Overrides the S3 endpoint (e.g. http://127.0.0.1:9000 for MinIO or moto).
  std::string endpoint_url;
  // Timeouts and retries of remote backends (S3, http).
  IoOptions io;
};

// The requests ReadRangesAsync sends for `ranges`: each a (merged) range and
// the indices of the asked ranges it serves. Exposed for tests.
struct CoalescedRequest {
  ByteRange range;
  std::vector<size_t> parts;
};
std::vector<CoalescedRequest> CoalesceRanges(const std::vector<ByteRange>& ranges,
                                             const CoalesceOptions& options);

// Checks a range asked of `uri`: InvalidArgument for a negative offset or
// length.
Status CheckRange(const std::string& uri, ByteRange range);

// For a ReadRangeAsync: answers `done` at once when the range needs no read
// (a bad range: its error; an empty one: no bytes) and returns true.
bool AnswerWithoutReading(const std::string& uri, ByteRange range,
                          Storage::ReadCallback& done);

// Keeps bytes [range.offset, range.offset + range.length) of a whole
// object's `bytes`, clamped; in place (no copy of the kept bytes elsewhere).
void KeepRange(Bytes& bytes, ByteRange range);

// A storage for `uri`: plain paths and file:// are local files, the other
// schemes are those registered (registry.h). A storage opened here routes
// each URI to the backend of its scheme.
Result<std::shared_ptr<Storage>> OpenStorage(const std::string& uri,
                                             const StorageOptions& options = {});

// True if `uri` names a local path or file:// URI.
bool IsLocal(const std::string& uri);

}  // namespace stoker::storage
