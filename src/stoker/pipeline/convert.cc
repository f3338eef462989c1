// stoker convert (include/stoker/convert.h): reads a chunk of samples with
// the storage's concurrent reads while the previous chunk is transcoded on
// `threads` threads, then writes the chunk's records in order. Each shard
// is one storage writer (a local file renamed into place once synced, or an
// S3 multipart upload whose parts go out as the shard grows), committed
// before the next begins; the index is written last, in one Put.

#include "stoker/convert.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <thread>

#include "stoker/base/logging.h"
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
constexpr int64_t kMinPartSize = int64_t{5} << 20;  // S3's smallest part (but the last)

// A local path from a file:// URI or plain path.
std::string LocalPath(const std::string& uri) {
  return uri.rfind("file://", 0) == 0 ? uri.substr(7) : uri;
}

bool IsS3(const std::string& uri) {
  return uri.size() >= 5 && std::equal(uri.begin(), uri.begin() + 5, "s3://", [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == b;
         });
}

// `uri` without trailing slashes ("s3://b/p/" and "s3://b/p" are one prefix).
std::string TrimSlashes(std::string uri) {
  while (uri.size() > 1 && uri.back() == '/') uri.pop_back();
  return uri;
}

// What an earlier conversion left at a destination: its index, shards and
// temporaries (a local writer's hidden ".<name>.tmp-XXXXXX", the index's
// old "index.stoker.tmp"). Keys directly under the destination only.
bool IsConversionObject(const std::string& key) {
  if (key.find('/') != std::string::npos) return false;
  const std::string index = dataset::kShardIndexName;
  if (key == index || key == index + ".tmp" || key.rfind("." + index + ".tmp-", 0) == 0) {
    return true;
  }
  const std::string name = key.rfind(".shard-", 0) == 0 ? key.substr(1) : key;
  if (name.rfind("shard-", 0) != 0) return false;
  const size_t ext = name.find(".stoker");
  if (ext == std::string::npos || ext == 6) return false;
  for (size_t i = 6; i < ext; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
  }
  const std::string rest = name.substr(ext + 7);
  return key[0] == '.' ? rest.rfind(".tmp-", 0) == 0 : rest.empty();
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
  // Reads from `storage`, writes to `out` under the prefix `dst`.
  Converter(const ConvertOptions& o, std::shared_ptr<storage::Storage> storage,
            std::shared_ptr<storage::Storage> out, dataset::Dataset d, std::string dst)
      : o_(o), storage_(std::move(storage)), out_(std::move(out)), d_(std::move(d)),
        dst_(std::move(dst)) {}

  Result<ConvertProgress> Run(const ConvertProgressFn& progress);

 private:
  std::shared_ptr<Chunk> Issue(uint64_t first);
  void Transcode(Item& item, decode::Decoder& decoder, transform::Scratch& scratch) const;
  // --max-size: the image shrunk and encoded anew, if it is larger.
  Status Shrink(std::span<const uint8_t> bytes, Item& item, decode::Decoder& decoder,
                transform::Scratch& scratch) const;
  Status Write(Chunk& chunk);
  // Removes what an earlier conversion left at the destination, the index
  // first: from then on nothing there reads as a dataset until this
  // conversion's index is written.
  Status ClearEarlier();
  Status OpenShard();
  Status CloseShard();
  Status WriteIndex();
  std::string Uri(const std::string& name) const { return out_->Join(dst_, name); }

  const ConvertOptions& o_;
  std::shared_ptr<storage::Storage> storage_;
  std::shared_ptr<storage::Storage> out_;
  dataset::Dataset d_;
  std::string dst_;
  std::optional<sampler::Permutation> order_;
  std::unique_ptr<dataset::ShardIndexBuilder> builder_;
  ConvertProgress p_;
  // The shard being written; dropping it uncommitted aborts it (its
  // temporary file removed, its multipart upload aborted).
  std::unique_ptr<storage::ObjectWriter> shard_writer_;
  uint32_t shard_ = 0;
  uint64_t shard_bytes_ = 0;
  uint32_t shard_samples_ = 0;
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

Status Converter::ClearEarlier() {
  const bool local = storage::IsLocal(dst_);
  const fs::path dir = LocalPath(dst_);
  if (local) {  // made now, so that a folder that cannot be is an error before any reading
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
      return Status(StatusCode::kIOError, "convert: cannot create " + dir.string() + ": " +
                                              ec.message());
    }
  }
  const std::string index = Uri(dataset::kShardIndexName);
  STOKER_RETURN_IF_ERROR(out_->Delete(index).WithContext("convert: cannot clear the destination"));
  std::vector<std::string> keys;
  if (local) {
    // The folder's own entries, not its subfolders' (a destination may be a
    // folder holding much else).
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      keys.push_back(entry.path().filename().string());
    }
    if (ec) {
      return Status(StatusCode::kIOError, "convert: cannot list " + dir.string() + ": " + ec.message());
    }
  } else {
    auto listed = out_->List(dst_);
    if (!listed.ok() && listed.status().code() == StatusCode::kNotFound) return Status::Ok();
    if (!listed.ok() && listed.status().code() == StatusCode::kPermissionDenied) {
      // Writing needs no listing: the shards written replace theirs, and
      // shards of an earlier, larger conversion, which stay, are never
      // read (the index names the shards it has).
      LogWarning("convert: " + listed.status().message() +
                 "; shards an earlier conversion left beyond this one's are not removed");
      return Status::Ok();
    }
    if (!listed.ok()) return listed.status().WithContext("convert: cannot clear the destination");
    for (const auto& o : *listed) keys.push_back(o.key);
  }
  for (const std::string& key : keys) {
    if (!IsConversionObject(key)) continue;
    STOKER_RETURN_IF_ERROR(out_->Delete(Uri(key)).WithContext("convert: cannot clear the destination"));
  }
  return Status::Ok();
}

Status Converter::OpenShard() {
  auto w = out_->OpenWriter(Uri(dataset::ShardName(shard_)),
                            {.part_size = o_.part_size, .parts_in_flight = 4});
  if (!w.ok()) return w.status();
  shard_writer_ = std::move(*w);
  const std::string header = dataset::EncodeShardHeader(shard_);
  STOKER_RETURN_IF_ERROR(shard_writer_->Append(header));
  shard_bytes_ = header.size();
  shard_samples_ = 0;
  return Status::Ok();
}

Status Converter::CloseShard() {
  if (shard_writer_ == nullptr) return Status::Ok();
  const Status st = shard_writer_->Commit();
  shard_writer_.reset();
  STOKER_RETURN_IF_ERROR(st);
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
    if (shard_writer_ != nullptr && shard_samples_ > 0 &&
        shard_bytes_ + item.record.size() > o_.shard_size) {
      STOKER_RETURN_IF_ERROR(CloseShard());
    }
    if (shard_writer_ == nullptr) STOKER_RETURN_IF_ERROR(OpenShard());
    STOKER_RETURN_IF_ERROR(shard_writer_->Append(item.record));
    item.entry.shard = shard_;
    item.entry.offset = shard_bytes_;
    builder_->Add(item.entry, item.field_lengths);
    shard_bytes_ += item.record.size();
    ++shard_samples_;
    item.record = {};
  }
  return Status::Ok();
}

// Locally a temporary file, synced and renamed into place; on S3 one
// PutObject: either way it appears whole or not at all.
Status Converter::WriteIndex() {
  const std::string bytes = builder_->Finish();
  STOKER_RETURN_IF_ERROR(out_->Put(
      Uri(dataset::kShardIndexName),
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())));
  p_.bytes_out += static_cast<int64_t>(bytes.size());
  return Status::Ok();
}

Result<ConvertProgress> Converter::Run(
    const ConvertProgressFn& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  STOKER_RETURN_IF_ERROR(ClearEarlier());

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
      shard_writer_.reset();   // aborted: no temporary file, no upload left open
      if (next) next->Wait();  // its callbacks hold the chunk, not this frame
      return st;
    }
    p_.seconds = elapsed();
    if (progress && !progress(p_)) {
      shard_writer_.reset();
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
  if (options.dst.empty() || LocalPath(options.dst).empty()) {
    return InvalidArgument("convert: the destination is empty");
  }
  const bool to_s3 = IsS3(options.dst);
  if (!to_s3 && !storage::IsLocal(options.dst)) {
    return Status(StatusCode::kUnsupported,
                  "convert writes to a local folder or an s3:// prefix; " + options.dst +
                      " is neither");
  }
  if (to_s3 && options.part_size < kMinPartSize) {
    return InvalidArgument("convert: part_size " + std::to_string(options.part_size) +
                           " is below S3's smallest part, 5 MiB");
  }
  const storage::StorageOptions storage_options{.endpoint_url = options.endpoint_url,
                                                .io = options.io};
  auto storage = storage::OpenStorage(options.src, storage_options);
  if (!storage.ok()) return storage.status();
  // The destination's own storage: its writes do not queue behind the reads.
  auto out = storage::OpenStorage(options.dst, storage_options);
  if (!out.ok()) {
    (*storage)->Shutdown();
    return out.status();
  }
  auto shutdown = [&] {
    (*storage)->Shutdown();
    (*out)->Shutdown();
  };
  auto d = dataset::OpenDataset(options.src, **storage, options.fields, {}, options.label_field);
  if (!d.ok()) {
    shutdown();
    return d.status();
  }
  // Converting a shard dataset into its own folder or prefix would delete
  // the shards it reads from.
  if (d->shards) {
    const std::string& root = d->shards->root;
    bool same = false;
    if (storage::IsLocal(root) && !to_s3) {
      std::error_code e1, e2;
      const std::string dir = LocalPath(options.dst);
      same = fs::exists(dir, e1) && fs::equivalent(fs::path(LocalPath(root)), fs::path(dir), e2);
    } else if (IsS3(root) && to_s3) {
      same = TrimSlashes(root) == TrimSlashes(options.dst);
    }
    if (same) {
      shutdown();
      return InvalidArgument("convert: " + options.dst + " is the source's own " +
                             (to_s3 ? "prefix" : "folder") + "; convert into another one");
    }
  }
  Converter c(options, *storage, *out, std::move(*d), options.dst);
  auto r = c.Run(progress);
  shutdown();
  return r;
}

}  // namespace stoker
