#include "stoker/storage/storage.h"

#include <algorithm>
#include <cstring>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <numeric>

#include "stoker/storage/registry.h"

namespace stoker::storage {

// ---- the contract's shared parts --------------------------------------------

void StorageCounters::Add(const StorageCounters& o) {
  requests += o.requests;
  bytes_read += o.bytes_read;
  retries += o.retries;
  timeouts += o.timeouts;
  in_flight += o.in_flight;
  cancelled += o.cancelled;
  latency_us.Merge(o.latency_us);
  cache_hits += o.cache_hits;
  cache_misses += o.cache_misses;
  cache_memory_bytes += o.cache_memory_bytes;
  cache_disk_bytes += o.cache_disk_bytes;
  cache_corrupt += o.cache_corrupt;
  cache_not_kept += o.cache_not_kept;
}

Status CheckRange(const std::string& uri, ByteRange range) {
  if (range.offset < 0 || range.length < 0) {
    return InvalidArgument(uri + ": byte range " + std::to_string(range.offset) + "+" +
                           std::to_string(range.length) + " has a negative offset or length");
  }
  return Status::Ok();
}

void KeepRange(Bytes& bytes, ByteRange range) {
  const auto size = static_cast<int64_t>(bytes.size());
  const int64_t begin = std::min(range.offset, size);
  const int64_t end = std::min(size, begin + std::min(range.length, size - begin));
  if (begin > 0 && end > begin) {
    std::memmove(bytes.data(), bytes.data() + begin, static_cast<size_t>(end - begin));
  }
  bytes.resize(static_cast<size_t>(end - begin));
}

bool AnswerWithoutReading(const std::string& uri, ByteRange range,
                          Storage::ReadCallback& done) {
  if (Status st = CheckRange(uri, range); !st.ok()) {
    done(std::move(st));
    return true;
  }
  if (range.length == 0) {
    done(Bytes{});
    return true;
  }
  return false;
}

void Storage::ReadRangeAsync(const std::string& uri, ByteRange range, ReadCallback done,
                             std::stop_token stop) {
  if (AnswerWithoutReading(uri, range, done)) return;
  ReadAsync(
      uri,
      [range, done = std::move(done)](Result<Bytes> r) {
        if (r.ok()) KeepRange(*r, range);
        done(std::move(r));
      },
      std::move(stop));
}

Result<std::unique_ptr<ObjectWriter>> Storage::OpenWriter(const std::string& uri,
                                                          const WriteOptions& options) {
  (void)options;
  return Unsupported(uri + ": this storage cannot write");
}

Status Storage::Put(const std::string& uri, std::span<const uint8_t> bytes) {
  STOKER_ASSIGN_OR_RETURN(std::unique_ptr<ObjectWriter> w, OpenWriter(uri, WriteOptions{}));
  STOKER_RETURN_IF_ERROR(w->Append(bytes));
  return w->Commit();
}

Status Storage::Delete(const std::string& uri) {
  return Unsupported(uri + ": this storage cannot delete");
}

namespace {
// Starts a read with `start(done)` and waits for its result.
template <typename Start>
Result<Bytes> Wait(Start start) {
  std::promise<Result<Bytes>> p;
  auto f = p.get_future();
  start([&p](Result<Bytes> r) { p.set_value(std::move(r)); });
  return f.get();
}
}  // namespace

Result<Bytes> Storage::ReadRange(const std::string& uri, ByteRange range) {
  return Wait([&](ReadCallback done) { ReadRangeAsync(uri, range, std::move(done), std::stop_token()); });
}

Result<Bytes> StorageDecorator::Read(const std::string& uri) {
  return Wait([&](ReadCallback done) { ReadAsync(uri, std::move(done), std::stop_token()); });
}

std::vector<CoalescedRequest> CoalesceRanges(const std::vector<ByteRange>& ranges,
                                             const CoalesceOptions& options) {
  std::vector<size_t> order(ranges.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return ranges[a].offset < ranges[b].offset; });
  std::vector<CoalescedRequest> out;
  int64_t end = 0;  // of out.back()
  for (size_t i : order) {
    const ByteRange& r = ranges[i];
    if (r.length == 0) continue;  // served without a request
    const int64_t r_end = r.End();
    if (!out.empty() && r.offset - end <= options.max_gap &&
        std::max(end, r_end) - out.back().range.offset <= options.max_request) {
      end = std::max(end, r_end);
      out.back().range.length = end - out.back().range.offset;
      out.back().parts.push_back(i);
      continue;
    }
    out.push_back({r, {i}});
    end = r_end;
  }
  return out;
}

void Storage::ReadRangesAsync(const std::string& uri, std::vector<ByteRange> ranges,
                              RangesCallback done, std::stop_token stop,
                              const CoalesceOptions& options) {
  for (const ByteRange& r : ranges) {
    if (Status st = CheckRange(uri, r); !st.ok()) {
      done(std::move(st));
      return;
    }
  }
  std::vector<CoalescedRequest> requests = CoalesceRanges(ranges, options);
  if (requests.empty()) {
    done(std::vector<Bytes>(ranges.size()));
    return;
  }
  struct Gather {
    std::mutex mu;
    std::vector<ByteRange> ranges;
    std::vector<Bytes> out;
    size_t left = 0;
    Status error;  // the first
    RangesCallback done;
  };
  auto g = std::make_shared<Gather>();
  g->out.resize(ranges.size());
  g->left = requests.size();
  g->ranges = std::move(ranges);
  g->done = std::move(done);
  for (CoalescedRequest& req : requests) {
    auto on_read = [this, g, req](Result<Bytes> r) {
      Bytes spare;  // the merged buffer, once sliced: back to the backend
      bool last;
      {
        std::lock_guard<std::mutex> lock(g->mu);
        if (!r.ok()) {
          if (g->error.ok()) g->error = r.status();
        } else if (req.parts.size() == 1 && g->ranges[req.parts[0]] == req.range) {
          g->out[req.parts[0]] = std::move(r).value();
        } else {
          const Bytes& merged = *r;
          const auto size = static_cast<int64_t>(merged.size());
          for (size_t i : req.parts) {
            const ByteRange& part = g->ranges[i];
            const int64_t begin = std::min(part.offset - req.range.offset, size);
            const int64_t end = begin + std::min(part.length, size - begin);
            g->out[i].assign(merged.begin() + begin, merged.begin() + end);
          }
          spare = std::move(r).value();
        }
        last = --g->left == 0;
      }
      if (spare.capacity() > 0) Recycle(std::move(spare));
      if (!last) return;
      if (!g->error.ok()) {
        for (Bytes& b : g->out) {
          if (b.capacity() > 0) Recycle(std::move(b));
        }
        g->done(std::move(g->error));
      } else {
        g->done(std::move(g->out));
      }
    };
    ReadRangeAsync(uri, req.range, std::move(on_read), stop);
  }
}

Result<std::vector<Bytes>> Storage::ReadRanges(const std::string& uri, std::vector<ByteRange> ranges,
                                               const CoalesceOptions& options) {
  std::promise<Result<std::vector<Bytes>>> p;
  auto f = p.get_future();
  ReadRangesAsync(
      uri, std::move(ranges), [&p](Result<std::vector<Bytes>> r) { p.set_value(std::move(r)); },
      std::stop_token(), options);
  return f.get();
}

// ---- the registry -------------------------------------------------------------

namespace {

std::string Lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

// "s3", "http", ...; "file" for plain paths.
std::string SchemeOf(const std::string& uri) {
  const auto pos = uri.find("://");
  return pos == std::string::npos ? "file" : Lower(uri.substr(0, pos));
}

struct Registered {
  StorageFactory factory;
  std::string family;  // backends opened once per family
};

struct Registry {
  std::mutex mu;
  std::map<std::string, Registered> by_scheme;  // guarded by mu
};

Registry& TheRegistry() {
  static Registry* r = new Registry;  // never destroyed: used until exit
  return *r;
}

struct Lookup {
  std::string family;
  StorageFactory factory;  // empty: no backend for this scheme
};

Lookup Find(const std::string& scheme) {
  RegisterBuiltinStorages();
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.by_scheme.find(scheme);
  if (it == r.by_scheme.end()) return {scheme, nullptr};
  return {it->second.family, it->second.factory};
}

Result<std::shared_ptr<Storage>> OpenBackend(const Lookup& backend, const std::string& uri,
                                             const StorageOptions& options) {
  if (!backend.factory) {
    std::string known;
    for (const std::string& s : RegisteredSchemes()) known += (known.empty() ? "" : ", ") + s;
    return Unsupported(uri + ": no storage backend for scheme '" + uri.substr(0, uri.find("://")) +
                       "' (supported: " + known + ")");
  }
  return backend.factory(uri, options);
}

// Routes each URI to the backend of its scheme, so a local manifest may list
// s3:// objects and an S3 manifest https:// ones. The dataset URI's own
// backend is opened up front (its configuration errors surface at once);
// others on first use.
class SchemeRouter final : public Storage {
 public:
  SchemeRouter(const StorageOptions& options, std::string family, std::shared_ptr<Storage> primary)
      : options_(options), primary_family_(std::move(family)), primary_(std::move(primary)) {
    opened_.emplace(primary_family_, primary_);
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
  void ReadRangeAsync(const std::string& uri, ByteRange range, ReadCallback done,
                      std::stop_token stop) override {
    auto s = Backend(uri);
    if (!s.ok()) {
      done(s.status());
      return;
    }
    (*s)->ReadRangeAsync(uri, range, std::move(done), std::move(stop));
  }
  Result<std::unique_ptr<ObjectWriter>> OpenWriter(const std::string& uri,
                                                   const WriteOptions& options) override {
    STOKER_ASSIGN_OR_RETURN(Storage * s, Backend(uri));
    return s->OpenWriter(uri, options);
  }
  Status Put(const std::string& uri, std::span<const uint8_t> bytes) override {
    STOKER_ASSIGN_OR_RETURN(Storage * s, Backend(uri));
    return s->Put(uri, bytes);
  }
  Status Delete(const std::string& uri) override {
    STOKER_ASSIGN_OR_RETURN(Storage * s, Backend(uri));
    return s->Delete(uri);
  }
  std::string Join(const std::string& base, const std::string& key) const override {
    return primary_->Join(base, key);
  }
  StorageCounters counters() const override {
    StorageCounters total;
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [k, s] : opened_) {
      if (s.ok()) total.Add((*s)->counters());
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
    const Lookup backend = Find(SchemeOf(uri));
    if (backend.family == primary_family_) return primary_.get();
    std::lock_guard<std::mutex> lock(mu_);
    auto it = opened_.find(backend.family);
    // A failure is kept too: it is not retried for every sample.
    if (it == opened_.end()) {
      it = opened_.emplace(backend.family, OpenBackend(backend, uri, options_)).first;
    }
    if (!it->second.ok()) return it->second.status();
    return it->second->get();
  }

  const StorageOptions options_;
  const std::string primary_family_;
  const std::shared_ptr<Storage> primary_;
  mutable std::mutex mu_;
  std::map<std::string, Result<std::shared_ptr<Storage>>> opened_;  // guarded by mu_
};

}  // namespace

void RegisterStorage(const std::string& scheme, StorageFactory factory, const std::string& family) {
  Registry& r = TheRegistry();
  const std::string key = Lower(scheme);
  std::lock_guard<std::mutex> lock(r.mu);
  r.by_scheme[key] = {std::move(factory), family.empty() ? key : Lower(family)};
}

void RegisterBuiltinStorages() {
  static std::once_flag once;
  std::call_once(once, [] {
    RegisterFileStorage();
    http::RegisterHttpStorage();
    s3::RegisterS3Storage();
  });
}

std::vector<std::string> RegisteredSchemes() {
  RegisterBuiltinStorages();
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> out;
  for (const auto& [scheme, entry] : r.by_scheme) out.push_back(scheme);
  return out;
}

bool IsLocal(const std::string& uri) {
  auto pos = uri.find("://");
  return pos == std::string::npos || uri.compare(0, pos, "file") == 0;
}

Result<std::shared_ptr<Storage>> OpenStorage(const std::string& uri, const StorageOptions& options) {
  const Lookup backend = Find(SchemeOf(uri));
  STOKER_ASSIGN_OR_RETURN(auto primary, OpenBackend(backend, uri, options));
  return std::shared_ptr<Storage>(
      std::make_shared<SchemeRouter>(options, backend.family, std::move(primary)));
}

}  // namespace stoker::storage
