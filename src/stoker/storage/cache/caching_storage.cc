#include "stoker/storage/cache/caching_storage.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stoker/storage/cache/cache_entry.h"

namespace stoker::storage::cache {

namespace fs = std::filesystem;

namespace {

std::string Errno(int e) { return std::strerror(e); }

// Bytes not yet written that the disk writer may hold; past it, reads are
// not kept (the writer is behind the reads).
constexpr int64_t kMaxPendingBytes = int64_t{256} << 20;

Status MakePrivateDir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(fs::path(dir).parent_path(), ec);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return IOError("cache directory " + dir + ": cannot create it: " + Errno(errno));
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return IOError("cache directory " + dir + ": " + Errno(errno));
  if (!S_ISDIR(st.st_mode)) return InvalidArgument("cache directory " + dir + ": not a directory");
  if (st.st_uid != ::geteuid()) {
    return InvalidArgument("cache directory " + dir +
                           ": owned by another user (a cache must be private: mode 0700, yours)");
  }
  if ((st.st_mode & 077) != 0 && ::chmod(dir.c_str(), 0700) != 0) {
    return IOError("cache directory " + dir + ": cannot make it private: " + Errno(errno));
  }
  return Status::Ok();
}

Result<std::string> ReadFile(const std::string& path, bool* missing) {
  *missing = false;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *missing = errno == ENOENT || errno == ENOTDIR;
    return IOError(path + ": " + Errno(errno));
  }
  std::string out;
  struct stat st {};
  if (::fstat(fd, &st) == 0) out.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(got);
  return out;
}

Status WriteAll(int fd, const std::string& bytes, const std::string& path) {
  size_t put = 0;
  while (put < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + put, bytes.size() - put);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IOError(path + ": " + Errno(errno));
    put += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

// The disk part: entries under dir/, the shared byte count in dir/size
// (under an flock of dir/lock), and one writer thread.
class DiskCache {
 public:
  static Result<std::unique_ptr<DiskCache>> Open(const std::string& dir, int64_t budget) {
    STOKER_RETURN_IF_ERROR(MakePrivateDir(dir));
    STOKER_RETURN_IF_ERROR(MakePrivateDir(dir + "/tmp"));
    auto d = std::unique_ptr<DiskCache>(new DiskCache(dir, budget));
    d->lock_fd_ = ::open((dir + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (d->lock_fd_ < 0) return IOError("cache directory " + dir + ": lock file: " + Errno(errno));
    d->RemoveStaleTemporaries();
    STOKER_RETURN_IF_ERROR(d->InitSize());
    d->writer_ = std::thread([p = d.get()] { p->WriterLoop(); });
    return d;
  }

  ~DiskCache() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (writer_.joinable()) writer_.join();
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }

  // The entry's data, or nullopt (missing; or corrupt: then deleted and
  // counted).
  std::optional<std::string> Lookup(const std::string& key) {
    const std::string path = dir_ + "/" + EntryPath(key);
    bool missing = false;
    auto file = ReadFile(path, &missing);
    if (!file.ok()) return std::nullopt;
    auto data = DecodeEntry({reinterpret_cast<const uint8_t*>(file->data()), file->size()}, key, path);
    if (!data.ok()) {
      // A hash collision is not corruption: the other key's entry stays.
      if (data.status().message().find("another key") != std::string::npos) return std::nullopt;
      ++corrupt_;
      if (::unlink(path.c_str()) == 0) Account(-static_cast<int64_t>(file->size()));
      return std::nullopt;
    }
    return std::string(reinterpret_cast<const char*>(data->data()), data->size());
  }

  // Queues an entry for writing if the budget has room; false if not kept.
  bool Keep(const std::string& key, std::span<const uint8_t> data) {
    const int64_t size = static_cast<int64_t>(kEntryHeaderSize + key.size() + data.size());
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_ || pending_bytes_ + size > kMaxPendingBytes || writing_.count(key) > 0) return false;
    }
    if (!Reserve(size)) return false;
    std::string entry = EncodeEntry(key, data);
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_.insert(key);
      pending_bytes_ += size;
      queue_.push_back({key, std::move(entry)});
    }
    cv_.notify_one();
    return true;
  }

  void Flush() {
    std::unique_lock<std::mutex> lock(mu_);
    idle_.wait(lock, [&] { return queue_.empty() && !busy_; });
  }

  int64_t bytes() const { return used_.load(); }
  int64_t corrupt() const { return corrupt_.load(); }
  int64_t not_kept() const { return failed_.load(); }

 private:
  DiskCache(std::string dir, int64_t budget) : dir_(std::move(dir)), budget_(budget) {}

  struct Job {
    std::string key;
    std::string entry;
  };

  // Runs `f(total)` on the shared count under the lock; f returns the new
  // total, or -1 to leave it.
  template <typename F>
  bool WithSize(F f) {
    while (::flock(lock_fd_, LOCK_EX) != 0) {
      if (errno != EINTR) return false;
    }
    bool missing = false;
    auto text = ReadFile(dir_ + "/size", &missing);
    int64_t total = 0;
    if (text.ok() && text->size() == 8) std::memcpy(&total, text->data(), 8);
    const int64_t next = f(total);
    bool ok = true;
    if (next >= 0) {
      const std::string tmp = dir_ + "/size.tmp";
      std::string bytes(8, '\0');
      std::memcpy(bytes.data(), &next, 8);
      const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      ok = fd >= 0 && WriteAll(fd, bytes, tmp).ok();
      if (fd >= 0) ::close(fd);
      ok = ok && ::rename(tmp.c_str(), (dir_ + "/size").c_str()) == 0;
      if (ok) used_ = next;
    } else {
      used_ = total;
    }
    ::flock(lock_fd_, LOCK_UN);
    return ok;
  }

  // The count, from the entries on disk when no process has kept it yet.
  Status InitSize() {
    struct stat st {};
    if (::stat((dir_ + "/size").c_str(), &st) == 0) {
      WithSize([](int64_t) { return int64_t{-1}; });
      return Status::Ok();
    }
    const bool ok = WithSize([&](int64_t) {
      int64_t sum = 0;
      std::error_code ec;
      for (auto it = fs::recursive_directory_iterator(dir_, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        const std::string rel = it->path().lexically_relative(dir_).string();
        if (it->is_regular_file(ec) && rel.size() == 33 && rel[2] == '/') {
          sum += static_cast<int64_t>(it->file_size(ec));
        }
      }
      return sum;
    });
    if (!ok) return IOError("cache directory " + dir_ + ": cannot write its size file");
    return Status::Ok();
  }

  bool Reserve(int64_t size) {
    bool kept = false;
    WithSize([&](int64_t total) -> int64_t {
      if (total + size > budget_) return -1;
      kept = true;
      return total + size;
    });
    return kept;
  }

  void Account(int64_t delta) {
    WithSize([&](int64_t total) { return std::max<int64_t>(0, total + delta); });
  }

  // Temporary files of processes that no longer run (killed mid-write).
  void RemoveStaleTemporaries() {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_ + "/tmp", ec)) {
      const std::string name = e.path().filename().string();
      const long pid = std::strtol(name.c_str(), nullptr, 10);
      if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
        fs::remove(e.path(), ec);
      }
    }
  }

  void WriterLoop() {
    uint64_t serial = 0;
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
        busy_ = true;
      }
      const std::string path = dir_ + "/" + EntryPath(job.key);
      const std::string tmp =
          dir_ + "/tmp/" + std::to_string(::getpid()) + "-" + std::to_string(serial++);
      std::error_code ec;
      fs::create_directories(fs::path(path).parent_path(), ec);
      const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      bool ok = fd >= 0 && WriteAll(fd, job.entry, tmp).ok();
      if (fd >= 0) ::close(fd);
      ok = ok && ::rename(tmp.c_str(), path.c_str()) == 0;
      if (!ok) {
        ::unlink(tmp.c_str());
        ++failed_;
        Account(-static_cast<int64_t>(job.entry.size()));
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        writing_.erase(job.key);
        pending_bytes_ -= static_cast<int64_t>(job.entry.size());
        busy_ = false;
      }
      idle_.notify_all();
    }
  }

  const std::string dir_;
  const int64_t budget_;
  int lock_fd_ = -1;
  std::atomic<int64_t> used_{0}, corrupt_{0}, failed_{0};

  std::mutex mu_;
  std::condition_variable cv_, idle_;
  std::deque<Job> queue_;
  std::unordered_set<std::string> writing_;
  int64_t pending_bytes_ = 0;
  bool busy_ = false;
  bool stop_ = false;
  std::thread writer_;
};

CachingStorage::CachingStorage(std::shared_ptr<Storage> inner, const CacheOptions& options)
    : StorageDecorator(std::move(inner)), options_(options) {}

CachingStorage::~CachingStorage() = default;

Result<std::shared_ptr<CachingStorage>> CachingStorage::Open(std::shared_ptr<Storage> inner,
                                                             const CacheOptions& options) {
  if (options.memory_bytes < 0 || options.disk_bytes < 0) {
    return InvalidArgument("cache budgets must be >= 0 bytes");
  }
  auto s = std::shared_ptr<CachingStorage>(new CachingStorage(std::move(inner), options));
  if (options.disk_bytes > 0) {
    std::string dir = options.dir;
    if (dir.empty()) {
      const char* xdg = std::getenv("XDG_CACHE_HOME");
      const char* home = std::getenv("HOME");
      if (xdg && *xdg) {
        dir = std::string(xdg) + "/stoker";
      } else if (home && *home) {
        dir = std::string(home) + "/.cache/stoker";
      } else {
        return InvalidArgument("cache_disk: no cache directory given and neither XDG_CACHE_HOME "
                               "nor HOME is set");
      }
    }
    auto disk = DiskCache::Open(dir, options.disk_bytes);
    if (!disk.ok()) return disk.status();
    s->disk_ = std::move(*disk);
  }
  return s;
}

std::optional<Bytes> CachingStorage::Lookup(const std::string& key) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = memory_.find(key);
    if (it != memory_.end()) {
      Bytes out = recycler_.Take(std::max<size_t>(1, it->second.size()));
      out.assign(it->second.begin(), it->second.end());
      return out;
    }
  }
  if (!disk_) return std::nullopt;
  auto data = disk_->Lookup(key);
  if (!data) return std::nullopt;
  const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(data->data()), data->size());
  KeepInMemory(key, bytes);
  Bytes out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    out = recycler_.Take(std::max<size_t>(1, bytes.size()));
  }
  out.assign(bytes.begin(), bytes.end());
  return out;
}

bool CachingStorage::KeepInMemory(const std::string& key, std::span<const uint8_t> bytes) {
  const int64_t size = static_cast<int64_t>(bytes.size());
  std::lock_guard<std::mutex> lock(mu_);
  if (memory_.count(key) > 0) return true;
  if (memory_used_ + size > options_.memory_bytes) return false;
  memory_.emplace(key, std::vector<uint8_t>(bytes.begin(), bytes.end()));
  memory_used_ += size;
  return true;
}

void CachingStorage::Admit(const std::string& key, const Bytes& bytes) {
  const std::span<const uint8_t> data(bytes.data(), bytes.size());
  if (KeepInMemory(key, data)) return;
  if (disk_ && disk_->Keep(key, data)) return;
  ++not_kept_;
}

Storage::ReadCallback CachingStorage::Keeping(std::string key, ReadCallback done) {
  // Weak: a read may end after this storage is gone (then nothing is kept).
  return [weak = weak_from_this(), key = std::move(key), done = std::move(done)](Result<Bytes> r) {
    if (r.ok()) {
      if (auto self = weak.lock()) self->Admit(key, *r);
    }
    done(std::move(r));
  };
}

void CachingStorage::ReadAsync(const std::string& uri, ReadCallback done, std::stop_token stop) {
  std::string key = CacheKey(uri, 0, 0, /*whole=*/true);
  if (auto hit = Lookup(key)) {
    ++hits_;
    done(std::move(*hit));
    return;
  }
  ++misses_;
  inner_->ReadAsync(uri, Keeping(std::move(key), std::move(done)), std::move(stop));
}

void CachingStorage::ReadRangeAsync(const std::string& uri, ByteRange range, ReadCallback done,
                                    std::stop_token stop) {
  if (AnswerWithoutReading(uri, range, done)) return;
  std::string key = CacheKey(uri, range.offset, range.length, /*whole=*/false);
  if (auto hit = Lookup(key)) {
    ++hits_;
    done(std::move(*hit));
    return;
  }
  ++misses_;
  inner_->ReadRangeAsync(uri, range, Keeping(std::move(key), std::move(done)), std::move(stop));
}

void CachingStorage::Recycle(Bytes bytes) {
  // Hits are copied into buffers of this storage's own; misses come in the
  // inner storage's. Hand back to whichever has fewer kept.
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (recycler_.kept() < 32) {
      recycler_.Put(std::move(bytes));
      return;
    }
  }
  inner_->Recycle(std::move(bytes));
}

StorageCounters CachingStorage::counters() const {
  StorageCounters c = inner_->counters();
  c.cache_hits += hits_.load();
  c.cache_misses += misses_.load();
  {
    std::lock_guard<std::mutex> lock(mu_);
    c.cache_memory_bytes += memory_used_;
  }
  c.cache_not_kept += not_kept_.load();
  if (disk_) {
    c.cache_disk_bytes += disk_->bytes();
    c.cache_corrupt += disk_->corrupt();
    c.cache_not_kept += disk_->not_kept();
  }
  return c;
}

void CachingStorage::Flush() {
  if (disk_) disk_->Flush();
}

}  // namespace stoker::storage::cache
