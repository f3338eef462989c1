// S3 and S3-compatible object stores: s3://bucket/prefix/ and s3://bucket/key.
//
//   ReadAsync ──► Dispatcher (FIFO, adaptive in-flight limit, retries) ──►
//   curl multi on one I/O thread ──► callback on that thread
//
// Configuration comes from the environment and ~/.aws the way the AWS CLI
// reads it (config.h); StorageOptions.endpoint_url overrides the endpoint.
// Errors name the URI, bucket, key, HTTP status, S3 error code and message;
// never credentials.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "stoker/storage/http/epoll_transport.h"
#include "stoker/storage/http/dispatcher.h"
#include "stoker/storage/s3/config.h"
#include "stoker/storage/meters.h"
#include "stoker/storage/s3/request.h"
#include "stoker/storage/storage.h"

namespace stoker::storage::s3 {

struct S3Options {
  http::DispatcherOptions dispatch;
  http::CurlOptions curl;
};

struct ObjectMeta {
  int64_t size = -1;
  std::string etag;
};

class S3Writer;

class S3Storage final : public Storage {
 public:
  // Resolves the configuration (config.h) and starts the I/O thread, with
  // the timeouts and retries of options.io (and AWS_MAX_ATTEMPTS).
  static Result<std::shared_ptr<S3Storage>> Open(const StorageOptions& options);
  // Cancels what is still in flight (see Dispatcher::Shutdown).
  ~S3Storage() override;
  void Shutdown() override;
  // The same with transport and dispatcher options given whole (tests).
  static Result<std::shared_ptr<S3Storage>> Open(const StorageOptions& options,
                                                 const S3Options& s3);
  // With a resolved configuration and a transport of the caller's (tests).
  static Result<std::shared_ptr<S3Storage>> Create(const S3Config& config,
                                                   std::unique_ptr<http::Transport> transport,
                                                   const S3Options& s3 = {});

  // Every object under `prefix_uri` (ListObjectsV2, all pages), keys
  // relative to the prefix, sorted; "folder" markers (keys ending in '/')
  // left out. "s3://b/train" lists "train/". NotFound when nothing is there.
  Result<std::vector<ObjectInfo>> List(const std::string& prefix_uri) override;

  // Whole object. Blocks; do not call from a ReadAsync callback.
  Result<Bytes> Read(const std::string& uri) override;

  // Queues a GET and returns at once; `done` runs on the I/O thread.
  void ReadAsync(const std::string& uri, ReadCallback done) override;
  // A stopped read leaves the queue, or its request the wire (storage.h).
  void ReadAsync(const std::string& uri, ReadCallback done, std::stop_token stop) override;
  // GET with a (signed) Range header; http/range.h says how replies are read.
  void ReadRangeAsync(const std::string& uri, ByteRange range, ReadCallback done,
                      std::stop_token stop) override;
  // Object bodies come back here and are filled again by later reads.
  void Recycle(Bytes bytes) override { buffers_->Put(std::move(bytes)); }
  const BufferRecycler& buffers() const { return *buffers_; }

  // HEAD: the object's size and ETag.
  Result<ObjectMeta> Head(const std::string& uri);

  // Writing (storage.h's contract). An object of at most
  // options.part_size bytes goes by one PutObject at Commit; a larger one
  // by a multipart upload: CreateMultipartUpload when the first part is
  // full, each part sent (UploadPart) as soon as the next byte comes, at
  // most options.parts_in_flight at once, CompleteMultipartUpload at
  // Commit. An error aborts the upload (AbortMultipartUpload), so its parts
  // are deleted. Every request is signed with its body's SHA-256
  // (x-amz-content-sha256) and retried as reads are. The storage must
  // outlive its writers; their calls block (never call one from a read's
  // callback).
  Result<std::unique_ptr<ObjectWriter>> OpenWriter(const std::string& uri,
                                                   const WriteOptions& options) override;
  // One PutObject, whatever the size (S3 takes up to 5 GB in one).
  Status Put(const std::string& uri, std::span<const uint8_t> bytes) override;
  // DeleteObject (S3 answers a missing key with 204 too).
  Status Delete(const std::string& uri) override;

  std::string Join(const std::string& base, const std::string& key) const override;
  StorageCounters counters() const override;
  http::DispatcherStats dispatcher_stats() const { return dispatcher_->stats(); }
  const S3Config& config() const { return builder_->config(); }

 private:
  S3Storage(std::shared_ptr<const RequestBuilder> builder,
            std::shared_ptr<http::Dispatcher> dispatcher);
  // GET or HEAD of `uri` with `headers`; `done` gets the 2xx response.
  // `recycled_body`: receive the body into a recycled buffer.
  // `range`: a range request (a 416 reply is then an answer, not an error).
  void Send(const std::string& method, const std::string& uri, http::Headers headers,
            std::function<void(Result<http::Response>)> done, bool recycled_body = false,
            std::stop_token stop = {}, bool range = false);
  void Get(const std::string& uri, const ByteRange* range, ReadCallback done, std::stop_token stop);

  friend class S3Writer;
  // A request that writes: `method` on `where` with `query` and `body`
  // (may be null), signed with the body's hash. `done` gets the 2xx reply,
  // or the error with `op` (e.g. "UploadPart 3") named. `check_body`: a 2xx
  // reply whose body is an <Error> is that error (CompleteMultipartUpload
  // can answer so).
  void SendWrite(const std::string& method, const std::string& uri, const S3Uri& where,
                 QueryParams query, std::shared_ptr<const std::string> body, const std::string& op,
                 bool check_body, std::function<void(Result<http::Response>)> done,
                 std::stop_token stop = {});
  // The same, blocking.
  Result<http::Response> Write(const std::string& method, const std::string& uri,
                               const S3Uri& where, QueryParams query,
                               std::shared_ptr<const std::string> body, const std::string& op,
                               bool check_body = false);

  std::shared_ptr<const RequestBuilder> builder_;
  std::shared_ptr<http::Dispatcher> dispatcher_;
  // Shared with callbacks that may outlive this object.
  std::shared_ptr<StorageMeters> meters_ = std::make_shared<StorageMeters>();
  std::shared_ptr<BufferRecycler> buffers_ = std::make_shared<BufferRecycler>();
};

// The S3Options for a Loader's IoOptions: its timeouts, its max_attempts or
// else the configured one (AWS_MAX_ATTEMPTS, profile), its io_timeout.
S3Options S3OptionsFor(const IoOptions& io, const S3Config& config);

// What a reply means for a request on `uri` (bucket `bucket`, key `key`):
// done on 2xx; retry on timeouts, resets, 500/502/503/504/429 and
// SlowDown-like codes; otherwise fail with NotFound (404, NoSuchKey,
// NoSuchBucket), PermissionDenied (401, 403), InvalidArgument (400, 416) or
// IOError. `credentials` are scrubbed from the message, `credentials_source`
// added to permission errors.
http::Verdict ClassifyS3Reply(const http::Response& reply, const std::string& uri,
                              const S3Uri& where, const S3Config& config);

}  // namespace stoker::storage::s3
