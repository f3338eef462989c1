// Local files: plain paths and file:// URIs.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <stop_token>
#include <vector>

#include "stoker/storage/storage.h"

namespace stoker::storage {

class FileStorage final : public Storage {
 public:
  Result<std::vector<ObjectInfo>> List(const std::string& prefix_uri) override;
  Result<Bytes> Read(const std::string& uri) override;
  // Regular files are read at once. Anything else (a FIFO, a character
  // device) is read without blocking, waiting in slices of kPollMs between
  // checks of `stop`, so a Stop() never waits on a writer that never comes.
  Result<Bytes> Read(const std::string& uri, std::stop_token stop);
  using Storage::ReadAsync;
  void ReadAsync(const std::string& uri, ReadCallback done, std::stop_token stop) override {
    done(Read(uri, std::move(stop)));
  }
  std::string Join(const std::string& base, const std::string& key) const override;
  void Recycle(Bytes bytes) override;
  StorageCounters counters() const override;

  // "file:///a/b" -> "/a/b"; plain paths unchanged.
  static std::string ToPath(const std::string& uri);

  static constexpr int kPollMs = 50;

 private:
  Bytes TakeBuffer();

  std::atomic<int64_t> requests_{0};
  std::mutex free_mu_;
  std::vector<Bytes> free_;  // recycled read buffers (capacity kept)
  std::atomic<int64_t> bytes_read_{0};
};

}  // namespace stoker::storage
