#include "stoker/storage/file/file_storage.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <new>
#include <system_error>

#include "stoker/base/logging.h"
#include "stoker/storage/registry.h"

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

// Opens `path` for reading if it is a regular file; its size in *size.
Result<int> OpenRegular(const std::string& path, int64_t* size) {
  // O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever.
  // It changes nothing for the regular files read below.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return ErrnoStatus(errno, path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(err, path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    if (S_ISDIR(st.st_mode)) return ErrnoStatus(EISDIR, path);
    // A FIFO can block or never end, a device (say /dev/zero behind a
    // symlink) never ends: reading one would hang or exhaust memory.
    const char* kind = S_ISFIFO(st.st_mode)  ? "a FIFO"
                       : S_ISCHR(st.st_mode) ? "a character device"
                       : S_ISBLK(st.st_mode) ? "a block device"
                       : S_ISSOCK(st.st_mode) ? "a socket"
                                              : "of an unknown type";
    return InvalidArgument(path + ": not a regular file (" + kind + ")");
  }
  *size = static_cast<int64_t>(st.st_size);
  return fd;
}

// Counts a read in flight and its latency.
class Timed {
 public:
  explicit Timed(StorageMeters& m) : m_(m), start_(WallSeconds()) {
    m_.Add(m_.requests);
    m_.Add(m_.in_flight);
  }
  ~Timed() {
    StorageMeters::RecordSeconds(m_.latency_us, WallSeconds() - start_);
    m_.Add(m_.in_flight, -1);
  }
  Timed(const Timed&) = delete;
  Timed& operator=(const Timed&) = delete;

 private:
  StorageMeters& m_;
  const double start_;
};

// An object written to ".<name>.tmp-XXXXXX" beside its target, renamed
// into place on Commit.
class FileWriter final : public ObjectWriter {
 public:
  FileWriter(std::string uri, std::string path, std::string tmp, int fd)
      : ObjectWriter(std::move(uri)), path_(std::move(path)), tmp_(std::move(tmp)), fd_(fd) {}
  ~FileWriter() override { (void)Abort(); }

  Status Append(std::span<const uint8_t> bytes) override {
    if (!error_.ok()) return error_;
    if (done_) return InvalidArgument(path_ + ": written to after Commit or Abort");
    // Small appends gather in a buffer; large ones go straight out.
    if (buffer_.size() + bytes.size() > kBuffer) STOKER_RETURN_IF_ERROR(Flush());
    if (bytes.size() >= kBuffer) {
      STOKER_RETURN_IF_ERROR(WriteAll(bytes.data(), bytes.size()));
    } else {
      buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
    }
    size_ += static_cast<int64_t>(bytes.size());
    return Status::Ok();
  }

  Status Commit() override {
    if (!error_.ok()) return error_;
    if (done_) return InvalidArgument(path_ + ": committed or aborted already");
    STOKER_RETURN_IF_ERROR(Flush());
    if (::fsync(fd_) != 0) return Fail(errno, "cannot write");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return Fail(errno, "cannot write");
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) return Fail(errno, "cannot rename into place");
    done_ = true;
    // The rename itself is durable once the folder is synced.
    const std::string dir = fs::path(path_).parent_path().string();
    const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
    return Status::Ok();
  }

  Status Abort() override {
    if (done_) return Status::Ok();
    done_ = true;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (::unlink(tmp_.c_str()) != 0 && errno != ENOENT) {
      return ErrnoStatus(errno, tmp_).WithContext("cannot remove the temporary file");
    }
    return Status::Ok();
  }

 private:
  static constexpr size_t kBuffer = size_t{1} << 20;

  Status Flush() {
    if (buffer_.empty()) return Status::Ok();
    Status st = WriteAll(buffer_.data(), buffer_.size());
    buffer_.clear();
    return st;
  }

  Status WriteAll(const uint8_t* data, size_t n) {
    size_t done = 0;
    while (done < n) {
      const ssize_t w = ::write(fd_, data + done, n - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return Fail(w < 0 ? errno : EIO, "cannot write");
      done += static_cast<size_t>(w);
    }
    return Status::Ok();
  }

  // The error of `what` on the target, kept; the temporary file removed.
  Status Fail(int err, const char* what) {
    Status st = ErrnoStatus(err, path_);
    error_ = Status(st.code() == StatusCode::kNotFound ? StatusCode::kIOError : st.code(),
                    std::string(what) + " " + st.message());
    (void)Abort();
    return error_;
  }

  const std::string path_, tmp_;
  int fd_ = -1;
  std::vector<uint8_t> buffer_;
  Status error_;
  bool done_ = false;
};

}  // namespace

void RegisterFileStorage() {
  RegisterStorage("file", [](const std::string&, const StorageOptions&) {
    return Result<std::shared_ptr<Storage>>(std::make_shared<FileStorage>());
  });
}

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
  // Depth first with an explicit stack, so that an error names the folder
  // that could not be read. A folder that cannot be listed fails the whole
  // listing: skipping it would silently drop every sample inside it.
  // Directory symlinks are followed, except one that leads back to a folder
  // on the current path (a loop): following it would list the same files
  // again at ever longer paths until the kernel gives up (ELOOP), about 40
  // times over. It holds nothing the listing does not already have.
  struct Dir {
    fs::path path;
    std::vector<std::pair<dev_t, ino_t>> ancestors;  // including this folder
  };
  std::vector<ObjectInfo> out;
  struct stat root_st;
  if (::stat(root.c_str(), &root_st) != 0) return ErrnoStatus(errno, root.string());
  std::vector<Dir> stack;
  stack.push_back({root, {{root_st.st_dev, root_st.st_ino}}});
  while (!stack.empty()) {
    Dir dir = std::move(stack.back());
    stack.pop_back();
    fs::directory_iterator it(dir.path, ec);
    if (ec) return ErrnoStatus(ec.value(), dir.path.string()).WithContext("cannot list");
    for (auto end = fs::directory_iterator(); it != end; it.increment(ec)) {
      if (ec) return ErrnoStatus(ec.value(), dir.path.string()).WithContext("cannot list");
      const fs::path& path = it->path();
      struct stat st;
      // stat follows symlinks; a broken one (or a loop of file symlinks) is
      // listed as a file: reading it gives the sample its own error.
      const bool stat_ok = ::stat(path.c_str(), &st) == 0;
      if (stat_ok && S_ISDIR(st.st_mode)) {
        const std::pair<dev_t, ino_t> id{st.st_dev, st.st_ino};
        if (std::find(dir.ancestors.begin(), dir.ancestors.end(), id) != dir.ancestors.end()) {
          LogWarning("not following " + path.string() +
                     ": a directory symlink back to a folder that contains it");
          continue;
        }
        Dir child{path, dir.ancestors};
        child.ancestors.push_back(id);
        stack.push_back(std::move(child));
        continue;
      }
      ObjectInfo info;
      info.key = path.lexically_relative(root).generic_string();
      info.size = stat_ok && S_ISREG(st.st_mode) ? static_cast<int64_t>(st.st_size) : -1;
      out.push_back(std::move(info));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  return out;
}

Result<Bytes> FileStorage::Read(const std::string& uri) {
  Result<Bytes> r = [&] {
    Timed timed(meters_);
    return ReadWhole(ToPath(uri));
  }();
  meters_.Ended(r);
  return r;
}

void FileStorage::ReadAsync(const std::string& uri, ReadCallback done, std::stop_token stop) {
  if (stop.stop_requested()) {
    meters_.Add(meters_.cancelled);
    done(Cancelled(uri + ": read cancelled"));
    return;
  }
  done(Read(uri));
}

void FileStorage::ReadRangeAsync(const std::string& uri, ByteRange range, ReadCallback done,
                                 std::stop_token stop) {
  if (stop.stop_requested()) {
    meters_.Add(meters_.cancelled);
    done(Cancelled(uri + ": read cancelled"));
    return;
  }
  done(ReadRangeNow(uri, range));
}

Result<Bytes> FileStorage::ReadRangeNow(const std::string& uri, ByteRange range) {
  STOKER_RETURN_IF_ERROR(CheckRange(uri, range));
  if (range.length == 0) return Bytes{};
  const std::string path = ToPath(uri);
  Result<Bytes> result = [&]() -> Result<Bytes> {
    Timed timed(meters_);
    int64_t size = 0;
    STOKER_ASSIGN_OR_RETURN(const int fd, OpenRegular(path, &size));
    // The size at open: bytes the file gained since are not in the range's
    // clamp, as a file that grew after a listing is read as it was.
    const int64_t begin = std::min(range.offset, size);
    const int64_t want = std::min(range.length, size - begin);
    Bytes data;
    try {
      if (want > 0) {
        data = buffers_.Take(static_cast<size_t>(want));
        data.resize(static_cast<size_t>(want));
      }
    } catch (const std::bad_alloc&) {
      ::close(fd);
      return ResourceExhausted(path + ": range of " + std::to_string(want) +
                               " bytes does not fit in memory");
    }
    size_t got = 0;
    while (got < data.size()) {
      const ssize_t n = ::pread(fd, data.data() + got, data.size() - got,
                                static_cast<off_t>(begin + static_cast<int64_t>(got)));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int err = errno;
        ::close(fd);
        return ErrnoStatus(err, path);
      }
      if (n == 0) break;  // the file shrank since fstat
      got += static_cast<size_t>(n);
    }
    ::close(fd);
    data.resize(got);
    return data;
  }();
  meters_.Ended(result);
  return result;
}

Result<Bytes> FileStorage::ReadWhole(const std::string& path) {
  int64_t file_size = 0;
  STOKER_ASSIGN_OR_RETURN(const int fd, OpenRegular(path, &file_size));
  // One read of the known size, then a 1-byte probe into a local to catch
  // growth since fstat (a resize of the full buffer would reallocate and
  // copy every file's bytes). A file too large to hold (a sparse file of
  // terabytes named .jpg) is this sample's error, not the end of the epoch.
  const size_t size = static_cast<size_t>(file_size);
  Bytes data;
  try {
    data = buffers_.Take(size);
    data.resize(size);
  } catch (const std::bad_alloc&) {
    ::close(fd);
    return ResourceExhausted(path + ": file of " + std::to_string(file_size) +
                             " bytes does not fit in memory");
  }
  size_t got = 0;
  while (true) {
    if (got == data.size()) {
      uint8_t probe;
      const ssize_t n = ::read(fd, &probe, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int err = errno;
        ::close(fd);
        return ErrnoStatus(err, path);
      }
      if (n == 0) break;
      data.resize(data.size() * 2 + 1);  // the file grew: rare, copying is fine
      data[got++] = probe;
      continue;
    }
    const ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return ErrnoStatus(err, path);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  data.resize(got);
  return data;
}

Result<std::unique_ptr<ObjectWriter>> FileStorage::OpenWriter(const std::string& uri,
                                                              const WriteOptions& options) {
  (void)options;
  const std::string path = ToPath(uri);
  const fs::path p(path);
  if (path.empty() || path.back() == '/' || !p.has_filename()) {
    return InvalidArgument(uri + ": names a folder, not a file to write");
  }
  const fs::path dir = p.parent_path();
  if (!dir.empty()) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return ErrnoStatus(ec.value(), dir.string()).WithContext("cannot create the folder");
  }
  // Appended piece by piece: GCC 12 warns falsely (-Wrestrict, its bug
  // 105329) about "." + name.
  std::string tmp_name = ".";
  tmp_name += p.filename().string();
  tmp_name += ".tmp-XXXXXX";
  std::string tmp = (dir / tmp_name).string();
  const int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, path).WithContext("cannot create a temporary file for");
  ::fchmod(fd, 0644);  // mkostemp's 0600 would hide the object from other readers
  return std::unique_ptr<ObjectWriter>(new FileWriter(uri, path, std::move(tmp), fd));
}

Status FileStorage::Delete(const std::string& uri) {
  const std::string path = ToPath(uri);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT && errno != ENOTDIR) {
    return ErrnoStatus(errno, path).WithContext("cannot delete");
  }
  return Status::Ok();
}

void FileStorage::Recycle(Bytes bytes) { buffers_.Put(std::move(bytes)); }

std::string FileStorage::Join(const std::string& base, const std::string& key) const {
  if (base.empty()) return key;
  if (base.back() == '/') return base + key;
  return base + "/" + key;
}

StorageCounters FileStorage::counters() const { return meters_.Counters(); }

}  // namespace stoker::storage
