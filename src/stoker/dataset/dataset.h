// Dataset layouts: what samples a URI holds, in a fixed, sorted order. The
// order defines each sample's index (its position in the listing).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
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

// A dataset written by `stoker convert` (docs/shard-format.md): its index,
// read once, and where its shards are. Nothing else is kept per sample.
struct Shards {
  std::string root;       // the folder or prefix holding index.stoker
  std::string index_uri;  // root/index.stoker
  ShardIndex index;
  std::vector<std::string> shard_uris;  // by shard number
  // Dataset::fields[f] is the index's field field_map[f].
  std::vector<size_t> field_map;
  // The entries kept by a filter (LoaderOptions::where), in storage order;
  // all of them when not filtered. Sample i of the dataset is entry
  // entry_number(i) of the index.
  bool filtered = false;
  std::vector<uint64_t> selected;

  uint64_t size() const { return filtered ? selected.size() : index.num_samples(); }
  uint64_t entry_number(uint64_t i) const { return filtered ? selected[i] : i; }
  ShardEntry entry(uint64_t i) const { return index.entry(entry_number(i)); }
  std::optional<FieldRange> field_range(uint64_t i, size_t f) const {
    return index.field_range(entry_number(i), f);
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
// own URI (opened with no listing: only the index is read); anything else
// is an ImageFolder root. Errors name the URI (and the manifest line) and the reason.
// `fields` (LoaderOptions::fields) are resolved here: a manifest must have
// each as a column (CSV) or as a key on some line (JSON Lines); kAuto
// becomes the kind the values or the file names say.
// `where` (LoaderOptions::where) keeps a shard dataset's samples it
// selects; for any other dataset it is an error.
Result<Dataset> OpenDataset(const std::string& uri, storage::Storage& storage,
                            const std::vector<FieldSpec>& fields = {},
                            const ShardFilter& where = {});

// A shard dataset: reads and checks `index_uri` (fields: as OpenDataset;
// each must be one of the index's fields).
Result<Dataset> OpenShards(const std::string& index_uri, storage::Storage& storage,
                           const std::vector<FieldSpec>& fields = {},
                           const ShardFilter& where = {});

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

// The name of a field kind ("int", "text", ...), for messages and Python.
const char* FieldKindName(FieldSpec::Kind kind);

// True if `key` ends with one of torchvision's IMG_EXTENSIONS (any case).
bool HasImageExtension(std::string_view key);

}  // namespace stoker::dataset
