// The few S3 XML replies stoker reads (ListObjectsV2 pages, <Error>, a
// multipart upload's id) and the one body it writes (CompleteMultipartUpload),
// parsed by a small hand-written reader. Input comes from the network, so
// the reader never trusts it: bounded depth, no DTDs (so no entity
// expansion), only the five predefined entities and character references,
// every index checked. Malformed input is an error, never a crash.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stoker/status.h"

namespace stoker::storage::s3 {

// Calls `on_end(path, text)` at each element's end tag: `path` the element
// names from the root down to it (namespace prefixes dropped), `text` its
// own character data (entities decoded, CDATA included). Fails with Corrupt
// on anything that is not well-formed enough to trust.
using XmlPath = std::vector<std::string_view>;
Status ParseXml(std::string_view xml,
                const std::function<Status(const XmlPath& path, std::string& text)>& on_end);

struct ListedObject {
  std::string key;    // the full key (not relative to the prefix)
  int64_t size = -1;
};

struct ListPage {
  std::vector<ListedObject> objects;
  bool truncated = false;
  std::string next_token;  // NextContinuationToken when truncated
};

// A ListObjectsV2 reply (<ListBucketResult>). Keys are URL-decoded when the
// reply says <EncodingType>url</EncodingType>.
Result<ListPage> ParseListObjectsV2(std::string_view xml);

struct S3Error {
  std::string code;        // "NoSuchKey"
  std::string message;     // "The specified key does not exist."
  std::string request_id;
  std::string region;      // AuthorizationHeaderMalformed, PermanentRedirect
  std::string endpoint;    // PermanentRedirect
};

// An <Error> document; nullopt when `xml` is not one.
std::optional<S3Error> ParseS3Error(std::string_view xml);

// The UploadId of a CreateMultipartUpload reply
// (<InitiateMultipartUploadResult>); Corrupt when there is none.
Result<std::string> ParseUploadId(std::string_view xml);

// The <CompleteMultipartUpload> request body for parts 1..n: `etags[i]` is
// part i + 1's ETag, as UploadPart's reply gave it (escaped here).
std::string CompleteMultipartUploadXml(const std::vector<std::string>& etags);

}  // namespace stoker::storage::s3
