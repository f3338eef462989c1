// Dataset layouts: what samples a URI holds, in a fixed, sorted order. The
// order defines each sample's index (its position in the listing).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "stoker/status.h"
#include "stoker/storage/storage.h"

namespace stoker::dataset {

struct Sample {
  std::string uri;
  int64_t label = 0;
};

struct Dataset {
  std::vector<Sample> samples;
  // Class names by label (ImageFolder); empty for manifests.
  std::vector<std::string> classes;
};

// A `.csv` or `.jsonl` URI is a manifest; anything else is an ImageFolder
// root. Errors name the URI (and the manifest line) and the reason.
Result<Dataset> OpenDataset(const std::string& uri, storage::Storage& storage);

// ImageFolder as torchvision builds it: classes are the sorted names of the
// root's subfolders that hold files, samples the files with an image
// extension under each class folder (recursively), sorted by path.
Result<Dataset> ListImageFolder(const std::string& root_uri, storage::Storage& storage);

// Manifests: CSV with header `path,label` (RFC 4180 quoting) or JSON Lines
// with keys "path" and "label". Blank lines are ignored. A relative path is
// resolved against `base_uri` (the manifest's folder).
Result<Dataset> ParseCsvManifest(std::string_view text, const std::string& name,
                                 const std::string& base_uri, const storage::Storage& storage);
Result<Dataset> ParseJsonlManifest(std::string_view text, const std::string& name,
                                   const std::string& base_uri, const storage::Storage& storage);

// True if `key` ends with one of torchvision's IMG_EXTENSIONS (any case).
bool HasImageExtension(std::string_view key);

}  // namespace stoker::dataset
