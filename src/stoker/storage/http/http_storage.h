// Plain http:// and https:// URLs (a manifest whose paths are URLs, a
// public dataset behind a web server): GET with the same many-in-flight
// dispatcher and retries as S3, no signing. Redirects (301, 302, 303, 307,
// 308) are followed, up to 5 hops. Cannot list.
#pragma once

#include <atomic>
#include <memory>

#include "stoker/storage/http/epoll_transport.h"
#include "stoker/storage/http/dispatcher.h"
#include "stoker/storage/meters.h"
#include "stoker/storage/storage.h"

namespace stoker::storage::http {

class HttpStorage final : public Storage {
 public:
  explicit HttpStorage(std::unique_ptr<Transport> transport = NewTransport(),
                       const DispatcherOptions& options = {});
  // Cancels what is still in flight (see Dispatcher::Shutdown).
  ~HttpStorage() override;
  void Shutdown() override;

  // Unsupported: HTTP has no listing; use a manifest.
  Result<std::vector<ObjectInfo>> List(const std::string& prefix_uri) override;
  // Blocks; do not call from a ReadAsync callback.
  Result<Bytes> Read(const std::string& uri) override;
  void ReadAsync(const std::string& uri, ReadCallback done) override;
  // A stopped read's request is taken off the wire (storage.h).
  void ReadAsync(const std::string& uri, ReadCallback done, std::stop_token stop) override;
  // GET with a Range header (range.h says how each reply is read).
  void ReadRangeAsync(const std::string& uri, ByteRange range, ReadCallback done,
                      std::stop_token stop) override;
  void Recycle(Bytes bytes) override { buffers_->Put(std::move(bytes)); }
  std::string Join(const std::string& base, const std::string& key) const override;
  StorageCounters counters() const override;

  // Where bodies are received into and handed back to (tests).
  const BufferRecycler& buffers() const { return *buffers_; }

 private:
  void Get(const std::string& uri, const ByteRange* range, ReadCallback done, std::stop_token stop);

  std::shared_ptr<Dispatcher> dispatcher_;
  // Shared with callbacks that may outlive this object.
  std::shared_ptr<StorageMeters> meters_ = std::make_shared<StorageMeters>();
  std::shared_ptr<BufferRecycler> buffers_ = std::make_shared<BufferRecycler>();
};

// What a plain HTTP reply means: done on 2xx, retry on transient failures,
// NotFound on 404/410, PermissionDenied on 401/403, IOError otherwise.
Verdict ClassifyHttpReply(const Response& reply, const std::string& uri);

}  // namespace stoker::storage::http
