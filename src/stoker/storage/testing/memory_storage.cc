#include "stoker/storage/testing/memory_storage.h"

#include <cstring>

namespace stoker::storage::testing {

void MemoryStorage::Put(const std::string& uri, std::string_view bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  objects_[uri] = std::string(bytes);
}

namespace {

class MemoryWriter final : public ObjectWriter {
 public:
  MemoryWriter(std::string uri, MemoryStorage* storage)
      : ObjectWriter(std::move(uri)), storage_(storage) {}
  Status Append(std::span<const uint8_t> bytes) override {
    if (done_) return InvalidArgument(uri() + ": written to after Commit or Abort");
    bytes_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    size_ += static_cast<int64_t>(bytes.size());
    return Status::Ok();
  }
  Status Commit() override {
    if (done_) return InvalidArgument(uri() + ": committed or aborted already");
    done_ = true;
    storage_->Put(uri(), bytes_);
    return Status::Ok();
  }
  Status Abort() override {
    done_ = true;
    bytes_.clear();
    return Status::Ok();
  }

 private:
  MemoryStorage* storage_;
  std::string bytes_;
  bool done_ = false;
};

}  // namespace

Result<std::unique_ptr<ObjectWriter>> MemoryStorage::OpenWriter(const std::string& uri,
                                                                const WriteOptions& options) {
  (void)options;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (denied_.count(uri)) {
      return Status(StatusCode::kPermissionDenied, uri + ": access denied");
    }
  }
  return std::unique_ptr<ObjectWriter>(new MemoryWriter(uri, this));
}

Status MemoryStorage::Delete(const std::string& uri) {
  Remove(uri);
  return Status::Ok();
}

void MemoryStorage::Remove(const std::string& uri) {
  std::lock_guard<std::mutex> lock(mu_);
  objects_.erase(uri);
}

void MemoryStorage::Deny(const std::string& uri) {
  std::lock_guard<std::mutex> lock(mu_);
  denied_.insert(uri);
}

Result<std::vector<ObjectInfo>> MemoryStorage::List(const std::string& prefix_uri) {
  std::string prefix = prefix_uri;
  if (!prefix.empty() && prefix.back() != '/') prefix += '/';
  std::vector<ObjectInfo> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = objects_.lower_bound(prefix);
         it != objects_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
      out.push_back({it->first.substr(prefix.size()), static_cast<int64_t>(it->second.size())});
    }
  }
  if (out.empty()) return NotFound(prefix_uri + ": no objects under this prefix");
  return out;  // std::map order: sorted by key
}

Result<Bytes> MemoryStorage::ReadNow(const std::string& uri, ByteRange range) {
  STOKER_RETURN_IF_ERROR(CheckRange(uri, range));
  if (range.length == 0) return Bytes{};
  meters_.Add(meters_.requests);
  const double start = WallSeconds();
  Result<Bytes> out = [&]() -> Result<Bytes> {
    std::lock_guard<std::mutex> lock(mu_);
    if (denied_.count(uri)) {
      return Status(StatusCode::kPermissionDenied, uri + ": permission denied");
    }
    auto it = objects_.find(uri);
    if (it == objects_.end()) return NotFound(uri + ": no such object");
    const auto size = static_cast<int64_t>(it->second.size());
    const int64_t begin = std::min(range.offset, size);
    const int64_t n = std::min(range.length, size - begin);
    Bytes b;
    if (n > 0) {
      b = buffers_.Take(static_cast<size_t>(n));
      b.resize(static_cast<size_t>(n));
      std::memcpy(b.data(), it->second.data() + begin, static_cast<size_t>(n));
    }
    return b;
  }();
  StorageMeters::RecordSeconds(meters_.latency_us, WallSeconds() - start);
  meters_.Ended(out);
  return out;
}

Result<Bytes> MemoryStorage::Read(const std::string& uri) {
  return ReadNow(uri, {0, ByteRange::kToEnd});
}

void MemoryStorage::ReadAsync(const std::string& uri, ReadCallback done, std::stop_token stop) {
  ReadRangeAsync(uri, {0, ByteRange::kToEnd}, std::move(done), std::move(stop));
}

void MemoryStorage::ReadRangeAsync(const std::string& uri, ByteRange range, ReadCallback done,
                                   std::stop_token stop) {
  if (stop.stop_requested()) {
    meters_.Add(meters_.cancelled);
    done(Cancelled(uri + ": read cancelled"));
    return;
  }
  done(ReadNow(uri, range));
}

std::string MemoryStorage::Join(const std::string& base, const std::string& key) const {
  if (base.empty() || base.back() == '/') return base + key;
  return base + "/" + key;
}

}  // namespace stoker::storage::testing
