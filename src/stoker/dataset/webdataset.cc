// WebDataset tars as a shard dataset: brace patterns, the walk that indexes
// each tar (dataset/tar.h), and the in-memory TarIndex the pipeline reads
// records through (docs/webdataset.md).

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <limits>
#include <mutex>
#include <thread>
#include <utility>

#include "stoker/dataset/dataset.h"
#include "stoker/dataset/tar.h"

namespace stoker::dataset {
namespace {

// docs/webdataset.md gives the index's memory per sample.
static_assert(sizeof(TarIndex::Entry) == 48);

constexpr size_t kMaxExpansion = 1'000'000;
// Bytes asked for per read while indexing a tar: a header and the small
// files after it locally; large runs remotely, where each request costs a
// round trip.
constexpr size_t kLocalChunk = size_t{64} << 10;
constexpr size_t kRemoteChunk = size_t{4} << 20;
constexpr int kRemoteIndexThreads = 16;
// A label file holds a number; anything longer is not a label.
constexpr uint64_t kMaxLabelFile = 64;

bool EndsWithNoCase(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[s.size() - suffix.size() + i])) !=
        std::tolower(static_cast<unsigned char>(suffix[i]))) {
      return false;
    }
  }
  return true;
}

// The position of the brace closing the one at `open`, or npos.
size_t MatchingBrace(std::string_view s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    if (s[i] == '{') ++depth;
    if (s[i] == '}' && --depth == 0) return i;
  }
  return std::string_view::npos;
}

// The alternatives of a brace's contents: "a,b{c,d}" -> "a", "b{c,d}";
// "007..012" -> "007", ..., "012"; anything else is itself, braces kept.
Result<std::vector<std::string>> BraceOptions(std::string_view body, bool& literal) {
  std::vector<std::string> out;
  int depth = 0;
  size_t start = 0;
  bool comma = false;
  for (size_t i = 0; i <= body.size(); ++i) {
    if (i < body.size() && body[i] == '{') ++depth;
    if (i < body.size() && body[i] == '}') --depth;
    if (i == body.size() || (body[i] == ',' && depth == 0)) {
      if (i < body.size()) comma = true;
      out.emplace_back(body.substr(start, i - start));
      start = i + 1;
    }
  }
  if (comma) return out;
  const size_t dots = body.find("..");
  if (dots != std::string_view::npos) {
    const std::string_view a = body.substr(0, dots), b = body.substr(dots + 2);
    int64_t x = 0, y = 0;
    auto [pa, ea] = std::from_chars(a.data(), a.data() + a.size(), x);
    auto [pb, eb] = std::from_chars(b.data(), b.data() + b.size(), y);
    if (!a.empty() && !b.empty() && ea == std::errc() && eb == std::errc() &&
        pa == a.data() + a.size() && pb == b.data() + b.size()) {
      const auto padded = [](std::string_view v) {
        const std::string_view digits = v.starts_with('-') ? v.substr(1) : v;
        return digits.size() > 1 && digits[0] == '0';
      };
      const size_t width = padded(a) || padded(b) ? std::max(a.size(), b.size()) : 0;
      const uint64_t diff = x <= y ? static_cast<uint64_t>(y) - static_cast<uint64_t>(x)
                                   : static_cast<uint64_t>(x) - static_cast<uint64_t>(y);
      if (diff >= kMaxExpansion) {
        return InvalidArgument("{" + std::string(body) + "} stands for more than 1,000,000 names");
      }
      out.clear();
      for (int64_t v = x;; v += x <= y ? 1 : -1) {
        std::string t = std::to_string(v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v));
        const size_t w = width > 0 && v < 0 ? width - 1 : width;
        if (t.size() < w) t.insert(0, w - t.size(), '0');
        out.push_back(v < 0 ? "-" + t : t);
        if (v == y) break;
      }
      return out;
    }
  }
  literal = true;
  std::string kept(1, '{');
  kept.append(body);
  kept.push_back('}');
  return std::vector<std::string>{std::move(kept)};
}

Status Expand(std::string_view pattern, std::vector<std::string>& out, const std::string& whole) {
  const size_t open = pattern.find('{');
  if (open == std::string_view::npos) {
    out.emplace_back(pattern);
    return Status::Ok();
  }
  const size_t close = MatchingBrace(pattern, open);
  if (close == std::string_view::npos) {
    return InvalidArgument("'" + whole + "': a '{' without its '}'");
  }
  bool literal = false;
  auto options = BraceOptions(pattern.substr(open + 1, close - open - 1), literal);
  if (!options.ok()) return options.status();
  if (options->size() > kMaxExpansion) {
    return InvalidArgument("'" + whole + "' stands for more than 1,000,000 names");
  }
  std::vector<std::string> rest;
  STOKER_RETURN_IF_ERROR(Expand(pattern.substr(close + 1), rest, whole));
  const std::string_view head = pattern.substr(0, open);
  for (const std::string& option : *options) {
    std::vector<std::string> inner;
    if (literal) {
      inner.push_back(option);  // "{x}": no comma, no range; kept as it is
    } else {
      STOKER_RETURN_IF_ERROR(Expand(option, inner, whole));
    }
    for (const std::string& i : inner) {
      for (const std::string& r : rest) {
        if (out.size() >= kMaxExpansion) {
          return InvalidArgument("'" + whole + "' stands for more than 1,000,000 names");
        }
        out.push_back(std::string(head) + i + r);
      }
    }
  }
  return Status::Ok();
}

// Reads a tar for WalkTar through storage, a chunk at a time.
class TarReader {
 public:
  TarReader(storage::Storage& storage, std::string uri, size_t chunk)
      : storage_(storage), uri_(std::move(uri)), chunk_(chunk) {}

  Result<std::span<const uint8_t>> Read(uint64_t offset, size_t length) {
    const bool held = offset >= at_ && offset - at_ <= buffer_.size() &&
                      (buffer_.size() - (offset - at_) >= length || short_);
    if (!held) {
      const size_t want = std::max(length, chunk_);
      auto bytes = storage_.ReadRange(
          uri_, storage::ByteRange{static_cast<int64_t>(offset), static_cast<int64_t>(want)});
      if (!bytes.ok()) return bytes.status();
      if (buffer_.capacity() > 0) storage_.Recycle(std::move(buffer_));
      buffer_ = std::move(*bytes);
      at_ = offset;
      short_ = buffer_.size() < want;  // the object ends inside this chunk
    }
    const size_t from = static_cast<size_t>(offset - at_);
    return std::span<const uint8_t>(buffer_.data() + from,
                                    std::min(length, buffer_.size() - from));
  }

 private:
  storage::Storage& storage_;
  std::string uri_;
  size_t chunk_;
  storage::Bytes buffer_;
  uint64_t at_ = 0;
  bool short_ = false;
};

// A field asked for: a file extension, or the key.
struct TarField {
  std::string ext;  // empty for the key
  bool key = false;
};

// One tar's part of the index.
struct TarPart {
  std::vector<TarIndex::Entry> entries;
  std::vector<FieldRange> ranges;
  std::string keys;
  uint64_t size = 0;  // the tar's bytes up to its end-of-archive (or its end)
  Status status;
};

Result<int64_t> ParseLabel(std::span<const uint8_t> bytes, const std::string& where) {
  std::string_view s(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) {
    return InvalidArgument(where + ": '" + std::string(s.substr(0, 32)) + "' is not an integer label");
  }
  return v;
}

ImageFormat FormatOf(std::string_view ext) {
  if (ext == "jpg" || ext == "jpeg") return ImageFormat::kJpeg;
  if (ext == "png") return ImageFormat::kPng;
  return ImageFormat::kOther;
}

Status IndexTar(storage::Storage& storage, const std::string& uri, uint32_t shard,
                const std::vector<TarField>& fields, const std::string& label_field, TarPart& part) {
  TarReader reader(storage, uri, storage::IsLocal(uri) ? kLocalChunk : kRemoteChunk);
  const TarReadAt read = [&](uint64_t offset, size_t length) { return reader.Read(offset, length); };
  TarGrouper grouper(uri);
  uint64_t end = 0;
  const auto add = [&](const TarSample& s) -> Status {
    const std::string where = uri + ", sample '" + s.key + "'";
    TarIndex::Entry e;
    e.shard = shard;
    const TarSample::Member* image = nullptr;
    std::vector<const TarSample::Member*> used(fields.size(), nullptr);
    for (const auto& m : s.members) {
      if (m.ext == label_field) {
        if (m.size > kMaxLabelFile) {
          return InvalidArgument(where + ": its ." + m.ext + " file has " + std::to_string(m.size) +
                                 " bytes, not an integer label");
        }
        auto bytes = read(m.data_offset, static_cast<size_t>(m.size));
        if (!bytes.ok()) return bytes.status();
        auto label = ParseLabel(*bytes, where + " ." + m.ext);
        if (!label.ok()) return label.status();
        e.label = *label;
      }
      bool is_field = false;
      for (size_t f = 0; f < fields.size(); ++f) {
        if (!fields[f].key && fields[f].ext == m.ext) {
          used[f] = &m;
          is_field = true;
        }
      }
      if (!image && !is_field && HasImageExtension("." + m.ext)) image = &m;
    }
    uint64_t lo = UINT64_MAX, hi = 0;
    const auto span = [&](const TarSample::Member* m) {
      if (!m) return;
      lo = std::min(lo, m->data_offset);
      hi = std::max(hi, m->data_offset + m->size);
    };
    span(image);
    for (const auto* m : used) span(m);
    if (lo == UINT64_MAX) lo = hi = s.members.front().data_offset;
    if (hi - lo > std::numeric_limits<uint32_t>::max() - 1) {
      return Unsupported(where + ": its files span " + std::to_string(hi - lo) +
                         " bytes; a sample of a tar is read whole and must be under 4 GiB");
    }
    e.offset = lo;
    e.length = static_cast<uint32_t>(hi - lo);
    if (image) {
      e.image_offset = static_cast<uint32_t>(image->data_offset - lo);
      e.image_length = static_cast<uint32_t>(image->size);
      e.image_format = FormatOf(image->ext);
    }
    for (size_t f = 0; f < fields.size(); ++f) {
      FieldRange r{0, kFieldMissing};
      if (used[f]) r = {static_cast<uint32_t>(used[f]->data_offset - lo), static_cast<uint32_t>(used[f]->size)};
      part.ranges.push_back(r);
    }
    if (s.key.size() > std::numeric_limits<uint32_t>::max() ||
        part.keys.size() > std::numeric_limits<uint32_t>::max() - s.key.size()) {
      return Unsupported(where + ": the tar's keys take more than 4 GiB");
    }
    e.key_offset = static_cast<uint32_t>(part.keys.size());
    e.key_length = static_cast<uint32_t>(s.key.size());
    part.keys += s.key;
    part.entries.push_back(e);
    return Status::Ok();
  };
  Status st = WalkTar(read, uri, [&](const TarFile& f) -> Status {
    end = std::max(end, f.data_offset + f.size);
    auto done = grouper.Add(f);
    if (!done.ok()) return done.status();
    if (*done) return add(**done);
    return Status::Ok();
  });
  if (!st.ok()) return st;
  if (auto last = grouper.Finish()) STOKER_RETURN_IF_ERROR(add(*last));
  part.size = end;
  return Status::Ok();
}

}  // namespace

Result<std::vector<std::string>> ExpandBraces(std::string_view pattern) {
  std::vector<std::string> out;
  STOKER_RETURN_IF_ERROR(Expand(pattern, out, std::string(pattern)));
  return out;
}

bool IsWebDatasetUri(std::string_view uri) {
  if (EndsWithNoCase(uri, ".tar") || EndsWithNoCase(uri, ".tar.gz") || EndsWithNoCase(uri, ".tgz")) {
    return true;
  }
  const size_t open = uri.find('{');
  return open != std::string_view::npos && uri.find('}', open) != std::string_view::npos;
}

Result<Dataset> OpenWebDataset(const std::string& uri, storage::Storage& storage,
                               const std::vector<FieldSpec>& fields, const ShardFilter& where,
                               const std::string& label_field) {
  auto uris = ExpandBraces(uri);
  if (!uris.ok()) return uris.status();
  for (const std::string& u : *uris) {
    if (EndsWithNoCase(u, ".tar.gz") || EndsWithNoCase(u, ".tgz")) {
      return Unsupported(u + ": a compressed tar cannot be read a sample at a time; "
                         "decompress it (gunzip) or `stoker convert` it");
    }
  }
  return OpenTarShards(std::move(*uris), uri, storage, fields, where, label_field);
}

Result<Dataset> OpenTarShards(std::vector<std::string> tar_uris, const std::string& name,
                              storage::Storage& storage, const std::vector<FieldSpec>& fields,
                              const ShardFilter& where, const std::string& label_field) {
  if (tar_uris.empty()) return NotFound(name + ": no .tar files");
  if (tar_uris.size() > std::numeric_limits<uint32_t>::max()) {
    return Unsupported(name + ": too many tars");
  }
  Dataset d;
  auto shards = std::make_shared<Shards>();
  auto index = std::make_shared<TarIndex>();
  // The fields the index holds ranges for: those that are files (not the key).
  std::vector<TarField> files;
  for (const FieldSpec& spec : fields) {
    TarField f;
    dataset::Field out{spec.name, spec.kind, /*file=*/true};
    if (spec.name == "__key__") {
      f.key = true;
      out.kind = FieldSpec::Kind::kText;
      out.file = false;
      shards->field_map.push_back(Shards::kKeyField);
    } else {
      for (char c : spec.name) f.ext += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (out.kind == FieldSpec::Kind::kAuto) out.kind = KindFromExtension(f.ext);
      shards->field_map.push_back(index->fields.size());
      index->fields.push_back({spec.name, out.kind});
    }
    if (!f.key) files.push_back(std::move(f));
    d.fields.push_back(std::move(out));
  }
  std::string label_ext;
  for (char c : label_field) label_ext += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));

  std::vector<TarPart> parts(tar_uris.size());
  const bool local = storage::IsLocal(tar_uris.front());
  const size_t threads = std::min<size_t>(tar_uris.size(), local ? 2 : kRemoteIndexThreads);
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  const auto work = [&] {
    for (size_t k; !failed.load() && (k = next.fetch_add(1)) < tar_uris.size();) {
      parts[k].status = IndexTar(storage, tar_uris[k], static_cast<uint32_t>(k), files, label_ext, parts[k]);
      if (!parts[k].status.ok()) failed = true;
    }
  };
  if (threads <= 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (size_t t = 0; t < threads; ++t) pool.emplace_back(work);
    for (auto& t : pool) t.join();
  }
  size_t total = 0;
  for (const TarPart& p : parts) {
    if (!p.status.ok()) return p.status;
    total += p.entries.size();
  }
  if (total == 0) {
    return NotFound(name + ": no samples in its " + std::to_string(tar_uris.size()) +
                    (tar_uris.size() == 1 ? " tar" : " tars"));
  }
  index->entries.reserve(total);
  index->ranges.reserve(total * files.size());
  for (TarPart& p : parts) {
    const size_t base = index->keys.size();
    if (base > std::numeric_limits<uint32_t>::max() - p.keys.size()) {
      return Unsupported(name + ": the samples' keys take more than 4 GiB");
    }
    for (TarIndex::Entry e : p.entries) {
      e.key_offset += static_cast<uint32_t>(base);
      index->entries.push_back(e);
    }
    index->ranges.insert(index->ranges.end(), p.ranges.begin(), p.ranges.end());
    index->keys += p.keys;
    index->shards.push_back({p.size, static_cast<uint32_t>(p.entries.size())});
    p = TarPart();
  }
  const std::string& first = tar_uris.front();
  const size_t slash = first.rfind('/');
  shards->root = slash == std::string::npos ? "." : first.substr(0, slash);
  shards->index_uri = name;
  shards->tar = std::move(index);
  shards->shard_uris = std::move(tar_uris);
  if (where) STOKER_RETURN_IF_ERROR(ApplyShardFilter(*shards, where, name));
  d.shards = std::move(shards);
  return d;
}

}  // namespace stoker::dataset
