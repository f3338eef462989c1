// Storage: where sample bytes come from. Backends are chosen by URI scheme
// (a plain path or file:// today; s3:// and http(s):// plug in the same way).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <vector>

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

// Counters every backend keeps; read by the pipeline's stats.
struct StorageCounters {
  int64_t requests = 0;
  int64_t bytes_read = 0;
  int64_t retries = 0;
  int64_t timeouts = 0;  // attempts aborted by a timeout
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

  // Hands back a buffer a read returned, once its bytes are no longer
  // needed, so a backend can reuse its capacity for the next read: steady
  // state then allocates no sample-sized blocks (which fragment malloc's
  // per-thread arenas and make resident memory creep). Optional.
  virtual void Recycle(Bytes bytes) { (void)bytes; }

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

struct StorageOptions {
  // Overrides the S3 endpoint (e.g. http://127.0.0.1:9000 for MinIO or moto).
  std::string endpoint_url;
  // Timeouts and retries of remote backends (S3, http).
  IoOptions io;
};

// The backend for `uri`'s scheme. Plain paths and file:// are local files.
Result<std::shared_ptr<Storage>> OpenStorage(const std::string& uri,
                                             const StorageOptions& options = {});

// True if `uri` names a local path or file:// URI.
bool IsLocal(const std::string& uri);

}  // namespace stoker::storage
