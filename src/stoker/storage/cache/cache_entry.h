// The disk cache's entry files (docs/cache-format.md): one cached read
// (an object, or a byte range of one) per file, with the key it answers and
// checksums over everything. Pure codec: no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "stoker/status.h"

namespace stoker::storage::cache {

constexpr size_t kEntryHeaderSize = 32;
constexpr uint32_t kEntryVersion = 1;

// The key a read is cached under: its URI and byte range ("s3://b/k
// 0-8388608"; whole objects "s3://b/k"). Different ranges of one object are
// different entries.
std::string CacheKey(std::string_view uri, int64_t offset, int64_t length, bool whole);

// The entry's file name under the cache directory: "ab/<30 more hex>", 128
// bits of hash of the key (the key itself is checked on reading).
std::string EntryPath(std::string_view key);

// The whole entry file for `key` and `data`.
std::string EncodeEntry(std::string_view key, std::span<const uint8_t> data);

// The data of an entry file read from `name` (for messages), if it is a
// whole, uncorrupted entry for `key`. kCorrupt naming `name` and the reason:
// too short, a wrong magic number or header checksum, sizes that do not add
// up to the file's, another key (a hash collision), a data checksum
// mismatch. kUnsupported: another version.
Result<std::span<const uint8_t>> DecodeEntry(std::span<const uint8_t> file, std::string_view key,
                                             const std::string& name);

}  // namespace stoker::storage::cache
