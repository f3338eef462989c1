#include "stoker/dataset/tar.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <utility>

namespace stoker::dataset {
namespace {

// Header fields, by offset and length (POSIX.1-1988 ustar).
constexpr size_t kName = 0, kNameLen = 100;
constexpr size_t kSize = 124, kSizeLen = 12;
constexpr size_t kChecksum = 148, kChecksumLen = 8;
constexpr size_t kType = 156;
constexpr size_t kMagic = 257;
constexpr size_t kPrefix = 345, kPrefixLen = 155;

// pax and GNU long-name records are small; a larger one is not a tar.
constexpr uint64_t kMaxMetaRecord = uint64_t{1} << 20;

std::string At(const std::string& name, uint64_t offset) {
  return name + ": at offset " + std::to_string(offset);
}

// A NUL-terminated string field.
std::string Field(std::span<const uint8_t> b, size_t at, size_t len) {
  const char* p = reinterpret_cast<const char*>(b.data() + at);
  return std::string(p, strnlen(p, len));
}

// An octal number field (leading spaces or NULs, digits, then a space or
// NUL), or GNU base-256 (the first byte's top bit set).
std::optional<uint64_t> Number(std::span<const uint8_t> b, size_t at, size_t len) {
  const uint8_t* p = b.data() + at;
  if (p[0] & 0x80) {
    if (p[0] == 0xFF) return std::nullopt;  // negative
    uint64_t v = p[0] & 0x3F;
    for (size_t i = 1; i < len; ++i) {
      if (v >> 56) return std::nullopt;
      v = v << 8 | p[i];
    }
    return v;
  }
  size_t i = 0;
  while (i < len && (p[i] == ' ' || p[i] == 0)) ++i;
  uint64_t v = 0;
  size_t digits = 0;
  for (; i < len && p[i] >= '0' && p[i] <= '7'; ++i, ++digits) {
    if (v >> 60) return std::nullopt;
    v = v * 8 + (p[i] - '0');
  }
  for (; i < len; ++i) {
    if (p[i] != ' ' && p[i] != 0) return std::nullopt;
  }
  return v;
}

uint64_t RoundUp(uint64_t n) { return (n + kTarBlock - 1) / kTarBlock * kTarBlock; }

// The records of a pax extended header ("LEN key=value\n" each, LEN
// counting the whole record); only path and size matter here.
Status ParsePax(std::string_view data, std::optional<std::string>& path,
                std::optional<uint64_t>& size, const std::string& where) {
  while (!data.empty()) {
    if (data.find_first_not_of('\0') == std::string_view::npos) break;  // padding
    uint64_t len = 0;
    auto [p, ec] = std::from_chars(data.data(), data.data() + data.size(), len);
    const size_t digits = static_cast<size_t>(p - data.data());
    if (ec != std::errc() || digits == 0 || len <= digits + 1 || len > data.size() ||
        data[digits] != ' ' || data[len - 1] != '\n') {
      return Corrupt(where + ": a pax extended header record does not parse");
    }
    const std::string_view record = data.substr(digits + 1, len - digits - 2);
    const size_t eq = record.find('=');
    if (eq == std::string_view::npos) {
      return Corrupt(where + ": a pax extended header record has no '='");
    }
    const std::string_view key = record.substr(0, eq), value = record.substr(eq + 1);
    if (key == "path") {
      path = std::string(value);
    } else if (key == "size") {
      uint64_t v = 0;
      auto [q, ec2] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (ec2 != std::errc() || q != value.data() + value.size()) {
        return Corrupt(where + ": pax size '" + std::string(value) + "' is not a number");
      }
      size = v;
    }
    data.remove_prefix(len);
  }
  return Status::Ok();
}

}  // namespace

Result<std::optional<TarHeader>> ParseTarHeader(std::span<const uint8_t> block,
                                                const std::string& name, uint64_t offset) {
  if (block.size() < kTarBlock) {
    return Corrupt(At(name, offset) + ": a tar header cut short (" + std::to_string(block.size()) +
                   " of 512 bytes)");
  }
  block = block.first(kTarBlock);
  if (std::all_of(block.begin(), block.end(), [](uint8_t c) { return c == 0; })) {
    return std::optional<TarHeader>();
  }
  const auto stored = Number(block, kChecksum, kChecksumLen);
  uint64_t sum = 0;
  int64_t signed_sum = 0;
  for (size_t i = 0; i < kTarBlock; ++i) {
    const bool in_field = i >= kChecksum && i < kChecksum + kChecksumLen;
    const uint8_t c = in_field ? ' ' : block[i];
    sum += c;
    signed_sum += static_cast<int8_t>(c);
  }
  if (!stored || (*stored != sum && static_cast<int64_t>(*stored) != signed_sum)) {
    return Corrupt(At(name, offset) + ": not a tar header (its checksum does not match)");
  }
  const auto size = Number(block, kSize, kSizeLen);
  if (!size) return Corrupt(At(name, offset) + ": a tar header's size field is not a number");
  TarHeader h;
  h.size = *size;
  h.type = block[kType] == 0 ? '0' : static_cast<char>(block[kType]);
  h.name = Field(block, kName, kNameLen);
  // POSIX ustar ("ustar\0"): a prefix of the path. GNU tar's magic
  // ("ustar  ") uses those bytes for other things.
  if (std::memcmp(block.data() + kMagic, "ustar\0", 6) == 0) {
    const std::string prefix = Field(block, kPrefix, kPrefixLen);
    if (!prefix.empty()) h.name = prefix + "/" + h.name;
  }
  if (h.type == '0' && !h.name.empty() && h.name.back() == '/') h.type = '5';  // old-style directory
  return std::optional<TarHeader>(std::move(h));
}

Status WalkTar(const TarReadAt& read, const std::string& name,
               const std::function<Status(const TarFile&)>& on_file) {
  uint64_t offset = 0;
  std::optional<std::string> next_path;  // from a pax header or a GNU long name
  std::optional<uint64_t> next_size;     // from a pax header
  // The last member with data: where it must end for the tar to be whole.
  uint64_t data_end = 0;
  std::string last_path;
  for (;;) {
    auto block = read(offset, kTarBlock);
    if (!block.ok()) return block.status();
    if (block->empty()) break;  // the end of the bytes, on a block boundary
    auto header = ParseTarHeader(*block, name, offset);
    if (!header.ok()) return header.status();
    if (!*header) {
      // The end-of-archive marker: everything before it is whole.
      data_end = 0;
      break;
    }
    TarHeader& h = **header;
    const uint64_t data_offset = offset + kTarBlock;
    if (h.type == 'x' || h.type == 'g' || h.type == 'L' || h.type == 'K') {
      if (h.size > kMaxMetaRecord) {
        return Corrupt(At(name, offset) + ": a " + std::to_string(h.size) +
                       "-byte extended header (" + std::string(1, h.type) + ") is not a tar's");
      }
      auto data = read(data_offset, static_cast<size_t>(h.size));
      if (!data.ok()) return data.status();
      if (data->size() < h.size) {
        return Corrupt(At(name, offset) + ": an extended header cut off (" +
                       std::to_string(data->size()) + " of " + std::to_string(h.size) + " bytes)");
      }
      const std::string_view text(reinterpret_cast<const char*>(data->data()), h.size);
      if (h.type == 'x') {
        STOKER_RETURN_IF_ERROR(ParsePax(text, next_path, next_size, At(name, offset)));
      } else if (h.type == 'L') {
        next_path = std::string(text.substr(0, text.find('\0')));
      }  // 'g' (global) and 'K' (a long link name) change nothing read here
      offset = data_offset + RoundUp(h.size);
      continue;
    }
    TarFile f;
    f.path = next_path ? std::move(*next_path) : std::move(h.name);
    f.size = next_size ? *next_size : h.size;
    f.header_offset = offset;
    f.data_offset = data_offset;
    next_path.reset();
    next_size.reset();
    bool has_data = true;
    switch (h.type) {
      case '0':
      case '7':
        break;
      case '1': case '2': case '3': case '4': case '5': case '6':
        has_data = false;  // links, devices, directories, FIFOs: no data
        break;
      case 'S':
        return Unsupported(At(name, offset) + ": '" + f.path +
                           "' is a GNU sparse file, which a WebDataset tar never holds");
      default:
        break;  // another kind of member: its data is skipped
    }
    if (!has_data) {
      offset = data_offset;
      continue;
    }
    if (f.size > (uint64_t{1} << 62)) {
      return Corrupt(At(name, offset) + ": '" + f.path + "' claims " + std::to_string(f.size) +
                     " bytes");
    }
    if (h.type == '0' || h.type == '7') {
      STOKER_RETURN_IF_ERROR(on_file(f));
    }
    if (f.size > 0) {
      data_end = f.data_offset + f.size;
      last_path = f.path;
    }
    offset = data_offset + RoundUp(f.size);
  }
  if (data_end > 0) {
    // No end-of-archive marker: the last member must still be whole.
    auto last = read(data_end - 1, 1);
    if (!last.ok()) return last.status();
    if (last->empty()) {
      return Corrupt(name + ": '" + last_path + "' is cut off: the tar ends before its " +
                     "last byte (offset " + std::to_string(data_end - 1) + ")");
    }
  }
  return Status::Ok();
}

std::optional<TarKey> SplitTarKey(std::string_view path) {
  const size_t slash = path.rfind('/');
  const size_t base = slash == std::string_view::npos ? 0 : slash + 1;
  const size_t dot = path.find('.', base);
  if (dot == std::string_view::npos || dot == base) return std::nullopt;
  TarKey k;
  k.key = std::string(path.substr(0, dot));
  k.ext = std::string(path.substr(dot + 1));
  for (char& c : k.ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return k;
}

bool IsTarMetadata(std::string_view path) {
  return path.find('/') == std::string_view::npos && path.size() >= 4 && path.starts_with("__") &&
         path.ends_with("__");
}

Result<std::optional<TarSample>> TarGrouper::Add(const TarFile& file) {
  if (IsTarMetadata(file.path)) return std::optional<TarSample>();
  auto split = SplitTarKey(file.path);
  if (!split) return std::optional<TarSample>();
  const TarSample::Member member{std::move(split->ext), file.data_offset, file.size};
  if (current_ && current_->key == split->key) {
    for (const auto& m : current_->members) {
      if (m.ext == member.ext) {
        return Corrupt(name_ + ": '" + file.path + "' is there twice (sample '" + current_->key +
                       "' has two ." + member.ext + " files)");
      }
    }
    current_->members.push_back(member);
    return std::optional<TarSample>();
  }
  if (done_keys_.count(split->key) > 0) {
    return Corrupt(name_ + ": duplicate key '" + split->key + "': '" + file.path +
                   "' comes after other samples, not beside its key's other files");
  }
  std::optional<TarSample> finished = std::move(current_);
  if (finished) done_keys_.insert(finished->key);
  current_ = TarSample{std::move(split->key), {member}};
  return finished;
}

std::optional<TarSample> TarGrouper::Finish() {
  std::optional<TarSample> last = std::move(current_);
  current_.reset();
  return last;
}

}  // namespace stoker::dataset
