// Backends by URL scheme. Each backend has a registration function of its
// own (RegisterFileStorage, RegisterHttpStorage, RegisterS3Storage);
// OpenStorage calls RegisterBuiltinStorages once before the first lookup.
// An explicit call, not self-registering static objects: the linker drops
// an object file of a static library that nothing references, and its
// static registrar with it.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "stoker/storage/storage.h"

namespace stoker::storage {

// Opens the backend for `uri` (the URI that made it needed: a dataset's, or
// the first sample's of that scheme).
using StorageFactory =
    std::function<Result<std::shared_ptr<Storage>>(const std::string& uri, const StorageOptions&)>;

// Makes `factory` the backend of `scheme` (case-insensitive; "file" is also
// plain paths), replacing any earlier one. Backends sharing one instance
// (http and https) register one `family` name: a router opens one storage
// per family. Safe from any thread.
void RegisterStorage(const std::string& scheme, StorageFactory factory,
                     const std::string& family = "");

// The built-in backends: file, s3, http and https. Idempotent.
void RegisterBuiltinStorages();

// The schemes registered, sorted.
std::vector<std::string> RegisteredSchemes();

// Each backend's registration (in its own .cc).
void RegisterFileStorage();
namespace http {
void RegisterHttpStorage();
}
namespace s3 {
void RegisterS3Storage();
}

}  // namespace stoker::storage
