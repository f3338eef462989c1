#include "stoker/storage/storage.h"

#include "stoker/storage/file/file_storage.h"

namespace stoker::storage {

bool IsLocal(const std::string& uri) {
  auto pos = uri.find("://");
  return pos == std::string::npos || uri.compare(0, pos, "file") == 0;
}

Result<std::shared_ptr<Storage>> OpenStorage(const std::string& uri, const StorageOptions&) {
  if (IsLocal(uri)) return std::shared_ptr<Storage>(std::make_shared<FileStorage>());
  auto pos = uri.find("://");
  return Unsupported(uri + ": no storage backend for scheme '" + uri.substr(0, pos) + "'");
}

}  // namespace stoker::storage
