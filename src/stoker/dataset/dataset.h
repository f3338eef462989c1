// Dataset layouts: what samples a URI holds, in a fixed, sorted order. The
// order defines each sample's index (its position in the listing).
#pragma once

#include <cstdint>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "stoker/dataset/shard_format.h"
#include "stoker/status.h"
#include "stoker/storage/storage.h"

namespace stoker::dataset {

struct Sample {
  std::string uri;
  int64_t label = 0;
  // One per Dataset::fields, in that order; nullopt: the sample lacks it
  // (no such sibling file, no such key on its manifest line, a null). The
  // value: the URI of the file to read (Field::file), else the field itself
  // as text (an integer or number in decimal, a text in UTF-8, JSON text).
  std::vector<std::optional<std::string>> fields;
};

// A field as the dataset resolved it (LoaderOptions::fields).
struct Field {
  std::string name;
  FieldSpec::Kind kind = FieldSpec::Kind::kAuto;  // never kAuto once resolved
  bool file = false;  // the sample's value is the URI of a file to read
};

// WebDataset tars (docs/webdataset.md), indexed when the dataset is opened:
// where each sample's files lie in its tar, and nothing else per sample.
struct TarIndex {
  struct Entry {
    uint64_t offset = 0;  // the record: from the first used file's data to the last's end
    int64_t label = -1;   // the .cls file's (or the label field's) integer; -1 if none
    uint32_t length = 0;
    uint32_t shard = 0;          // the tar's number
    uint32_t image_offset = 0;   // in the record
    uint32_t image_length = 0;   // 0: the sample has no image file
    uint32_t key_offset = 0;     // in `keys`
    uint32_t key_length = 0;
    ImageFormat image_format = ImageFormat::kNone;
  };
  std::vector<Entry> entries;
  // fields.size() ranges per entry, in the record; length kFieldMissing:
  // the sample has no such file.
  std::vector<FieldRange> ranges;
  std::string keys;  // every sample's key, one after another
  std::vector<ShardInfo> shards;
  std::vector<ShardField> fields;
};

// A dataset written by `stoker convert` (docs/shard-format.md), or
// WebDataset tars (docs/webdataset.md): its index, read or built once, and
// where its shards are. Nothing else is kept per sample.
struct Shards {
  std::string root;       // the folder or prefix holding the shards
  std::string index_uri;  // root/index.stoker; for tars the URI or pattern opened
  ShardIndex index;                  // a converted dataset's
  std::shared_ptr<const TarIndex> tar;  // WebDataset's (then `index` is empty)
  std::vector<std::string> shard_uris;  // by shard number
  // Dataset::fields[f] is the index's field field_map[f], or kKeyField.
  static constexpr size_t kKeyField = SIZE_MAX;
  std::vector<size_t> field_map;
  // The entries kept by a filter (LoaderOptions::where), in storage order;
  // all of them when not filtered. Sample i of the dataset is entry
  // entry_number(i) of the index.
  bool filtered = false;
  std::vector<uint64_t> selected;

  uint64_t num_entries() const { return tar ? tar->entries.size() : index.num_samples(); }
  uint64_t size() const { return filtered ? selected.size() : num_entries(); }
  uint64_t entry_number(uint64_t i) const { return filtered ? selected[i] : i; }
  // Entry `e` of the index (by entry number, not sample).
  ShardEntry raw_entry(uint64_t e) const;
  ShardEntry entry(uint64_t i) const { return raw_entry(entry_number(i)); }
  // Sample i's field field_map[f] within its record (nullopt: it lacks it,
  // or the field is the key).
  std::optional<FieldRange> field_range(uint64_t i, size_t f) const;
  const std::vector<ShardInfo>& shard_table() const { return tar ? tar->shards : index.shards(); }
  const std::vector<ShardField>& all_fields() const { return tar ? tar->fields : index.fields(); }
  // Records carry a CRC (converted datasets; a tar has none).
  bool checksummed() const { return !tar; }
  // A WebDataset sample's key; empty for a converted dataset.
  std::string_view key(uint64_t i) const;
  // Bytes the index takes in memory.
  uint64_t index_bytes() const;
  // Checks a record read for sample i against its entry: its length, and
  // its CRC where records have one (kCorrupt with the reason).
  Status CheckRecord(std::span<const uint8_t> record, uint64_t i) const;
  // Sample i's image within its checked record.
  std::span<const uint8_t> Image(std::span<const uint8_t> record, uint64_t i) const {
    const ShardEntry e = entry(i);
    return record.subspan(e.image_offset, e.image_length);
  }
};

struct Dataset {
  // Loose files (a folder or a manifest): one Sample each. Empty for a
  // shard dataset, whose samples are `shards->index`'s entries.
  std::vector<Sample> samples;
  std::shared_ptr<const Shards> shards;
  // Class names by label (ImageFolder); empty for manifests.
  std::vector<std::string> classes;
  std::vector<Field> fields;

  uint64_t size() const { return shards ? shards->size() : samples.size(); }
  int64_t label(uint64_t i) const { return shards ? shards->entry(i).label : samples[i].label; }
  // The position in the source's listing that batch["index"] reports: the
  // sample's own index for loose files, the entry's source for shards.
  uint64_t source(uint64_t i) const { return shards ? shards->entry(i).source : i; }
  // What messages call sample i: its URI, or its shard, entry and source
  // position ("s3://b/d/shard-000003.stoker, sample 1207 (source 88)").
  std::string SampleName(uint64_t i) const;
};

// A `.csv` or `.jsonl` URI is a manifest; a folder or prefix whose listing
// has index.stoker at its top is a shard dataset, and so is that object's
// own URI (opened with no listing: only the index is read); a .tar, a
// brace pattern, or a folder of .tar files without images is WebDataset
// (OpenWebDataset); anything else is an ImageFolder root. Errors name the URI (and the manifest line) and the reason.
// `fields` (LoaderOptions::fields) are resolved here: a manifest must have
// each as a column (CSV) or as a key on some line (JSON Lines); kAuto
// becomes the kind the values or the file names say.
// `where` (LoaderOptions::where) keeps a shard dataset's samples it
// selects; for any other dataset it is an error. `label_field`: WebDataset's
// (LoaderOptions::label_field).
Result<Dataset> OpenDataset(const std::string& uri, storage::Storage& storage,
                            const std::vector<FieldSpec>& fields = {},
                            const ShardFilter& where = {},
                            const std::string& label_field = "cls");

// A shard dataset: reads and checks `index_uri` (fields: as OpenDataset;
// each must be one of the index's fields).
Result<Dataset> OpenShards(const std::string& index_uri, storage::Storage& storage,
                           const std::vector<FieldSpec>& fields = {},
                           const ShardFilter& where = {});

// WebDataset: `uri` is one .tar, a brace pattern of them
// ("train-{000000..000099}.tar", "{a,b}.tar"), or a folder or prefix whose
// listing has .tar files and no images (all its .tar files, by name). Each
// tar is read through once to index it (local: a header at a time; remote:
// in large ranged reads, several tars at once). Samples are the files
// grouped by key, in tar order; the image is a sample's first file with an
// image extension that no field names; the label is the integer in its
// `label_field` file (default "cls"), or -1. Fields name extensions
// ("txt", "json", "seg.png"), or "__key__" for the key. Errors name the tar
// and the file: a bad header, a file cut off, a duplicate key, a label that
// is not an integer.
Result<Dataset> OpenWebDataset(const std::string& uri, storage::Storage& storage,
                               const std::vector<FieldSpec>& fields = {},
                               const ShardFilter& where = {},
                               const std::string& label_field = "cls");

// WebDataset from a list of tar URIs (shard k is tar_uris[k]); `name` is
// what messages call the dataset (the URI or pattern opened).
Result<Dataset> OpenTarShards(std::vector<std::string> tar_uris, const std::string& name,
                              storage::Storage& storage, const std::vector<FieldSpec>& fields = {},
                              const ShardFilter& where = {},
                              const std::string& label_field = "cls");

// Keeps the entries `where` selects (Shards::filtered, selected); errors
// name `name`.
Status ApplyShardFilter(Shards& shards, const ShardFilter& where, const std::string& name);

// The URIs a brace pattern stands for, in order: "{a,b}" alternatives and
// "{000..099}" integer ranges (zero-padded to the wider end's width when
// either end has a leading zero), nested and several per pattern; a pattern
// without braces is itself. InvalidArgument for an unbalanced brace or a
// pattern of more than 1,000,000 names.
Result<std::vector<std::string>> ExpandBraces(std::string_view pattern);

// True for a URI that names WebDataset tars rather than a folder: it ends
// with ".tar" or holds a brace pattern.
bool IsWebDatasetUri(std::string_view uri);

// ImageFolder as torchvision builds it: classes are the sorted names of the
// root's subfolders that hold files, samples the files with an image
// extension under each class folder (recursively), sorted by path.
// With `fields`, files that share a name up to the first dot are one
// sample: its image is the one with an image extension that names no field
// (the first by name if several), the others are its fields by the rest of
// their names (x.jpg, x.txt, x.seg.png: image x.jpg, fields "txt", "seg.png").
Result<Dataset> ListImageFolder(const std::string& root_uri, storage::Storage& storage,
                                const std::vector<FieldSpec>& fields = {});

// Manifests: CSV with header `path,label` (RFC 4180 quoting) or JSON Lines
// with keys "path" and "label". Blank lines are ignored. A relative path is
// resolved against `base_uri` (the manifest's folder).
Result<Dataset> ParseCsvManifest(std::string_view text, const std::string& name,
                                 const std::string& base_uri, const storage::Storage& storage,
                                 const std::vector<FieldSpec>& fields = {});
Result<Dataset> ParseJsonlManifest(std::string_view text, const std::string& name,
                                   const std::string& base_uri, const storage::Storage& storage,
                                   const std::vector<FieldSpec>& fields = {});

// The kind a field named after a file extension has (FieldSpec::Kind::kAuto
// for folders and WebDataset), by its last extension: txt/text text, json
// JSON, npy an array, cls an integer, png a mask, anything else bytes.
FieldSpec::Kind KindFromExtension(std::string_view field);

// The name of a field kind ("int", "text", ...), for messages and Python.
const char* FieldKindName(FieldSpec::Kind kind);

// True if `key` ends with one of torchvision's IMG_EXTENSIONS (any case).
bool HasImageExtension(std::string_view key);

}  // namespace stoker::dataset
