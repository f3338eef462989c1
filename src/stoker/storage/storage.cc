#include "stoker/storage/storage.h"

#include <map>
#include <mutex>

#include "stoker/storage/file/file_storage.h"
#include "stoker/storage/http/http_storage.h"
#include "stoker/storage/s3/s3_storage.h"

namespace stoker::storage {
namespace {

// "s3", "http", ...; "file" for plain paths. http and https share a backend.
std::string BackendKey(const std::string& uri) {
  const auto pos = uri.find("://");
  if (pos == std::string::npos) return "file";
  std::string scheme = uri.substr(0, pos);
  for (char& c : scheme) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return scheme == "https" ? "http" : scheme;
}

// The backend registry: one entry per URL scheme.
Result<std::shared_ptr<Storage>> OpenBackend(const std::string& key, const std::string& uri,
                                             const StorageOptions& options) {
  if (key == "file") return std::shared_ptr<Storage>(std::make_shared<FileStorage>());
  if (key == "s3") {
    STOKER_ASSIGN_OR_RETURN(auto s3, s3::S3Storage::Open(options));
    return std::shared_ptr<Storage>(std::move(s3));
  }
  if (key == "http") {
    return std::shared_ptr<Storage>(std::make_shared<http::HttpStorage>(
        http::NewTransport(http::CurlOptionsFor(options.io)),
        http::DispatcherOptions{.retry = http::RetryPolicyFor(options.io, 0)}));
  }
  return Unsupported(uri + ": no storage backend for scheme '" + uri.substr(0, uri.find("://")) +
                     "' (file, s3, http and https are supported)");
}

// Routes each URI to the backend of its scheme, so a local manifest may list
// s3:// objects and an S3 manifest https:// ones. The dataset URI's own
// backend is opened up front (its configuration errors surface at once);
// others on first use.
class SchemeRouter final : public Storage {
 public:
  SchemeRouter(const StorageOptions& options, std::string key, std::shared_ptr<Storage> primary)
      : options_(options), primary_key_(std::move(key)), primary_(std::move(primary)) {
    opened_.emplace(primary_key_, primary_);
  }

  Result<std::vector<ObjectInfo>> List(const std::string& prefix_uri) override {
    STOKER_ASSIGN_OR_RETURN(Storage * s, Backend(prefix_uri));
    return s->List(prefix_uri);
  }
  Result<Bytes> Read(const std::string& uri) override {
    STOKER_ASSIGN_OR_RETURN(Storage * s, Backend(uri));
    return s->Read(uri);
  }
  void ReadAsync(const std::string& uri, ReadCallback done) override {
    ReadAsync(uri, std::move(done), std::stop_token());
  }
  void ReadAsync(const std::string& uri, ReadCallback done, std::stop_token stop) override {
    auto s = Backend(uri);
    if (!s.ok()) {
      done(s.status());
      return;
    }
    (*s)->ReadAsync(uri, std::move(done), std::move(stop));
  }
  std::string Join(const std::string& base, const std::string& key) const override {
    return primary_->Join(base, key);
  }
  StorageCounters counters() const override {
    StorageCounters total;
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [k, s] : opened_) {
      if (!s.ok()) continue;
      const auto c = (*s)->counters();
      total.requests += c.requests;
      total.bytes_read += c.bytes_read;
      total.retries += c.retries;
      total.timeouts += c.timeouts;
    }
    return total;
  }
  // Reads of the dataset's own scheme are nearly all of them: buffers go
  // back to that backend (another backend's buffer is as good to it).
  void Recycle(Bytes bytes) override { primary_->Recycle(std::move(bytes)); }
  void Shutdown() override {
    std::vector<std::shared_ptr<Storage>> all;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [k, s] : opened_) {
        if (s.ok()) all.push_back(*s);
      }
    }
    for (auto& s : all) s->Shutdown();  // not under mu_: callbacks may call Backend()
  }

 private:
  Result<Storage*> Backend(const std::string& uri) {
    const std::string key = BackendKey(uri);
    if (key == primary_key_) return primary_.get();
    std::lock_guard<std::mutex> lock(mu_);
    auto it = opened_.find(key);
    // A failure is kept too: it is not retried for every sample.
    if (it == opened_.end()) it = opened_.emplace(key, OpenBackend(key, uri, options_)).first;
    if (!it->second.ok()) return it->second.status();
    return it->second->get();
  }

  const StorageOptions options_;
  const std::string primary_key_;
  const std::shared_ptr<Storage> primary_;
  mutable std::mutex mu_;
  std::map<std::string, Result<std::shared_ptr<Storage>>> opened_;  // guarded by mu_
};

}  // namespace

bool IsLocal(const std::string& uri) {
  auto pos = uri.find("://");
  return pos == std::string::npos || uri.compare(0, pos, "file") == 0;
}

Result<std::shared_ptr<Storage>> OpenStorage(const std::string& uri, const StorageOptions& options) {
  const std::string key = BackendKey(uri);
  STOKER_ASSIGN_OR_RETURN(auto primary, OpenBackend(key, uri, options));
  return std::shared_ptr<Storage>(std::make_shared<SchemeRouter>(options, key, std::move(primary)));
}

}  // namespace stoker::storage
