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
#include <unordered_map>
#include <vector>

#include "stoker/dataset/dataset.h"
#include "stoker/storage/buffer_recycler.h"
#include "stoker/storage/storage.h"

namespace stoker::pipeline {

class PageReader : public std::enable_shared_from_this<PageReader> {
 public:
  // `page_sizes`: samples per page in storage order (as the sampler's);
  // at most `max_pages` read pages are kept (those with waiting samples
  // beyond that). The first let go is the least recently used of the pages
  // some sample has read; only when there is none, the oldest page read
  // ahead (Prefetch) that no sample has read yet.
  PageReader(std::shared_ptr<storage::Storage> storage,
             std::shared_ptr<const dataset::Dataset> dataset,
             std::shared_ptr<const std::vector<uint32_t>> page_sizes, size_t max_pages);

  // Calls `done` (on the storage's thread, or this one) with sample i's
  // record, reading its page unless it is held or being read. A failed page
  // read is every one of its samples' error (and is tried again by the next
  // sample that asks once it is let go).
  void Read(uint64_t i, storage::Storage::ReadCallback done);

  // Starts reading page `page` (in storage order) unless it is held or
  // being read: the order will need it soon.
  void Prefetch(uint64_t page);

  uint64_t num_pages() const { return starts_.size() - 1; }
  // The page holding sample i.
  uint64_t PageOf(uint64_t i) const;

  int64_t pages_read() const;

  // Hands back a record's buffer once decoded, for the next record's copy
  // (steady reading then allocates and faults in nothing).
  void Recycle(storage::Bytes bytes) { recycler_.Put(std::move(bytes)); }

 private:
  struct Page {
    bool loaded = false;
    Result<std::shared_ptr<storage::Bytes>> bytes = Status(StatusCode::kInternal, "");
    std::vector<std::pair<uint64_t, storage::Storage::ReadCallback>> waiters;
    bool used = false;  // some sample has read it (it is in used_, else in unused_)
    std::list<uint64_t>::iterator lru;
  };
  void OnPage(uint64_t page, Result<storage::Bytes> r);
  // Sample i's record out of its page's bytes (or the page's error).
  Result<storage::Bytes> Record(uint64_t i, uint64_t page,
                                const Result<std::shared_ptr<storage::Bytes>>& bytes) const;
  void Issue(uint64_t page);

  std::shared_ptr<storage::Storage> storage_;
  std::shared_ptr<const dataset::Dataset> dataset_;
  std::vector<uint64_t> starts_;  // first sample of each page, then the total
  size_t max_pages_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Page> pages_;
  std::list<uint64_t> used_;    // loaded pages some sample read, most recently used first
  std::list<uint64_t> unused_;  // loaded pages read ahead and not used yet, newest first
  int64_t pages_read_ = 0;
  mutable storage::BufferRecycler recycler_{256};
};

}  // namespace stoker::pipeline
