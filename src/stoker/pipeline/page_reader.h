// Reads a remote shard dataset page by page (docs/order.md): a page is a run
// of consecutive records of one shard, and the chunk-aware order reads each
// page's samples within one window of positions, so one ranged GET per page
// serves all of them. Each sample's record is handed out as its own buffer
// (a copy out of the page), so the rest of the pass does not change.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <stop_token>
#include <unordered_map>
#include <vector>

#include "stoker/dataset/dataset.h"
#include "stoker/storage/storage.h"

namespace stoker::pipeline {

class PageReader : public std::enable_shared_from_this<PageReader> {
 public:
  // `page_sizes`: samples per page in storage order (as the sampler's);
  // at most `max_pages` read pages are kept (those with waiting samples
  // beyond that), the least recently used let go first.
  PageReader(std::shared_ptr<storage::Storage> storage,
             std::shared_ptr<const dataset::Dataset> dataset,
             std::shared_ptr<const std::vector<uint32_t>> page_sizes, size_t max_pages);

  // Calls `done` (on the storage's thread, or this one) with sample i's
  // record, reading its page unless it is held or being read. A failed page
  // read is every one of its samples' error (and is tried again by the next
  // sample that asks once it is let go).
  void Read(uint64_t i, storage::Storage::ReadCallback done, std::stop_token stop);

  int64_t pages_read() const;

 private:
  struct Page {
    bool loaded = false;
    Result<std::shared_ptr<const storage::Bytes>> bytes = Status(StatusCode::kInternal, "");
    std::vector<std::pair<uint64_t, storage::Storage::ReadCallback>> waiters;
    std::list<uint64_t>::iterator lru;
  };
  void OnPage(uint64_t page, Result<storage::Bytes> r);
  // Sample i's record out of its page's bytes (or the page's error).
  Result<storage::Bytes> Record(uint64_t i, uint64_t page,
                                const Result<std::shared_ptr<const storage::Bytes>>& bytes) const;
  uint64_t PageOf(uint64_t i) const;

  std::shared_ptr<storage::Storage> storage_;
  std::shared_ptr<const dataset::Dataset> dataset_;
  std::vector<uint64_t> starts_;  // first sample of each page, then the total
  size_t max_pages_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Page> pages_;
  std::list<uint64_t> lru_;  // loaded pages, most recently used first
  int64_t pages_read_ = 0;
};

}  // namespace stoker::pipeline
