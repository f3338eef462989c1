// A storage that wraps another and misbehaves on purpose, so C++ tests can
// drive a reader's fault paths without a server (after leveldb's
// FaultInjectionTestEnv and tensorstore's kvstore test drivers):
//   - errors for chosen URIs and attempts (the n-th read of a URI);
//   - added latency per read;
//   - bodies cut short (delivered as if whole: what a decoder then sees);
//   - stalls: the read never completes until its stop token is requested
//     (then Cancelled) or the storage shuts down;
//   - a bandwidth limit: reads share one link of so many bytes per second,
//     each delivered when its bytes would have crossed it.
// Delayed and stalled reads complete on the wrapper's own thread; a stop
// request only wakes it (a callback never runs inside request_stop()).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "stoker/storage/storage.h"

namespace stoker::storage::testing {

struct FaultRule {
  std::string uri_contains;  // the URIs it applies to ("": all)
  int first_attempt = 1;     // from the n-th read of such a URI (1-based) ...
  int attempts = -1;         // ... for this many reads (-1: every later one)
  // What a matched read does. An error is delivered instead of reading
  // (its message prefixed with the URI); otherwise the read happens, then:
  std::optional<Status> error;
  std::chrono::microseconds latency{0};  // delivered this much later
  int64_t cut_to = -1;                   // >= 0: only the first cut_to bytes
  bool stall = false;                    // never delivered (see above)
};

struct FaultCounts {
  int64_t reads = 0;     // reads asked of the wrapper (whole or range)
  int64_t errors = 0;    // injected errors
  int64_t cut = 0;       // bodies cut short
  int64_t stalled = 0;   // reads stalled (cancelled or shut down since)
  int64_t delayed = 0;   // reads delivered late (latency or bandwidth)
  int64_t cancelled = 0; // delayed or stalled reads ended by their stop token
};

class FaultStorage final : public StorageDecorator {
 public:
  explicit FaultStorage(std::shared_ptr<Storage> inner);
  ~FaultStorage() override;

  // Rules are tried in the order added; the first that matches a read
  // applies to it.
  void AddRule(FaultRule rule);
  void ClearRules();
  // Reads share a link of `bytes_per_s` (0: unlimited).
  void SetBandwidth(int64_t bytes_per_s);
  // Reads now stalled (waiting for a stop or shutdown).
  int stalled_now() const;
  FaultCounts counts() const;

  using StorageDecorator::ReadAsync;
  void ReadAsync(const std::string& uri, ReadCallback done, std::stop_token stop) override;
  void ReadRangeAsync(const std::string& uri, ByteRange range, ReadCallback done,
                      std::stop_token stop) override;
  // Stalled and delayed reads end with Cancelled; later reads fail at once.
  void Shutdown() override;

 private:
  struct Item {
    ReadCallback done;
    std::string uri;
    std::optional<Result<Bytes>> result;  // empty while stalled or not yet read
    double due = 0;                        // WallSeconds; stalled: never
    bool stall = false;
    std::stop_token stop;
    std::shared_ptr<void> wake;  // a stop_callback that wakes the thread
  };
  using ItemList = std::list<std::shared_ptr<Item>>;

  void Start(const std::string& uri, const ByteRange* range, ReadCallback done,
             std::stop_token stop);
  // The read's bytes (or error) arrived: deliver now or schedule.
  void Arrived(const std::shared_ptr<Item>& item, Result<Bytes> r, double due);
  void Run();
  void Wake();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<FaultRule> rules_;               // guarded by mu_
  std::map<std::string, int> attempts_;        // guarded by mu_: reads per URI
  int64_t bandwidth_ = 0;                      // guarded by mu_
  double link_free_ = 0;                       // guarded by mu_: when the link is next idle
  ItemList waiting_;                           // guarded by mu_: delayed or stalled
  bool woken_ = false;                         // guarded by mu_
  bool shut_ = false;                          // guarded by mu_
  bool exit_ = false;                          // guarded by mu_
  FaultCounts counts_;                         // guarded by mu_
  std::thread thread_;
};

}  // namespace stoker::storage::testing
