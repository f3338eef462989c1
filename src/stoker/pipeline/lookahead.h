// Lookahead: the next epoch's first reads, started before that epoch is.
//
// The order of every epoch is known in advance (seed, epoch, position), as
// Bagpipe exploits. A pass over remote storage that has issued all of its own
// reads has nothing left to ask for while its last batches are decoded; the
// next pass would then start by waiting a full round trip (20-100 ms to an
// object store) with idle decoders. So the loader reads the first batches of
// the epoch that follows while the current one drains, and the next pass, if
// it is that epoch from its start, takes those bytes instead of asking again.
//
// A guess that turns out wrong (set_epoch to another epoch, a resumed
// position, close) cancels what is in flight and hands the buffers back: the
// cost is at most `count` extra reads, never a wrong sample.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "stoker/status.h"
#include "stoker/storage/storage.h"

namespace stoker::pipeline {

class Lookahead : public std::enable_shared_from_this<Lookahead> {
 public:
  using Callback = storage::Storage::ReadCallback;

  explicit Lookahead(std::shared_ptr<storage::Storage> storage) : storage_(std::move(storage)) {}

  // Starts reading `uris` (position k of `epoch` -> uris[k]; an empty URI is
  // not read ahead) unless that epoch is already being read ahead. Drops any
  // earlier lookahead, except the reads the running pass claimed and still
  // waits for: they go on and are handed to it when they arrive (a pass
  // that asked for all of its reads at once begins the next lookahead while
  // its first, claimed ones are still in flight). `indices` name the
  // samples, checked again on Claim.
  void Begin(int64_t epoch, std::vector<int64_t> indices, std::vector<std::string> uris) {
    std::vector<storage::Bytes> dropped;
    std::stop_token stop;
    uint64_t gen;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (epoch_ == epoch) return;
      DropLocked(&dropped, /*keep_claimed=*/true);
      epoch_ = epoch;
      gen = gen_;
      stop_ = std::stop_source();
      stop = stop_.get_token();
      entries_.assign(indices.size(), Entry{});
      for (size_t k = 0; k < indices.size(); ++k) {
        entries_[k].index = uris[k].empty() ? -1 : indices[k];
      }
    }
    Recycle(dropped);
    auto self = shared_from_this();
    for (size_t k = 0; k < uris.size(); ++k) {
      if (uris[k].empty()) continue;
      issued_.fetch_add(1, std::memory_order_relaxed);
      storage_->ReadAsync(
          uris[k], [self, gen, k](Result<storage::Bytes> r) { self->OnRead(gen, k, std::move(r)); },
          stop);
    }
  }

  // If position k of `epoch` (a pass from the epoch's start) was read ahead
  // for sample `index`, hands its bytes to `done` (now, or when they arrive)
  // and returns true; otherwise false, and the caller reads it itself.
  bool Claim(int64_t epoch, int64_t k, int64_t index, Callback& done) {
    std::unique_lock<std::mutex> lock(mu_);
    if (epoch != epoch_ || k < 0 || k >= static_cast<int64_t>(entries_.size())) return false;
    Entry& e = entries_[static_cast<size_t>(k)];
    if (e.index != index || e.claimed) return false;
    e.claimed = true;
    used_.fetch_add(1, std::memory_order_relaxed);
    if (!e.result) {
      e.waiter = std::move(done);
      return true;
    }
    Result<storage::Bytes> r = std::move(*e.result);
    e.result.reset();
    lock.unlock();
    done(std::move(r));
    return true;
  }

  // Forgets the lookahead: reads in flight are cancelled, bytes that arrived
  // go back to the storage, waiters are dropped (their pass has stopped).
  void Drop() {
    std::vector<storage::Bytes> dropped;
    {
      std::lock_guard<std::mutex> lock(mu_);
      DropLocked(&dropped, /*keep_claimed=*/false);
      for (auto& [g, s] : kept_stops_) s.request_stop();
      kept_stops_.clear();
      kept_.clear();
    }
    Recycle(dropped);
  }

  // The epoch being read ahead, or -1.
  int64_t epoch() const {
    std::lock_guard<std::mutex> lock(mu_);
    return epoch_;
  }
  // Reads issued ahead, and how many of them a pass took, since creation.
  int64_t issued() const { return issued_.load(std::memory_order_relaxed); }
  int64_t used() const { return used_.load(std::memory_order_relaxed); }

 private:
  struct Entry {
    int64_t index = -1;  // -1: not read ahead
    bool claimed = false;
    std::optional<Result<storage::Bytes>> result;  // arrived, not yet claimed
    Callback waiter;                               // claimed before it arrived
  };

  void OnRead(uint64_t gen, size_t k, Result<storage::Bytes> r) {
    Callback waiter;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (gen != gen_) {
        // A read claimed before its lookahead was replaced: still wanted.
        auto it = kept_.find({gen, k});
        if (it != kept_.end()) {
          waiter = std::move(it->second);
          kept_.erase(it);
          auto next = kept_.lower_bound({gen, 0});
          if (next == kept_.end() || next->first.first != gen) kept_stops_.erase(gen);
        }
      }
      if (waiter) {
        // Delivered below, outside the lock.
      } else if (gen != gen_ || k >= entries_.size()) {
        // Dropped meanwhile: nobody will take these bytes.
        if (r.ok()) storage_->Recycle(std::move(r).value());
        return;
      } else {
        Entry& e = entries_[k];
        if (!e.waiter) {
          e.result.emplace(std::move(r));
          return;
        }
        waiter = std::move(e.waiter);
        e.waiter = nullptr;
      }
    }
    waiter(std::move(r));
  }

  // keep_claimed: reads claimed and still in flight are kept (not
  // cancelled; handed to their waiter on arrival), the others cancelled.
  void DropLocked(std::vector<storage::Bytes>* dropped, bool keep_claimed) {
    bool kept = false;
    for (size_t k = 0; k < entries_.size(); ++k) {
      Entry& e = entries_[k];
      if (keep_claimed && e.waiter) {
        kept_.emplace(std::make_pair(gen_, k), std::move(e.waiter));
        kept = true;
      }
    }
    // The stop of a generation with kept reads is never requested (but by
    // Drop): its unclaimed reads finish and are recycled on arrival.
    if (kept) {
      kept_stops_.emplace(gen_, stop_);
    } else {
      stop_.request_stop();
    }
    for (auto& e : entries_) {
      if (e.result && e.result->ok()) dropped->push_back(std::move(*e.result).value());
    }
    entries_.clear();
    epoch_ = -1;
    ++gen_;
  }

  void Recycle(std::vector<storage::Bytes>& dropped) {
    for (auto& b : dropped) storage_->Recycle(std::move(b));
  }

  const std::shared_ptr<storage::Storage> storage_;
  mutable std::mutex mu_;
  int64_t epoch_ = -1;
  uint64_t gen_ = 0;
  std::stop_source stop_;  // of the reads in flight for epoch_
  std::vector<Entry> entries_;
  // Claimed reads of earlier generations, by (generation, position), and
  // those generations' stops.
  std::map<std::pair<uint64_t, size_t>, Callback> kept_;
  std::map<uint64_t, std::stop_source> kept_stops_;
  std::atomic<int64_t> issued_{0}, used_{0};
};

}  // namespace stoker::pipeline
