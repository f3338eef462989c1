// Tar archives as WebDataset writes them (docs/webdataset.md): the member
// headers (POSIX ustar, pax extended headers, GNU long names, GNU base-256
// sizes), the walk over an archive's regular files, and WebDataset's rule
// for grouping files into samples by key. Pure codec: the walk asks a
// caller's function for bytes at offsets, so the same code serves a local
// file, a range-read object and a fuzzer's buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "stoker/status.h"

namespace stoker::dataset {

constexpr size_t kTarBlock = 512;

// One header block as written, before pax and GNU records are applied.
struct TarHeader {
  std::string name;   // ustar prefix + "/" + name when the prefix is set
  uint64_t size = 0;  // the member's data bytes (its size field)
  char type = '0';    // the typeflag; '\0' is read as '0'
};

// Parses one 512-byte header block found at `offset` of the tar `name`
// (both for messages). nullopt: an all-zero block (the end of the archive).
// kCorrupt: a checksum that does not match (signed or unsigned sum, as tar
// readers accept), or a size field that is not octal or base-256.
Result<std::optional<TarHeader>> ParseTarHeader(std::span<const uint8_t> block,
                                                const std::string& name, uint64_t offset);

// A regular file of the archive, with the pax `path`/`size` records and GNU
// long names that precede it applied.
struct TarFile {
  std::string path;
  uint64_t header_offset = 0;  // of its (last) header block
  uint64_t data_offset = 0;    // its first data byte
  uint64_t size = 0;
};

// Returns up to `length` bytes of the archive from `offset`: fewer only at
// the end of the archive's bytes. The span must stay valid until the next
// call.
using TarReadAt = std::function<Result<std::span<const uint8_t>>(uint64_t offset, size_t length)>;

// Calls `on_file` for each regular file (typeflag '0', '\0' or '7'), in
// archive order; skips directories, links, devices, pax global headers and
// other special members. Stops at the first all-zero block or at the bytes'
// end on a block boundary. Errors are kCorrupt and name the tar, the
// offset and the member: a bad header, a member whose data runs past the
// end ("cut off"), a header cut short, a pax record that does not parse.
// An error from `read` or `on_file` is returned as it is.
Status WalkTar(const TarReadAt& read, const std::string& name,
               const std::function<Status(const TarFile&)>& on_file);

// WebDataset's split of a member path into key and extension: the key is
// the path up to the first dot of its last component, the extension the
// rest, lower-cased ("a/b/x.seg.PNG" -> "a/b/x", "seg.png"). nullopt for a
// path whose last component has no dot or starts with one: WebDataset
// skips such files.
struct TarKey {
  std::string key;
  std::string ext;
};
std::optional<TarKey> SplitTarKey(std::string_view path);

// True for a top-level "__...__" name: WebDataset's metadata files, which
// are not samples.
bool IsTarMetadata(std::string_view path);

// One WebDataset sample: the files that share a key, consecutive in the
// archive.
struct TarSample {
  std::string key;
  struct Member {
    std::string ext;
    uint64_t data_offset = 0;
    uint64_t size = 0;
  };
  std::vector<Member> members;  // in archive order
};

// Groups a tar's files into samples (WebDataset's group_by_keys). Add
// returns a finished sample when a file starts a new key; Finish returns
// the last one. kCorrupt, naming the tar and the path: an extension seen
// twice in one sample, or a key that comes back after other keys (the
// same key in two places of one tar is a duplicate, not one sample).
class TarGrouper {
 public:
  explicit TarGrouper(std::string name) : name_(std::move(name)) {}

  Result<std::optional<TarSample>> Add(const TarFile& file);
  std::optional<TarSample> Finish();

 private:
  std::string name_;
  std::optional<TarSample> current_;
  std::unordered_set<std::string> done_keys_;  // the keys of the finished samples
};

}  // namespace stoker::dataset
