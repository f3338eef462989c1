// Dataset layouts: what samples a URI holds, in a fixed, sorted order. The
// order defines each sample's index (its position in the listing).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

struct Dataset {
  std::vector<Sample> samples;
  // Class names by label (ImageFolder); empty for manifests.
  std::vector<std::string> classes;
  std::vector<Field> fields;
};

// A `.csv` or `.jsonl` URI is a manifest; anything else is an ImageFolder
// root. Errors name the URI (and the manifest line) and the reason.
// `fields` (LoaderOptions::fields) are resolved here: a manifest must have
// each as a column (CSV) or as a key on some line (JSON Lines); kAuto
// becomes the kind the values or the file names say.
Result<Dataset> OpenDataset(const std::string& uri, storage::Storage& storage,
                            const std::vector<FieldSpec>& fields = {});

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
