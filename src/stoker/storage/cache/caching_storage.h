// A cache in front of a storage (docs/cache-format.md): the encoded bytes of
// reads, in memory and/or in a local directory, each within a budget.
//
// Policy: a read is kept while the budget has room, and nothing is ever
// evicted. With a fresh permutation every epoch that is the best a cache can
// do (every epoch hits exactly the kept fraction), where LRU keeps the most
// recent reads and those come back last, if at all. Memory fills first, then
// the disk; a disk hit is copied into memory while memory has room.
//
// The disk directory is private (created mode 0700, refused if another user
// owns it) and may be shared by the processes of one node: each entry is
// written to a temporary file and renamed into place, so a reader sees a
// whole entry or none, and every entry is checked (key, length, CRC-32C)
// when read; a bad one is deleted, counted and read from storage again. The
// bytes entries take are counted in one file under an flock, so processes
// sharing the directory share its budget.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "stoker/options.h"
#include "stoker/storage/buffer_recycler.h"
#include "stoker/storage/storage.h"

namespace stoker::storage::cache {

class DiskCache;

class CachingStorage final : public StorageDecorator,
                             public std::enable_shared_from_this<CachingStorage> {
 public:
  // Errors: a cache directory that cannot be made or used (names it and
  // says why), a negative budget.
  static Result<std::shared_ptr<CachingStorage>> Open(std::shared_ptr<Storage> inner,
                                                      const CacheOptions& options);
  ~CachingStorage() override;

  using StorageDecorator::ReadAsync;
  void ReadAsync(const std::string& uri, ReadCallback done, std::stop_token stop) override;
  void ReadRangeAsync(const std::string& uri, ByteRange range, ReadCallback done,
                      std::stop_token stop) override;
  void Recycle(Bytes bytes) override;
  StorageCounters counters() const override;

  // Waits until every entry handed to the disk writer is written (tests).
  void Flush();

 private:
  CachingStorage(std::shared_ptr<Storage> inner, const CacheOptions& options);

  // The cached bytes for `key`, or nullopt.
  std::optional<Bytes> Lookup(const std::string& key);
  // Keeps a copy of a read's bytes, if a budget has room.
  void Admit(const std::string& key, const Bytes& bytes);
  bool KeepInMemory(const std::string& key, std::span<const uint8_t> bytes);
  ReadCallback Keeping(std::string key, ReadCallback done);

  CacheOptions options_;
  std::unique_ptr<DiskCache> disk_;

  mutable std::mutex mu_;
  std::unordered_map<std::string, std::vector<uint8_t>> memory_;
  int64_t memory_used_ = 0;
  BufferRecycler recycler_;

  std::atomic<int64_t> hits_{0}, misses_{0}, not_kept_{0};
};

}  // namespace stoker::storage::cache
