#include "stoker/storage/file/file_storage.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

namespace stoker::storage {
namespace fs = std::filesystem;

namespace {

Status ErrnoStatus(int err, const std::string& path) {
  std::string reason = std::strerror(err);
  switch (err) {
    case ENOENT:
    case ENOTDIR: return NotFound(path + ": " + reason);
    case EACCES:
    case EPERM: return Status(StatusCode::kPermissionDenied, path + ": " + reason);
    case EISDIR: return InvalidArgument(path + ": is a directory");
    default: return IOError(path + ": " + reason);
  }
}

}  // namespace

std::string FileStorage::ToPath(const std::string& uri) {
  constexpr std::string_view kScheme = "file://";
  if (uri.rfind(kScheme, 0) == 0) return uri.substr(kScheme.size());
  return uri;
}

Result<std::vector<ObjectInfo>> FileStorage::List(const std::string& prefix_uri) {
  const fs::path root = ToPath(prefix_uri);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    if (!fs::exists(root, ec)) return NotFound(root.string() + ": no such directory");
    return InvalidArgument(root.string() + ": not a directory");
  }
  std::vector<ObjectInfo> out;
  auto it = fs::recursive_directory_iterator(
      root, fs::directory_options::follow_directory_symlink |
                fs::directory_options::skip_permission_denied,
      ec);
  if (ec) return IOError(root.string() + ": cannot list: " + ec.message());
  for (auto end = fs::recursive_directory_iterator(); it != end; it.increment(ec)) {
    if (ec) return IOError(root.string() + ": cannot list: " + ec.message());
    std::error_code sec;
    // Directories are not objects. Broken symlinks and other non-directories
    // are listed: reading them gives the sample its own error.
    if (it->is_directory(sec)) continue;
    ObjectInfo info;
    info.key = fs::relative(it->path(), root, sec).generic_string();
    if (sec) info.key = it->path().lexically_relative(root).generic_string();
    std::error_code zec;
    auto size = it->is_regular_file(zec) ? fs::file_size(it->path(), zec) : 0;
    info.size = zec ? -1 : static_cast<int64_t>(size);
    out.push_back(std::move(info));
  }
  std::sort(out.begin(), out.end(),
            [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  return out;
}

Result<Bytes> FileStorage::Read(const std::string& uri) { return Read(uri, std::stop_token()); }

Result<Bytes> FileStorage::Read(const std::string& uri, std::stop_token stop) {
  const std::string path = ToPath(uri);
  requests_.fetch_add(1, std::memory_order_relaxed);
  // O_NONBLOCK: opening a FIFO must not wait for a writer, and reading one
  // must not wait for data past a stop. Regular files ignore the flag.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return ErrnoStatus(errno, path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(err, path);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return ErrnoStatus(EISDIR, path);
  }
  const bool regular = S_ISREG(st.st_mode);
  Bytes data = TakeBuffer();
  // Regular files: one read of the known size; others: read until EOF.
  size_t cap = regular ? static_cast<size_t>(st.st_size) : 1 << 16;
  data.resize(cap);
  size_t got = 0;
  while (true) {
    if (got == data.size()) {
      if (regular) {
        // Check for growth since fstat with a 1-byte probe.
        data.resize(data.size() + 1);
      } else {
        data.resize(data.size() * 2);
      }
    }
    if (!regular && stop.stop_requested()) {
      ::close(fd);
      return Cancelled(path + ": read stopped");
    }
    ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
        ::poll(&p, 1, kPollMs);
        continue;
      }
      int err = errno;
      ::close(fd);
      return ErrnoStatus(err, path);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  data.resize(got);
  bytes_read_.fetch_add(static_cast<int64_t>(got), std::memory_order_relaxed);
  return data;
}

namespace {
constexpr size_t kMaxFreeBuffers = 512;
}  // namespace

Bytes FileStorage::TakeBuffer() {
  std::lock_guard<std::mutex> lock(free_mu_);
  if (free_.empty()) return {};
  Bytes b = std::move(free_.back());
  free_.pop_back();
  return b;
}

void FileStorage::Recycle(Bytes bytes) {
  std::lock_guard<std::mutex> lock(free_mu_);
  if (free_.size() < kMaxFreeBuffers) free_.push_back(std::move(bytes));
}

std::string FileStorage::Join(const std::string& base, const std::string& key) const {
  if (base.empty()) return key;
  if (base.back() == '/') return base + key;
  return base + "/" + key;
}

StorageCounters FileStorage::counters() const {
  StorageCounters c;
  c.requests = requests_.load(std::memory_order_relaxed);
  c.bytes_read = bytes_read_.load(std::memory_order_relaxed);
  return c;
}

}  // namespace stoker::storage
