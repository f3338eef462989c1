// stoker convert (include/stoker/convert.h): reads a chunk of samples with
// the storage's concurrent reads while the previous chunk is transcoded on
// `threads` threads, then writes the chunk's records in order. Shards are
// written and synced before the index, which goes to a temporary name and
// is renamed into place last.

#include "stoker/convert.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>

#include "stoker/dataset/dataset.h"
#include "stoker/dataset/shard_format.h"
#include "stoker/decode/decode.h"
#include "stoker/decode/jpeg_restart.h"
#include "stoker/sampler/sampler.h"
#include "stoker/storage/storage.h"
#include "stoker/transform/transform.h"

namespace stoker {
namespace {

namespace fs = std::filesystem;
using dataset::ImageFormat;

constexpr size_t kChunk = 256;       // samples read, transcoded and written together
constexpr size_t kMaxExamples = 5;  // skipped samples named in the summary

std::string ErrnoText(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

// A local path from a destination URI.
Result<std::string> LocalDir(const std::string& uri) {
  if (uri.rfind("file://", 0) == 0) return uri.substr(7);
  if (uri.find("://") != std::string::npos) {
    return Status(StatusCode::kUnsupported,
                  "convert writes to a local folder; " + uri +
                      " is not one (convert locally, then copy the folder to the store)");
  }
  return uri;
}

// Big-endian width and height of a PNG's IHDR (0, 0 if not there).
void PngSize(std::span<const uint8_t> b, uint32_t* w, uint32_t* h) {
  *w = *h = 0;
  if (b.size() < 24) return;
  auto be = [&](size_t i) {
    return uint32_t{b[i]} << 24 | uint32_t{b[i + 1]} << 16 | uint32_t{b[i + 2]} << 8 | b[i + 3];
  };
  *w = be(16);
  *h = be(20);
}

// One sample of a chunk: what was read, then what will be written.
struct Item {
  uint64_t source = 0;
  std::optional<Result<storage::Bytes>> image;
  std::vector<std::optional<Result<storage::Bytes>>> files;  // by field; file fields only
  // Out:
  int64_t bytes_in = 0;
  Status error;
  std::vector<uint8_t> record;
  dataset::ShardEntry entry;
  std::vector<uint32_t> field_lengths;
  int jpeg = 0;  // 1 indexed, 2 kept
  int shrunk = 0;  // --max-size made it smaller
};

// The reads of one chunk, and a count of those not yet answered.
struct Chunk {
  std::vector<Item> items;
  std::mutex mu;
  std::condition_variable cv;
  size_t left = 0;

  void Done() {
    std::lock_guard<std::mutex> lock(mu);
    if (--left == 0) cv.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return left == 0; });
  }
};

class Converter {
 public:
  Converter(const ConvertOptions& o, std::shared_ptr<storage::Storage> storage,
            dataset::Dataset d, std::string dir)
      : o_(o), storage_(std::move(storage)), d_(std::move(d)), dir_(std::move(dir)) {}

  Result<ConvertProgress> Run(const ConvertProgressFn& progress);

 private:
  std::shared_ptr<Chunk> Issue(uint64_t first);
  void Transcode(Item& item, decode::Decoder& decoder, transform::Scratch& scratch) const;
  // --max-size: the image shrunk and encoded anew, if it is larger.
  Status Shrink(std::span<const uint8_t> bytes, Item& item, decode::Decoder& decoder,
                transform::Scratch& scratch) const;
  Status Write(Chunk& chunk);
  Status OpenShard();
  Status CloseShard();
  Status WriteIndex();

  const ConvertOptions& o_;
  std::shared_ptr<storage::Storage> storage_;
  dataset::Dataset d_;
  std::string dir_;
  std::optional<sampler::Permutation> order_;
  std::unique_ptr<dataset::ShardIndexBuilder> builder_;
  ConvertProgress p_;
  // The shard being written.
  FILE* file_ = nullptr;
  std::string path_;
  uint32_t shard_ = 0;
  uint64_t shard_bytes_ = 0;
  uint32_t shard_samples_ = 0;
  std::vector<char> file_buffer_;
};

std::shared_ptr<Chunk> Converter::Issue(uint64_t first) {
  auto chunk = std::make_shared<Chunk>();
  const uint64_t n = d_.size();
  const uint64_t end = std::min<uint64_t>(n, first + kChunk);
  chunk->items.resize(end - first);
  size_t reads = 0;
  for (uint64_t i = first; i < end; ++i) {
    Item& item = chunk->items[i - first];
    item.source = order_ ? (*order_)(i) : i;
    item.files.resize(d_.fields.size());
    reads += 1;
    if (!d_.shards) {
      const auto& s = d_.samples[item.source];
      for (size_t f = 0; f < d_.fields.size(); ++f) reads += d_.fields[f].file && s.fields[f] ? 1 : 0;
    }
  }
  chunk->left = reads;
  for (size_t j = 0; j < chunk->items.size(); ++j) {
    Item& item = chunk->items[j];
    if (d_.shards) {
      const auto e = d_.shards->entry(item.source);
      storage_->ReadRangeAsync(
          d_.shards->shard_uris[e.shard],
          storage::ByteRange{static_cast<int64_t>(e.offset), static_cast<int64_t>(e.length)},
          [chunk, j](Result<storage::Bytes> r) {
            chunk->items[j].image.emplace(std::move(r));
            chunk->Done();
          },
          {});
      continue;
    }
    const auto& s = d_.samples[item.source];
    storage_->ReadAsync(s.uri, [chunk, j](Result<storage::Bytes> r) {
      chunk->items[j].image.emplace(std::move(r));
      chunk->Done();
    });
    for (size_t f = 0; f < d_.fields.size(); ++f) {
      if (!d_.fields[f].file || !s.fields[f]) continue;
      storage_->ReadAsync(*s.fields[f], [chunk, j, f](Result<storage::Bytes> r) {
        chunk->items[j].files[f].emplace(std::move(r));
        chunk->Done();
      });
    }
  }
  return chunk;
}

Status Converter::Shrink(std::span<const uint8_t> bytes, Item& item, decode::Decoder& decoder,
                         transform::Scratch& scratch) const {
  auto& e = item.entry;
  const uint32_t longer = std::max(e.width, e.height);
  if (longer != 0 && longer <= static_cast<uint32_t>(o_.max_size)) return Status::Ok();
  auto full = decoder.DecodeFull(bytes);
  if (!full.ok()) return full.status();
  const int w = full->width, h = full->height;
  if (std::max(w, h) <= o_.max_size) return Status::Ok();
  const double s = static_cast<double>(o_.max_size) / std::max(w, h);
  const int nw = std::max(1, static_cast<int>(std::lround(w * s)));
  const int nh = std::max(1, static_cast<int>(std::lround(h * s)));
  std::vector<uint8_t> chw(size_t{3} * nw * nh), hwc(chw.size());
  transform::OutputSpec spec;
  spec.width = nw;
  spec.height = nh;
  image::Region region;
  region.image = *full;
  region.crop = image::Rect{0, 0, static_cast<double>(w), static_cast<double>(h)};
  region.source_width = w;
  region.source_height = h;
  transform::ResizeToCHW(region, spec, /*flip=*/false, chw.data(), scratch);
  const size_t plane = static_cast<size_t>(nw) * nh;
  for (size_t i = 0; i < plane; ++i) {
    hwc[3 * i] = chw[i];
    hwc[3 * i + 1] = chw[plane + i];
    hwc[3 * i + 2] = chw[2 * plane + i];
  }
  auto r = decode::EncodeWithRestarts(hwc.data(), nw, nh, size_t{3} * nw, o_.quality);
  if (!r.ok()) return r.status();
  item.record = std::move(r->bytes);
  e.image_format = ImageFormat::kJpegRestart;
  e.scan_offset = r->scan_offset;
  e.width = static_cast<uint32_t>(nw);
  e.height = static_cast<uint32_t>(nh);
  item.jpeg = 1;
  ++item.shrunk;
  return Status::Ok();
}

void Converter::Transcode(Item& item, decode::Decoder& decoder, transform::Scratch& scratch) const {
  const std::string name = d_.SampleName(item.source);
  if (!item.image->ok()) {
    item.error = item.image->status().WithContext(name);
    return;
  }
  const storage::Bytes& raw = **item.image;
  std::span<const uint8_t> bytes(raw.data(), raw.size());
  auto& e = item.entry;
  e.source = d_.shards ? d_.shards->entry(item.source).source : item.source;
  e.label = d_.label(item.source);
  if (d_.shards) {  // a shard dataset's record: check it, take its image
    if (Status st = d_.shards->CheckRecord(bytes, item.source); !st.ok()) {
      item.error = st.WithContext(name);
      return;
    }
    bytes = d_.shards->Image(bytes, item.source);
  }
  std::vector<uint8_t>& rec = item.record;
  switch (decode::DetectFormat(bytes)) {
    case decode::Format::kJpeg: {
      auto r = decode::RewriteWithRestarts(bytes, o_.max_pixels, o_.optimize_huffman);
      if (r.ok()) {
        rec = std::move(r->bytes);
        e.image_format = ImageFormat::kJpegRestart;
        e.scan_offset = r->scan_offset;
        e.width = static_cast<uint32_t>(r->width);
        e.height = static_cast<uint32_t>(r->height);
        item.jpeg = 1;
      } else if (r.status().code() == StatusCode::kUnsupported) {
        rec.assign(bytes.begin(), bytes.end());  // as it is: decoded the usual way
        e.image_format = ImageFormat::kJpeg;
        item.jpeg = 2;
      } else {
        item.error = r.status().WithContext(name);
        return;
      }
      break;
    }
    case decode::Format::kPng:
      rec.assign(bytes.begin(), bytes.end());
      e.image_format = ImageFormat::kPng;
      PngSize(bytes, &e.width, &e.height);
      break;
    default:
      item.error = Status(StatusCode::kUnsupported, name + ": not a JPEG or PNG image");
      return;
  }
  if (o_.max_size > 0) {
    if (Status st = Shrink(bytes, item, decoder, scratch); !st.ok()) {
      item.error = st.WithContext(name);
      return;
    }
  }
  e.image_length = static_cast<uint32_t>(rec.size());
  // The fields, after the image, in the index's order.
  item.field_lengths.assign(d_.fields.size(), dataset::kFieldMissing);
  for (size_t f = 0; f < d_.fields.size(); ++f) {
    std::span<const uint8_t> value;
    if (d_.shards && d_.shards->field_map[f] == dataset::Shards::kKeyField) {
      const std::string_view key = d_.shards->key(item.source);
      value = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(key.data()), key.size());
    } else if (d_.shards) {
      const auto range = d_.shards->field_range(item.source, d_.shards->field_map[f]);
      if (!range) continue;
      value = std::span<const uint8_t>(raw.data() + range->offset, range->length);
    } else {
      const auto& v = d_.samples[item.source].fields[f];
      if (!v) continue;
      if (d_.fields[f].file) {
        const auto& file = *item.files[f];
        if (!file.ok()) {
          item.error = Status(file.status().code(), name + ": field '" + d_.fields[f].name +
                                                        "' (" + *v + "): " + file.status().message());
          return;
        }
        value = std::span<const uint8_t>(file->data(), file->size());
      } else {
        value = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v->data()), v->size());
      }
    }
    if (rec.size() + value.size() > UINT32_MAX) {
      item.error = Status(StatusCode::kUnsupported, name + ": a sample of 4 GiB or more");
      return;
    }
    rec.insert(rec.end(), value.begin(), value.end());
    item.field_lengths[f] = static_cast<uint32_t>(value.size());
  }
  e.length = static_cast<uint32_t>(rec.size());
  e.crc = dataset::Crc32c(rec);
}

Status Converter::OpenShard() {
  path_ = (fs::path(dir_) / dataset::ShardName(shard_)).string();
  file_ = std::fopen(path_.c_str(), "wb");
  if (file_ == nullptr) return Status(StatusCode::kIOError, ErrnoText("cannot create", path_));
  file_buffer_.resize(size_t{1} << 20);
  std::setvbuf(file_, file_buffer_.data(), _IOFBF, file_buffer_.size());
  const std::string header = dataset::EncodeShardHeader(shard_);
  if (std::fwrite(header.data(), 1, header.size(), file_) != header.size()) {
    return Status(StatusCode::kIOError, ErrnoText("cannot write", path_));
  }
  shard_bytes_ = header.size();
  shard_samples_ = 0;
  return Status::Ok();
}

Status Converter::CloseShard() {
  if (file_ == nullptr) return Status::Ok();
  const bool ok = std::fflush(file_) == 0 && ::fsync(fileno(file_)) == 0;
  const int err = errno;
  std::fclose(file_);
  file_ = nullptr;
  if (!ok) {
    errno = err;
    return Status(StatusCode::kIOError, ErrnoText("cannot write", path_));
  }
  builder_->AddShard(shard_bytes_, shard_samples_);
  p_.bytes_out += static_cast<int64_t>(shard_bytes_);
  ++p_.shards;
  ++shard_;
  return Status::Ok();
}

Status Converter::Write(Chunk& chunk) {
  for (Item& item : chunk.items) {
    ++p_.samples_done;
    p_.bytes_in += item.bytes_in;
    if (!item.error.ok()) {
      if (o_.on_error == OnError::kRaise) return item.error;
      ++p_.samples_skipped;
      if (p_.skipped_examples.size() < kMaxExamples) {
        p_.skipped_examples.push_back(item.error.message());
      }
      continue;
    }
    p_.jpegs_indexed += item.jpeg == 1;
    p_.jpegs_kept += item.jpeg == 2;
    p_.images_shrunk += item.shrunk;
    if (file_ != nullptr && shard_samples_ > 0 &&
        shard_bytes_ + item.record.size() > o_.shard_size) {
      STOKER_RETURN_IF_ERROR(CloseShard());
    }
    if (file_ == nullptr) STOKER_RETURN_IF_ERROR(OpenShard());
    if (std::fwrite(item.record.data(), 1, item.record.size(), file_) != item.record.size()) {
      return Status(StatusCode::kIOError, ErrnoText("cannot write", path_));
    }
    item.entry.shard = shard_;
    item.entry.offset = shard_bytes_;
    builder_->Add(item.entry, item.field_lengths);
    shard_bytes_ += item.record.size();
    ++shard_samples_;
    item.record = {};
  }
  return Status::Ok();
}

Status Converter::WriteIndex() {
  const std::string bytes = builder_->Finish();
  const std::string final_path = (fs::path(dir_) / dataset::kShardIndexName).string();
  const std::string tmp = final_path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status(StatusCode::kIOError, ErrnoText("cannot create", tmp));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      ::close(fd);
      return Status(StatusCode::kIOError, ErrnoText("cannot write", tmp));
    }
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    return Status(StatusCode::kIOError, ErrnoText("cannot write", tmp));
  }
  if (std::rename(tmp.c_str(), final_path.c_str()) != 0) {
    return Status(StatusCode::kIOError, ErrnoText("cannot rename to", final_path));
  }
  const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  p_.bytes_out += static_cast<int64_t>(bytes.size());
  return Status::Ok();
}

Result<ConvertProgress> Converter::Run(
    const ConvertProgressFn& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  // The destination: an index of an earlier conversion goes first, so that
  // nothing reads as a complete dataset until this one is.
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return Status(StatusCode::kIOError, "cannot create " + dir_ + ": " + ec.message());
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (name == dataset::kShardIndexName || name == std::string(dataset::kShardIndexName) + ".tmp" ||
        (name.rfind("shard-", 0) == 0 && name.size() > 7 &&
         name.compare(name.size() - 7, 7, ".stoker") == 0)) {
      fs::remove(entry.path(), ec);
      if (ec) return Status(StatusCode::kIOError, "cannot remove " + entry.path().string());
    }
  }
  if (ec) return Status(StatusCode::kIOError, "cannot list " + dir_ + ": " + ec.message());

  std::vector<dataset::ShardField> fields;
  for (const auto& f : d_.fields) fields.push_back({f.name, f.kind});
  builder_ = std::make_unique<dataset::ShardIndexBuilder>(d_.classes, fields);
  const uint64_t n = d_.size();
  if (o_.shuffle_seed) order_.emplace(n, *o_.shuffle_seed);
  p_.samples_total = static_cast<int64_t>(n);
  const int threads = o_.threads > 0 ? o_.threads
                                     : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };

  std::shared_ptr<Chunk> next = n > 0 ? Issue(0) : nullptr;
  for (uint64_t first = 0; first < n; first += kChunk) {
    std::shared_ptr<Chunk> chunk = std::move(next);
    chunk->Wait();
    if (first + kChunk < n) next = Issue(first + kChunk);  // read ahead while transcoding
    std::atomic<size_t> at{0};
    auto work = [&] {
      decode::Decoder decoder(decode::DecodeOptions{.max_pixels = o_.max_pixels});
      transform::Scratch scratch;
      for (size_t j; (j = at.fetch_add(1)) < chunk->items.size();) {
        Item& item = chunk->items[j];
        if (item.image && item.image->ok()) item.bytes_in += static_cast<int64_t>((*item.image)->size());
        for (auto& f : item.files) {
          if (f && f->ok()) item.bytes_in += static_cast<int64_t>((*f)->size());
        }
        try {
          Transcode(item, decoder, scratch);
        } catch (const std::exception& e) {
          item.error = Internal(d_.SampleName(item.source) + ": " + e.what());
        }
        if (item.image && item.image->ok()) storage_->Recycle(std::move(**item.image));
      }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    Status st = Write(*chunk);
    if (!st.ok()) {
      if (file_ != nullptr) std::fclose(file_), file_ = nullptr;
      if (next) next->Wait();  // its callbacks hold the chunk, not this frame
      return st;
    }
    p_.seconds = elapsed();
    if (progress && !progress(p_)) {
      if (file_ != nullptr) std::fclose(file_), file_ = nullptr;
      if (next) next->Wait();
      return Status(StatusCode::kCancelled, "convert: stopped before the index was written");
    }
  }
  STOKER_RETURN_IF_ERROR(CloseShard());
  STOKER_RETURN_IF_ERROR(WriteIndex());
  p_.seconds = elapsed();
  if (progress) progress(p_);
  return p_;
}

}  // namespace

Result<ConvertProgress> Convert(const ConvertOptions& options,
                                const ConvertProgressFn& progress) {
  if (options.src.empty()) return InvalidArgument("convert: the source is empty");
  if (options.shard_size < 1024) return InvalidArgument("convert: shard_size below 1 KiB");
  if (options.max_size < 0) return InvalidArgument("convert: max_size must be >= 0 (0: off)");
  if (options.quality < 1 || options.quality > 100) {
    return InvalidArgument("convert: quality must be 1 to 100");
  }
  for (const FieldSpec& f : options.fields) {
    if (options.max_size > 0 && f.kind == FieldSpec::Kind::kMask) {
      return InvalidArgument("convert: max_size shrinks images, and mask field '" + f.name +
                             "' would no longer match its image");
    }
  }
  STOKER_ASSIGN_OR_RETURN(std::string dir, LocalDir(options.dst));
  if (dir.empty()) return InvalidArgument("convert: the destination is empty");
  auto storage = storage::OpenStorage(options.src, {.endpoint_url = options.endpoint_url,
                                                     .io = options.io});
  if (!storage.ok()) return storage.status();
  auto d = dataset::OpenDataset(options.src, **storage, options.fields, {}, options.label_field);
  if (!d.ok()) return d.status();
  // Converting a shard dataset into its own folder would delete the shards
  // it reads from.
  if (d->shards && storage::IsLocal(d->shards->root)) {
    std::error_code e1, e2;
    auto local = LocalDir(d->shards->root);
    const std::string root = local.ok() ? *local : d->shards->root;
    if (fs::exists(dir, e1) && fs::equivalent(fs::path(root), fs::path(dir), e2)) {
      return InvalidArgument("convert: " + options.dst + " is the source's own folder; convert "
                             "into another one");
    }
  }
  Converter c(options, *storage, std::move(*d), dir);
  auto r = c.Run(progress);
  (*storage)->Shutdown();
  return r;
}

}  // namespace stoker
