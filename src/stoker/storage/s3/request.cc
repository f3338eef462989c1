#include "stoker/storage/s3/request.h"

#include <algorithm>

namespace stoker::storage::s3 {
namespace {

constexpr std::string_view kScheme = "s3://";

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// A name that can be a DNS label sequence: 3-63 of a-z 0-9 . -, starting and
// ending with a letter or digit, no "..".
bool DnsCompatible(const std::string& b) {
  if (b.size() < 3 || b.size() > 63) return false;
  if (!IsLowerAlnum(b.front()) || !IsLowerAlnum(b.back())) return false;
  for (size_t i = 0; i < b.size(); ++i) {
    const char c = b[i];
    if (!IsLowerAlnum(c) && c != '-' && c != '.') return false;
    if (c == '.' && i + 1 < b.size() && (b[i + 1] == '.' || b[i + 1] == '-')) return false;
    if (c == '-' && i + 1 < b.size() && b[i + 1] == '.') return false;
  }
  return true;
}

}  // namespace

Result<S3Uri> ParseS3Uri(std::string_view uri) {
  if (uri.substr(0, kScheme.size()) != kScheme) {
    return InvalidArgument(std::string(uri) + ": not an s3:// URI");
  }
  std::string_view rest = uri.substr(kScheme.size());
  const auto slash = rest.find('/');
  S3Uri out;
  out.bucket = std::string(rest.substr(0, slash));
  if (slash != std::string_view::npos) out.key = std::string(rest.substr(slash + 1));
  if (out.bucket.empty()) return InvalidArgument(std::string(uri) + ": no bucket name");
  // Lenient about case and '_' (older buckets, S3-compatible servers), strict
  // about anything that would change the URL's meaning.
  for (char c : out.bucket) {
    const bool ok = IsLowerAlnum(c) || (c >= 'A' && c <= 'Z') || c == '-' || c == '.' || c == '_';
    if (!ok) return InvalidArgument(std::string(uri) + ": bad character in bucket name");
  }
  if (out.bucket.size() > 255) return InvalidArgument(std::string(uri) + ": bucket name too long");
  if (out.key.size() > 1024) {
    return InvalidArgument(std::string(uri.substr(0, 64)) + "...: key longer than 1024 bytes");
  }
  return out;
}

std::string FormatS3Uri(std::string_view bucket, std::string_view key) {
  std::string out(kScheme);
  out += bucket;
  out += '/';
  out += key;
  return out;
}

Result<RequestBuilder> RequestBuilder::Create(const S3Config& config) {
  RequestBuilder b;
  b.config_ = config;
  const std::string& region = config.region;
  if (region.empty() || region.size() > 64 ||
      !std::all_of(region.begin(), region.end(), [](char c) { return IsLowerAlnum(c) || c == '-'; })) {
    return InvalidArgument("AWS region '" + region + "' is not a region name (like us-east-1)");
  }
  if (config.endpoint_url.empty()) {
    b.aws_ = true;
    const bool china = region.rfind("cn-", 0) == 0;
    STOKER_ASSIGN_OR_RETURN(
        b.endpoint_,
        http::ParseUrl("https://s3." + region + (china ? ".amazonaws.com.cn" : ".amazonaws.com")));
  } else {
    STOKER_ASSIGN_OR_RETURN(b.endpoint_, http::ParseUrl(config.endpoint_url));
  }
  return b;
}

bool RequestBuilder::VirtualHosted(const std::string& bucket) const {
  switch (config_.addressing) {
    case AddressingStyle::kPath: return false;
    case AddressingStyle::kVirtual: return true;
    case AddressingStyle::kAuto: break;
  }
  // A dotted name breaks the *.s3 wildcard certificate over https.
  return aws_ && DnsCompatible(bucket) &&
         (endpoint_.scheme != "https" || bucket.find('.') == std::string::npos);
}

void RequestBuilder::Locate(const std::string& bucket, const std::string& key, http::Url& url,
                            std::string& path) const {
  url = endpoint_;
  path = endpoint_.path;
  if (VirtualHosted(bucket)) {
    url.host = bucket + "." + url.host;
  } else {
    path += '/';
    path += http::UriEncode(bucket, false);
  }
  if (!key.empty() || path.empty()) {
    path += '/';
    path += http::UriEncode(key, true);
  }
}

std::string RequestBuilder::ObjectUrl(const std::string& bucket, const std::string& key) const {
  http::Url u;
  std::string path;
  Locate(bucket, key, u, path);
  return u.Origin() + path;
}

Result<http::Request> RequestBuilder::Build(std::string_view method, const std::string& bucket,
                                            const std::string& key, const QueryParams& query,
                                            const http::Headers& extra,
                                            std::chrono::system_clock::time_point now) const {
  return Build(method, bucket, key, query, extra, now, nullptr, kEmptySha256);
}

Result<http::Request> RequestBuilder::Build(std::string_view method, const std::string& bucket,
                                            const std::string& key, const QueryParams& query,
                                            const http::Headers& extra,
                                            std::chrono::system_clock::time_point now,
                                            std::shared_ptr<const std::string> body,
                                            std::string_view payload_sha256) const {
  http::Url u;
  std::string path;
  Locate(bucket, key, u, path);

  http::Request req;
  req.method = std::string(method);
  req.url = u.Origin() + path;
  const std::string canonical_query = CanonicalQuery(query);
  if (!canonical_query.empty()) req.url += "?" + canonical_query;
  const std::string amz_date = AmzDate(now);
  req.headers.emplace_back("Host", u.Authority());
  for (const auto& h : extra) req.headers.push_back(h);
  req.body = std::move(body);
  if (config_.credentials.anonymous()) return req;

  req.headers.emplace_back("x-amz-content-sha256", std::string(payload_sha256));
  req.headers.emplace_back("x-amz-date", amz_date);
  if (!config_.credentials.session_token.empty()) {
    req.headers.emplace_back("x-amz-security-token", config_.credentials.session_token);
  }
  SigningRequest s;
  s.method = req.method;
  s.canonical_uri = path;
  s.query = query;
  s.headers = req.headers;
  s.payload_hash = std::string(payload_sha256);
  s.amz_date = amz_date;
  s.region = config_.region;
  s.service = "s3";
  std::string signing_key;
  {
    std::lock_guard<std::mutex> lock(key_cache_->mu);
    const std::string_view date = std::string_view(amz_date).substr(0, 8);
    if (key_cache_->date != date) {
      key_cache_->key = SigningKey(config_.credentials, date, config_.region, "s3");
      key_cache_->date = std::string(date);
    }
    signing_key = key_cache_->key;
  }
  req.headers.emplace_back("Authorization",
                           SignV4(s, config_.credentials, signing_key).authorization);
  return req;
}

}  // namespace stoker::storage::s3
