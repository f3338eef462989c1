// s3:// URIs, and turning (bucket, key, query) into a signed HTTP request:
// path-style (http://host:port/bucket/key) for S3-compatible servers such as
// MinIO, Ceph or moto, virtual-hosted style (https://bucket.s3.region.amazonaws.com/key)
// for AWS.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stoker/status.h"
#include "stoker/storage/http/http.h"
#include "stoker/storage/http/url.h"
#include "stoker/storage/s3/config.h"

namespace stoker::storage::s3 {

struct S3Uri {
  std::string bucket;
  std::string key;  // may be empty (the bucket's root) or end with '/' (a prefix)
};

// "s3://bucket/key/with/slashes" -> {bucket, key}. The key is taken
// literally (no percent-decoding, no dot-segment removal: S3 keys are
// opaque). Fails on another scheme or a bucket name S3 could not have.
Result<S3Uri> ParseS3Uri(std::string_view uri);

// "s3://bucket/key".
std::string FormatS3Uri(std::string_view bucket, std::string_view key);

using QueryParams = std::vector<std::pair<std::string, std::string>>;

class RequestBuilder {
 public:
  static Result<RequestBuilder> Create(const S3Config& config);

  // A request for `method` on `bucket`/`key` (key empty: the bucket itself)
  // with `query` (not encoded) and `extra` headers, signed at `now` with
  // SigV4 unless the credentials are anonymous.
  Result<http::Request> Build(std::string_view method, const std::string& bucket,
                              const std::string& key, const QueryParams& query,
                              const http::Headers& extra,
                              std::chrono::system_clock::time_point now) const;
  // The same with a request body (PUT, POST), signed by its hex SHA-256
  // `payload_sha256` (Sha256Hex(*body), computed once by the caller however
  // often the request is signed again), which is also sent as
  // x-amz-content-sha256: the server checks the body against it.
  Result<http::Request> Build(std::string_view method, const std::string& bucket,
                              const std::string& key, const QueryParams& query,
                              const http::Headers& extra,
                              std::chrono::system_clock::time_point now,
                              std::shared_ptr<const std::string> body,
                              std::string_view payload_sha256) const;

  // The URL of `bucket`/`key`, without query (for tests and messages).
  std::string ObjectUrl(const std::string& bucket, const std::string& key) const;

  const S3Config& config() const { return config_; }

 private:
  RequestBuilder() = default;
  bool VirtualHosted(const std::string& bucket) const;
  // The host and the URI-encoded path (which SigV4 signs as is) of an object.
  void Locate(const std::string& bucket, const std::string& key, http::Url& url,
              std::string& path) const;

  S3Config config_;
  http::Url endpoint_;
  bool aws_ = false;  // no custom endpoint: AWS's own hosts

  // The day's signing key, derived once per UTC day rather than per request.
  struct KeyCache {
    std::mutex mu;
    std::string date, key;  // guarded by mu
  };
  std::shared_ptr<KeyCache> key_cache_ = std::make_shared<KeyCache>();
};

}  // namespace stoker::storage::s3
