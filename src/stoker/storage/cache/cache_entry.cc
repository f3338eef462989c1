#include "stoker/storage/cache/cache_entry.h"

#include <cstdio>
#include <cstring>

#include "stoker/base/crc32c.h"

namespace stoker::storage::cache {
namespace {

constexpr char kMagic[8] = {'S', 'T', 'K', 'C', 'A', 'C', 'H', 'E'};

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
}

uint32_t LoadU32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

uint64_t LoadU64(const uint8_t* p) { return uint64_t{LoadU32(p)} | uint64_t{LoadU32(p + 4)} << 32; }

// CRC-32C of the key's bytes followed by the data's.
uint32_t BodyCrc(std::string_view key, std::span<const uint8_t> data) {
  return Crc32c(data, Crc32c({reinterpret_cast<const uint8_t*>(key.data()), key.size()}));
}

uint64_t Fnv1a(std::string_view s, uint64_t h) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

}  // namespace

std::string CacheKey(std::string_view uri, int64_t offset, int64_t length, bool whole) {
  std::string key(uri);
  if (!whole) {
    key.push_back(' ');
    key.append(std::to_string(offset));
    key.push_back('-');
    key.append(std::to_string(offset + length));
  }
  return key;
}

std::string EntryPath(std::string_view key) {
  const uint64_t a = Fnv1a(key, 0xcbf29ce484222325ULL);
  const uint64_t b = Fnv1a(key, 0x84222325cbf29ce4ULL ^ key.size());
  char hex[33];
  std::snprintf(hex, sizeof hex, "%016llx%016llx", static_cast<unsigned long long>(a),
                static_cast<unsigned long long>(b));
  std::string path(hex, 2);
  path.push_back('/');
  path.append(hex + 2, 30);
  return path;
}

std::string EncodeEntry(std::string_view key, std::span<const uint8_t> data) {
  std::string out(kMagic, sizeof kMagic);
  PutU32(out, kEntryVersion);
  PutU32(out, static_cast<uint32_t>(key.size()));
  PutU32(out, static_cast<uint32_t>(data.size()));
  PutU32(out, static_cast<uint32_t>(uint64_t{data.size()} >> 32));
  PutU32(out, BodyCrc(key, data));
  PutU32(out, Crc32c({reinterpret_cast<const uint8_t*>(out.data()), out.size()}));
  out += key;
  out.append(reinterpret_cast<const char*>(data.data()), data.size());
  return out;
}

Result<std::span<const uint8_t>> DecodeEntry(std::span<const uint8_t> file, std::string_view key,
                                             const std::string& name) {
  const auto bad = [&](const std::string& why) { return Corrupt(name + ": cache entry " + why); };
  if (file.size() < kEntryHeaderSize) return bad("shorter than its header");
  if (std::memcmp(file.data(), kMagic, sizeof kMagic) != 0) return bad("has a wrong magic number");
  if (Crc32c(file.first(28)) != LoadU32(file.data() + 28)) return bad("header checksum mismatch");
  const uint32_t version = LoadU32(file.data() + 8);
  if (version != kEntryVersion) {
    return Unsupported(name + ": cache entry version " + std::to_string(version) + " (this is " +
                       std::to_string(kEntryVersion) + ")");
  }
  const uint64_t key_size = LoadU32(file.data() + 12);
  const uint64_t data_size = LoadU64(file.data() + 16);
  const uint64_t rest = file.size() - kEntryHeaderSize;
  if (key_size > rest || data_size != rest - key_size) {
    return bad("sizes do not add up to the file's (" + std::to_string(file.size()) + " bytes)");
  }
  const std::string_view stored(reinterpret_cast<const char*>(file.data()) + kEntryHeaderSize,
                                key_size);
  if (stored != key) return bad("is for another key");
  const auto data = file.subspan(kEntryHeaderSize + key_size);
  if (BodyCrc(stored, data) != LoadU32(file.data() + 24)) return bad("data checksum mismatch");
  return data;
}

}  // namespace stoker::storage::cache
