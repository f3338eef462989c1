// A storage held in memory, for tests: objects put by the test under any
// URI ("mem://bucket/key" by convention), read back with the whole Storage
// contract (ranges, cancellation, meters). Reads complete at once, on the
// caller's thread. Wrap it in FaultStorage for latency, stalls and errors.
#pragma once

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include "stoker/storage/meters.h"
#include "stoker/storage/storage.h"

namespace stoker::storage::testing {

class MemoryStorage final : public Storage {
 public:
  // Creates or replaces the object at `uri`.
  void Put(const std::string& uri, std::string_view bytes);
  void Remove(const std::string& uri);
  // Reads of `uri` fail with PermissionDenied (the object stays listed).
  void Deny(const std::string& uri);

  // Objects whose URI starts with `prefix_uri` ('/' added if missing), keys
  // relative to it, sorted. NotFound when there are none.
  Result<std::vector<ObjectInfo>> List(const std::string& prefix_uri) override;
  Result<Bytes> Read(const std::string& uri) override;
  using Storage::ReadAsync;
  void ReadAsync(const std::string& uri, ReadCallback done, std::stop_token stop) override;
  void ReadRangeAsync(const std::string& uri, ByteRange range, ReadCallback done,
                      std::stop_token stop) override;
  // Writes hold their bytes until Commit puts them in place, whole. A
  // denied URI refuses a writer (PermissionDenied).
  Result<std::unique_ptr<ObjectWriter>> OpenWriter(const std::string& uri,
                                                   const WriteOptions& options) override;
  using Storage::Put;
  Status Delete(const std::string& uri) override;
  void Recycle(Bytes bytes) override { buffers_.Put(std::move(bytes)); }
  std::string Join(const std::string& base, const std::string& key) const override;
  StorageCounters counters() const override { return meters_.Counters(); }

  const BufferRecycler& buffers() const { return buffers_; }

 private:
  Result<Bytes> ReadNow(const std::string& uri, ByteRange range);

  mutable std::mutex mu_;
  std::map<std::string, std::string> objects_;  // guarded by mu_
  std::set<std::string> denied_;                // guarded by mu_
  BufferRecycler buffers_;
  StorageMeters meters_;
};

}  // namespace stoker::storage::testing
