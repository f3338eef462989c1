// Local files: plain paths and file:// URIs.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "stoker/storage/meters.h"
#include "stoker/storage/storage.h"

namespace stoker::storage {

class FileStorage final : public Storage {
 public:
  Result<std::vector<ObjectInfo>> List(const std::string& prefix_uri) override;
  Result<Bytes> Read(const std::string& uri) override;
  using Storage::ReadAsync;
  // Reads at once, on the caller's thread; Cancelled without reading if
  // `stop` was requested.
  void ReadAsync(const std::string& uri, ReadCallback done, std::stop_token stop) override;
  // pread of the range only.
  void ReadRangeAsync(const std::string& uri, ByteRange range, ReadCallback done,
                      std::stop_token stop) override;
  Result<Bytes> ReadRangeNow(const std::string& uri, ByteRange range);
  // Writes to a temporary file beside the target (".<name>.tmp-XXXXXX",
  // created with its missing parent folders), renamed over the target on
  // Commit after an fsync of the file (and then of its folder).
  Result<std::unique_ptr<ObjectWriter>> OpenWriter(const std::string& uri,
                                                   const WriteOptions& options) override;
  // unlink(2); a missing file is not an error.
  Status Delete(const std::string& uri) override;
  std::string Join(const std::string& base, const std::string& key) const override;
  void Recycle(Bytes bytes) override;
  StorageCounters counters() const override;

  // "file:///a/b" -> "/a/b"; plain paths unchanged.
  static std::string ToPath(const std::string& uri);

  const BufferRecycler& buffers() const { return buffers_; }

 private:
  Result<Bytes> ReadWhole(const std::string& path);

  BufferRecycler buffers_;
  StorageMeters meters_;
};

}  // namespace stoker::storage
