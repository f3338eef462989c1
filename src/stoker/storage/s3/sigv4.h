// AWS Signature Version 4 (HMAC-SHA256 and SHA-256 from OpenSSL).
// https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stoker::storage::s3 {

// Never printed, logged or put in an error: messages name where credentials
// came from (S3Config::credentials_source), never what they are.
struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // temporary credentials only

  // No access key: requests go unsigned (public buckets).
  bool anonymous() const { return access_key_id.empty(); }
};

struct SigningRequest {
  std::string method;         // "GET"
  std::string canonical_uri;  // the path exactly as sent: already URI-encoded
  // Query parameters, not encoded (the signer encodes and sorts them).
  std::vector<std::pair<std::string, std::string>> query;
  // Every header to sign, as sent (host and x-amz-date included). Names are
  // matched case-insensitively; repeated names are joined with ','.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string payload_hash;   // hex SHA-256 of the body, or "UNSIGNED-PAYLOAD"
  std::string amz_date;       // "20150830T123600Z", as in the x-amz-date header
  std::string region;         // "us-east-1"
  std::string service;        // "s3"
};

struct Signature {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;      // hex
  std::string authorization;  // the Authorization header's value
};

Signature SignV4(const SigningRequest& request, const Credentials& credentials);
// The same with the day's signing key (SigningKey()) already derived: it
// changes once a day, so a signer may keep it.
Signature SignV4(const SigningRequest& request, const Credentials& credentials,
                 std::string_view signing_key);

// HMAC chain of the secret over date ("20150830"), region, service and
// "aws4_request". Secret material: keep it out of logs too.
std::string SigningKey(const Credentials& credentials, std::string_view date,
                       std::string_view region, std::string_view service);

// The canonical query string: names and values URI-encoded, sorted by name
// then value, joined with '&'.
std::string CanonicalQuery(const std::vector<std::pair<std::string, std::string>>& query);

// "20150830T123600Z" for `t`, UTC.
std::string AmzDate(std::chrono::system_clock::time_point t);

// Hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);
// Raw 32-byte HMAC-SHA256.
std::string HmacSha256(std::string_view key, std::string_view data);
std::string HexEncode(std::string_view bytes);

// The hash of an empty body, which every GET and HEAD sends.
inline constexpr std::string_view kEmptySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

}  // namespace stoker::storage::s3
