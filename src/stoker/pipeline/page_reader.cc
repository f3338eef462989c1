#include "stoker/pipeline/page_reader.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace stoker::pipeline {

PageReader::PageReader(std::shared_ptr<storage::Storage> storage,
                       std::shared_ptr<const dataset::Dataset> dataset,
                       std::shared_ptr<const std::vector<uint32_t>> page_sizes, size_t max_pages)
    : storage_(std::move(storage)),
      dataset_(std::move(dataset)),
      max_pages_(std::max<size_t>(1, max_pages)) {
  starts_.reserve(page_sizes->size() + 1);
  uint64_t at = 0;
  for (uint32_t n : *page_sizes) {
    starts_.push_back(at);
    at += n;
  }
  starts_.push_back(at);
}

uint64_t PageReader::PageOf(uint64_t i) const {
  // The last page starting at or before i (zero-size pages share a start:
  // the last of them is the one holding i).
  return static_cast<uint64_t>(std::upper_bound(starts_.begin(), starts_.end() - 1, i) -
                               starts_.begin()) -
         1;
}

int64_t PageReader::pages_read() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pages_read_;
}

Result<storage::Bytes> PageReader::Record(
    uint64_t i, uint64_t page, const Result<std::shared_ptr<storage::Bytes>>& bytes) const {
  if (!bytes.ok()) return bytes.status();
  const auto& shards = *dataset_->shards;
  const uint64_t first = shards.entry(starts_[page]).offset;
  const dataset::ShardEntry e = shards.entry(i);
  const storage::Bytes& b = **bytes;
  // A page cut short gives its last records short: CheckRecord says so.
  const uint64_t from = e.offset - first;
  const uint64_t to = std::min<uint64_t>(b.size(), from + e.length);
  storage::Bytes out = recycler_.Take(std::max<size_t>(1, e.length));
  if (from < to) out.assign(b.begin() + static_cast<ptrdiff_t>(from), b.begin() + static_cast<ptrdiff_t>(to));
  return out;
}

void PageReader::Read(uint64_t i, storage::Storage::ReadCallback done) {
  const uint64_t page = PageOf(i);
  Result<std::shared_ptr<storage::Bytes>> held = Status(StatusCode::kInternal, "");
  bool ready = false, issue = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, fresh] = pages_.try_emplace(page);
    Page& p = it->second;
    if (!fresh && p.loaded) {
      ready = true;
      held = p.bytes;
      used_.splice(used_.begin(), p.used ? used_ : unused_, p.lru);
      p.used = true;
    } else {
      p.waiters.emplace_back(i, std::move(done));
      issue = fresh;
      if (fresh) ++pages_read_;
    }
  }
  if (ready) {
    done(Record(i, page, held));
    return;
  }
  if (issue) Issue(page);
}

void PageReader::Prefetch(uint64_t page) {
  if (page >= num_pages() || starts_[page] == starts_[page + 1]) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!pages_.try_emplace(page).second) return;
    ++pages_read_;
  }
  Issue(page);
}

void PageReader::Issue(uint64_t page) {
  const auto& shards = *dataset_->shards;
  const dataset::ShardEntry a = shards.entry(starts_[page]);
  const dataset::ShardEntry z = shards.entry(starts_[page + 1] - 1);
  storage_->ReadRangeAsync(
      shards.shard_uris[a.shard],
      storage::ByteRange{static_cast<int64_t>(a.offset),
                         static_cast<int64_t>(z.offset + z.length - a.offset)},
      [self = shared_from_this(), page](Result<storage::Bytes> r) {
        self->OnPage(page, std::move(r));
      },
      // Not cancelled with a pass: a page outlives the pass that asked for
      // it (the next one may wait for it too).
      std::stop_token{});
}

void PageReader::OnPage(uint64_t page, Result<storage::Bytes> r) {
  Result<std::shared_ptr<storage::Bytes>> bytes =
      r.ok() ? Result<std::shared_ptr<storage::Bytes>>(
                   std::make_shared<storage::Bytes>(std::move(*r)))
             : Result<std::shared_ptr<storage::Bytes>>(r.status());
  std::vector<std::pair<uint64_t, storage::Storage::ReadCallback>> waiters;
  std::vector<Result<std::shared_ptr<storage::Bytes>>> evicted;  // freed outside the lock
  {
    std::lock_guard<std::mutex> lock(mu_);
    Page& p = pages_[page];
    waiters = std::move(p.waiters);
    p.waiters.clear();
    if (bytes.ok()) {
      p.loaded = true;
      p.bytes = bytes;
      p.used = !waiters.empty();
      std::list<uint64_t>& list = p.used ? used_ : unused_;
      list.push_front(page);
      p.lru = list.begin();
    } else {
      pages_.erase(page);  // the next sample that asks reads it again
    }
    while (used_.size() + unused_.size() > max_pages_) {
      std::list<uint64_t>& from = used_.empty() ? unused_ : used_;
      auto victim = pages_.find(from.back());
      evicted.push_back(std::move(victim->second.bytes));
      pages_.erase(victim);
      from.pop_back();
    }
  }
  for (auto& [i, done] : waiters) done(Record(i, page, bytes));
  // A page let go goes back to the storage for the next page's read (a
  // record copied out of it does not hold it).
  for (auto& e : evicted) {
    if (e.ok() && e->use_count() == 1) storage_->Recycle(std::move(**e));
  }
}

}  // namespace stoker::pipeline
