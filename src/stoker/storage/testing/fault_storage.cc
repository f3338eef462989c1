#include "stoker/storage/testing/fault_storage.h"

#include <algorithm>
#include <functional>
#include <future>
#include <stop_token>

#include "stoker/base/cpu_time.h"

namespace stoker::storage::testing {

FaultStorage::FaultStorage(std::shared_ptr<Storage> inner) : StorageDecorator(std::move(inner)) {
  thread_ = std::thread([this] { Run(); });
}

FaultStorage::~FaultStorage() {
  Shutdown();
  {
    std::lock_guard<std::mutex> lock(mu_);
    exit_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void FaultStorage::AddRule(FaultRule rule) {
  std::lock_guard<std::mutex> lock(mu_);
  rules_.push_back(std::move(rule));
}

void FaultStorage::ClearRules() {
  std::lock_guard<std::mutex> lock(mu_);
  rules_.clear();
}

void FaultStorage::SetBandwidth(int64_t bytes_per_s) {
  std::lock_guard<std::mutex> lock(mu_);
  bandwidth_ = bytes_per_s;
}

int FaultStorage::stalled_now() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(std::count_if(waiting_.begin(), waiting_.end(),
                                        [](const auto& i) { return i->stall; }));
}

FaultCounts FaultStorage::counts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

void FaultStorage::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shut_ = true;
    woken_ = true;
  }
  cv_.notify_all();
  inner_->Shutdown();
}

void FaultStorage::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void FaultStorage::ReadAsync(const std::string& uri, ReadCallback done, std::stop_token stop) {
  Start(uri, nullptr, std::move(done), std::move(stop));
}

void FaultStorage::ReadRangeAsync(const std::string& uri, ByteRange range, ReadCallback done,
                                  std::stop_token stop) {
  Start(uri, &range, std::move(done), std::move(stop));
}

void FaultStorage::Start(const std::string& uri, const ByteRange* range, ReadCallback done,
                         std::stop_token stop) {
  std::optional<FaultRule> rule;
  bool shut;
  {
    std::lock_guard<std::mutex> lock(mu_);
    shut = shut_;
    ++counts_.reads;
    const int attempt = ++attempts_[uri];
    for (const FaultRule& r : rules_) {
      if (!r.uri_contains.empty() && uri.find(r.uri_contains) == std::string::npos) continue;
      if (attempt < r.first_attempt) continue;
      if (r.attempts >= 0 && attempt >= r.first_attempt + r.attempts) continue;
      rule = r;
      break;
    }
    if (rule && !shut && !stop.stop_requested()) {
      if (rule->error) ++counts_.errors;
      else if (rule->stall) ++counts_.stalled;
    }
  }
  if (shut) {
    done(Cancelled(uri + ": storage is shutting down"));
    return;
  }
  if (stop.stop_requested()) {
    done(Cancelled(uri + ": read cancelled"));
    return;
  }
  auto item = std::make_shared<Item>();
  item->done = std::move(done);
  item->uri = uri;
  item->stop = stop;
  const double start = WallSeconds();
  const double latency = rule ? std::chrono::duration<double>(rule->latency).count() : 0.0;
  if (rule && rule->error) {
    Arrived(item, Status(rule->error->code(), uri + ": " + rule->error->message()), start + latency);
    return;
  }
  if (rule && rule->stall) {
    item->stall = true;
    Arrived(item, Bytes{}, 0);
    return;
  }
  const int64_t cut = rule ? rule->cut_to : -1;
  auto on_read = [this, item, cut, start, latency](Result<Bytes> r) {
    double due = start + latency;
    if (r.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      if (cut >= 0 && static_cast<int64_t>(r->size()) > cut) {
        r->resize(static_cast<size_t>(cut));
        ++counts_.cut;
      }
      if (bandwidth_ > 0) {
        link_free_ = std::max(link_free_, WallSeconds()) +
                     static_cast<double>(r->size()) / static_cast<double>(bandwidth_);
        due = std::max(due, link_free_);
      }
    }
    Arrived(item, std::move(r), due);
  };
  if (range) {
    inner_->ReadRangeAsync(uri, *range, std::move(on_read), std::move(stop));
  } else {
    inner_->ReadAsync(uri, std::move(on_read), std::move(stop));
  }
}

void FaultStorage::Arrived(const std::shared_ptr<Item>& item, Result<Bytes> r, double due) {
  if (!item->stall && due <= WallSeconds()) {
    item->done(std::move(r));
    return;
  }
  item->result.emplace(std::move(r));
  item->due = due;
  if (item->stop.stop_possible()) {
    // Outside mu_: it runs at once (taking mu_) if stop was requested already.
    item->wake = std::make_shared<std::stop_callback<std::function<void()>>>(
        item->stop, std::function<void()>([this] { Wake(); }));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!item->stall) ++counts_.delayed;
    waiting_.push_back(item);
    woken_ = true;
  }
  cv_.notify_all();
}

void FaultStorage::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    woken_ = false;
    const double now = WallSeconds();
    std::vector<std::shared_ptr<Item>> ready, cancelled;
    double next = 1e300;
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      Item& i = **it;
      if (shut_ || i.stop.stop_requested()) {
        if (!shut_) ++counts_.cancelled;
        cancelled.push_back(std::move(*it));
      } else if (!i.stall && i.due <= now) {
        ready.push_back(std::move(*it));
      } else {
        if (!i.stall) next = std::min(next, i.due);
        ++it;
        continue;
      }
      it = waiting_.erase(it);
    }
    if (!ready.empty() || !cancelled.empty()) {
      lock.unlock();
      for (auto& i : ready) i->done(std::move(*i->result));
      for (auto& i : cancelled) {
        if (i->result->ok()) inner_->Recycle(std::move(*i->result).value());
        i->done(Cancelled(i->uri + (i->stop.stop_requested() ? ": read cancelled"
                                                              : ": storage is shutting down")));
      }
      ready.clear();
      cancelled.clear();  // stop_callbacks go here, outside mu_
      lock.lock();
      continue;  // more may have come meanwhile
    }
    if (exit_) return;
    if (next >= 1e300) {
      cv_.wait(lock, [&] { return woken_ || exit_; });
    } else {
      const auto wait = std::chrono::duration<double>(next - now);
      cv_.wait_for(lock, wait, [&] { return woken_ || exit_; });
    }
  }
}

}  // namespace stoker::storage::testing
