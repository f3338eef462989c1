// Local files: plain paths and file:// URIs.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "stoker/storage/storage.h"

namespace stoker::storage {

class FileStorage final : public Storage {
 public:
  Result<std::vector<ObjectInfo>> List(const std::string& prefix_uri) override;
  Result<Bytes> Read(const std::string& uri) override;
  std::string Join(const std::string& base, const std::string& key) const override;
  void Recycle(Bytes bytes) override;
  StorageCounters counters() const override;

  // "file:///a/b" -> "/a/b"; plain paths unchanged.
  static std::string ToPath(const std::string& uri);

 private:

  std::atomic<int64_t> requests_{0};
  BufferRecycler buffers_;
  std::atomic<int64_t> bytes_read_{0};
};

}  // namespace stoker::storage
