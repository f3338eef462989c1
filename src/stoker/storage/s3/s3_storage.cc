#include "stoker/storage/s3/s3_storage.h"

#include <algorithm>
#include <charconv>
#include <future>
#include <set>

#include "stoker/storage/http/range.h"
#include "stoker/storage/registry.h"
#include "stoker/storage/s3/xml.h"

namespace stoker::storage::s3 {
namespace {

// Server-supplied text in an error: printable, bounded.
std::string Sanitize(std::string_view s, size_t max = 300) {
  std::string out;
  for (char c : s.substr(0, max)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? ' ' : c;
  }
  if (s.size() > max) out += "...";
  return out;
}

void Scrub(std::string& msg, const std::string& secret) {
  if (secret.size() < 4) return;
  for (size_t p = msg.find(secret); p != std::string::npos; p = msg.find(secret, p)) {
    msg.replace(p, secret.size(), "<redacted>");
  }
}

const char* StatusPhrase(int status) {
  switch (status) {
    case 301: return "PermanentRedirect";
    case 307: return "TemporaryRedirect";
    case 400: return "BadRequest";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "NotFound";
    case 405: return "MethodNotAllowed";
    case 409: return "Conflict";
    case 412: return "PreconditionFailed";
    case 416: return "InvalidRange";
    case 429: return "TooManyRequests";
    case 500: return "InternalError";
    case 502: return "BadGateway";
    case 503: return "ServiceUnavailable";
    case 504: return "GatewayTimeout";
    default: return "Error";
  }
}

// Credential problems, whatever their HTTP status (S3 answers a bad or
// expired session token with 400).
bool IsAuthErrorCode(const std::string& code) {
  static constexpr std::string_view kCodes[] = {
      "AccessDenied",      "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch",
      "InvalidToken",      "ExpiredToken",      "TokenRefreshRequired", "InvalidSecurity",
      "AccountProblem",    "InvalidObjectState_AccessDenied",
  };
  return std::find(std::begin(kCodes), std::end(kCodes), code) != std::end(kCodes);
}

StatusCode CodeFor(int status, const std::string& s3_code) {
  if (status == 404 || s3_code == "NoSuchKey" || s3_code == "NoSuchBucket") {
    return StatusCode::kNotFound;
  }
  if (status == 401 || status == 403 || IsAuthErrorCode(s3_code)) {
    return StatusCode::kPermissionDenied;
  }
  if (status == 400 || status == 416) return StatusCode::kInvalidArgument;
  return StatusCode::kIOError;
}

// The endpoint as messages name it, without any user:password@ part.
std::string ServerName(const S3Config& config) {
  if (config.endpoint_url.empty()) return "https://s3." + config.region + ".amazonaws.com";
  std::string url = config.endpoint_url;
  const size_t scheme = url.find("://");
  const size_t start = scheme == std::string::npos ? 0 : scheme + 3;
  const size_t end = url.find_first_of("/?#", start);
  const size_t at = url.rfind('@', end == std::string::npos ? url.size() : end);
  if (at != std::string::npos && at >= start) url.erase(start, at + 1 - start);
  return Sanitize(url, 200);
}

}  // namespace

http::Verdict ClassifyS3Reply(const http::Response& r, const std::string& uri, const S3Uri& where,
                              const S3Config& config) {
  const std::string names = "bucket '" + Sanitize(where.bucket, 255) + "'" +
                            (where.key.empty() ? "" : ", key '" + Sanitize(where.key, 1024) + "'");
  if (http::IsFirstContactFailure(r)) {
    Status st = http::FirstContactStatus(r, uri, ServerName(config));
    return http::Verdict::Fail(Status(st.code(), Sanitize(st.message(), 1000) + " (" + names + ")"));
  }
  if (r.error != http::NetError::kNone) {
    std::string msg = uri + ": " + http::NetErrorName(r.error) + ": " +
                      Sanitize(http::DescribeNetFailure(r)) + " (" + names + ")";
    Status st = IOError(std::move(msg));
    return http::IsTransient(r) ? http::Verdict::Retry(std::move(st))
                                : http::Verdict::Fail(std::move(st));
  }
  if (r.status >= 200 && r.status < 300) return http::Verdict::Done();

  std::optional<S3Error> err = r.body.empty() ? std::nullopt : ParseS3Error(r.BodyText());
  const std::string code = err && !err->code.empty() ? err->code : StatusPhrase(r.status);
  std::string msg = uri + ": HTTP " + std::to_string(r.status) + " " + Sanitize(code, 64);
  if (err && !err->message.empty()) msg += ": " + Sanitize(err->message);
  msg += " (" + names;
  if (err && !err->request_id.empty()) msg += ", request id " + Sanitize(err->request_id, 64);
  msg += ")";
  const std::string* hdr_region = r.Header("x-amz-bucket-region");
  const std::string region =
      hdr_region ? *hdr_region : (err && !err->region.empty() ? err->region : std::string());
  if (!region.empty() && region != config.region) {
    msg += "; the bucket is in region '" + Sanitize(region, 32) + "', not '" + config.region +
           "': set AWS_REGION=" + Sanitize(region, 32);
  } else if (r.status == 301 || r.status == 307) {
    msg += "; the bucket is elsewhere (another region or endpoint)";
  }
  const StatusCode sc = CodeFor(r.status, code);
  if (sc == StatusCode::kPermissionDenied) {
    msg += "; credentials: " + config.credentials_source;
  }
  Scrub(msg, config.credentials.secret_access_key);
  Scrub(msg, config.credentials.session_token);
  Status st(sc, std::move(msg));
  if (http::IsTransient(r) || http::IsTransientErrorCode(code)) {
    return http::Verdict::Retry(std::move(st));
  }
  return http::Verdict::Fail(std::move(st));
}

void RegisterS3Storage() {
  RegisterStorage("s3", [](const std::string&,
                           const StorageOptions& options) -> Result<std::shared_ptr<Storage>> {
    STOKER_ASSIGN_OR_RETURN(auto s3, S3Storage::Open(options));
    return Result<std::shared_ptr<Storage>>(std::move(s3));
  });
}

Result<std::shared_ptr<S3Storage>> S3Storage::Open(const StorageOptions& options,
                                                   const S3Options& s3) {
  STOKER_ASSIGN_OR_RETURN(S3Config config, ResolveS3Config(options.endpoint_url, ProcessEnv()));
  // Check the endpoint and region before starting the I/O thread.
  STOKER_RETURN_IF_ERROR(RequestBuilder::Create(config).status());
  http::CurlOptions curl = s3.curl;
  if (curl.ca_bundle.empty()) curl.ca_bundle = config.ca_bundle;
  return Create(config, http::NewTransport(curl), s3);
}

S3Options S3OptionsFor(const IoOptions& io, const S3Config& config) {
  S3Options o;
  o.curl = http::CurlOptionsFor(io);
  if (o.curl.ca_bundle.empty()) o.curl.ca_bundle = config.ca_bundle;
  o.dispatch.retry = http::RetryPolicyFor(io, config.max_attempts);
  return o;
}

Result<std::shared_ptr<S3Storage>> S3Storage::Open(const StorageOptions& options) {
  STOKER_ASSIGN_OR_RETURN(S3Config config, ResolveS3Config(options.endpoint_url, ProcessEnv()));
  STOKER_RETURN_IF_ERROR(RequestBuilder::Create(config).status());
  const S3Options s3 = S3OptionsFor(options.io, config);
  return Create(config, http::NewTransport(s3.curl), s3);
}

Result<std::shared_ptr<S3Storage>> S3Storage::Create(const S3Config& config,
                                                     std::unique_ptr<http::Transport> transport,
                                                     const S3Options& s3) {
  STOKER_ASSIGN_OR_RETURN(RequestBuilder builder, RequestBuilder::Create(config));
  http::DispatcherOptions dispatch = s3.dispatch;
  if (dispatch.server.empty()) dispatch.server = ServerName(config);
  auto dispatcher = http::Dispatcher::Create(std::move(transport), dispatch);
  return std::shared_ptr<S3Storage>(new S3Storage(
      std::make_shared<const RequestBuilder>(std::move(builder)), std::move(dispatcher)));
}

S3Storage::S3Storage(std::shared_ptr<const RequestBuilder> builder,
                     std::shared_ptr<http::Dispatcher> dispatcher)
    : builder_(std::move(builder)), dispatcher_(std::move(dispatcher)) {}

S3Storage::~S3Storage() { dispatcher_->Shutdown(); }
void S3Storage::Shutdown() { dispatcher_->Shutdown(); }

void S3Storage::Send(const std::string& method, const std::string& uri, http::Headers headers,
                     std::function<void(Result<http::Response>)> done, bool recycled_body,
                     std::stop_token stop, bool range) {
  auto where = ParseS3Uri(uri);
  if (!where.ok()) {
    done(where.status());
    return;
  }
  if (where->key.empty()) {
    done(InvalidArgument(uri + ": names a bucket, not an object"));
    return;
  }
  http::Dispatcher::Call call;
  auto b = builder_;
  auto w = std::make_shared<const S3Uri>(std::move(*where));
  std::shared_ptr<BufferRecycler> buffers = recycled_body ? buffers_ : nullptr;
  call.prepare = [b, w, method, buffers, headers = std::move(headers)]() {
    auto r = b->Build(method, w->bucket, w->key, {}, headers, std::chrono::system_clock::now());
    if (r.ok()) r->body_buffers = buffers;
    return r;
  };
  call.classify = [b, w, uri, range](const http::Response& r) {
    if (range && http::IsRangeAnswer(r)) return http::Verdict::Done();
    return ClassifyS3Reply(r, uri, *w, b->config());
  };
  call.done = std::move(done);
  call.stop = std::move(stop);
  dispatcher_->Submit(std::move(call));
}

void S3Storage::ReadAsync(const std::string& uri, ReadCallback done) {
  Get(uri, nullptr, std::move(done), std::stop_token());
}

void S3Storage::ReadAsync(const std::string& uri, ReadCallback done, std::stop_token stop) {
  Get(uri, nullptr, std::move(done), std::move(stop));
}

void S3Storage::ReadRangeAsync(const std::string& uri, ByteRange range, ReadCallback done,
                               std::stop_token stop) {
  if (AnswerWithoutReading(uri, range, done)) return;
  Get(uri, &range, std::move(done), std::move(stop));
}

// The Range header is signed with the rest (SigV4 signs every header sent
// but the Authorization itself), each attempt anew.
void S3Storage::Get(const std::string& uri, const ByteRange* range, ReadCallback done,
                    std::stop_token stop) {
  meters_->Add(meters_->in_flight);
  const bool ranged = range != nullptr;
  const ByteRange r = ranged ? *range : ByteRange{};
  http::Headers headers;
  if (ranged) headers.emplace_back("Range", http::RangeHeader(r));
  Send(
      "GET", uri, std::move(headers),
      [meters = meters_, uri, ranged, r, done = std::move(done)](Result<http::Response> reply) {
        Result<Bytes> out = !reply.ok() ? Result<Bytes>(reply.status())
                            : ranged    ? http::RangeBody(*reply, uri, r)
                                        : Result<Bytes>(std::move(reply->body));
        meters->Ended(out);
        meters->Add(meters->in_flight, -1);
        done(std::move(out));
      },
      /*recycled_body=*/true, std::move(stop), ranged);
}

Result<Bytes> S3Storage::Read(const std::string& uri) {
  std::promise<Result<Bytes>> p;
  auto f = p.get_future();
  ReadAsync(uri, [&p](Result<Bytes> r) { p.set_value(std::move(r)); });
  return f.get();
}

Result<ObjectMeta> S3Storage::Head(const std::string& uri) {
  std::promise<Result<ObjectMeta>> p;
  auto f = p.get_future();
  Send("HEAD", uri, {}, [&p, uri](Result<http::Response> r) {
    if (!r.ok()) {
      p.set_value(r.status());
      return;
    }
    ObjectMeta m;
    if (const std::string* len = r->Header("content-length")) {
      int64_t v = 0;
      auto [ptr, ec] = std::from_chars(len->data(), len->data() + len->size(), v);
      if (ec == std::errc() && ptr == len->data() + len->size() && v >= 0) m.size = v;
    }
    if (const std::string* etag = r->Header("etag")) m.etag = *etag;
    if (m.size < 0) {
      p.set_value(Corrupt(uri + ": HEAD reply without a valid Content-Length"));
      return;
    }
    p.set_value(std::move(m));
  });
  return f.get();
}

Result<std::vector<ObjectInfo>> S3Storage::List(const std::string& prefix_uri) {
  STOKER_ASSIGN_OR_RETURN(S3Uri where, ParseS3Uri(prefix_uri));
  std::string prefix = where.key;
  if (!prefix.empty() && prefix.back() != '/') prefix += '/';
  const S3Uri listed{where.bucket, prefix};
  std::vector<ObjectInfo> out;
  std::string token;
  std::set<std::string> seen_tokens;
  // A hostile or broken server could hand out tokens forever; 10^6 pages is
  // 10^9 keys.
  constexpr int kMaxPages = 1000000;
  for (int page_no = 0; page_no < kMaxPages; ++page_no) {
    QueryParams query = {{"list-type", "2"}, {"encoding-type", "url"}};
    if (!prefix.empty()) query.emplace_back("prefix", prefix);
    if (!token.empty()) query.emplace_back("continuation-token", token);
    std::promise<Result<http::Response>> p;
    auto f = p.get_future();
    http::Dispatcher::Call call;
    auto b = builder_;
    call.prepare = [b, listed, query]() {
      return b->Build("GET", listed.bucket, "", query, {}, std::chrono::system_clock::now());
    };
    // Errors name the bucket; the URI names the prefix.
    call.classify = [b, bucket = S3Uri{where.bucket, ""}, prefix_uri](const http::Response& r) {
      return ClassifyS3Reply(r, prefix_uri, bucket, b->config());
    };
    call.done = [&p](Result<http::Response> r) { p.set_value(std::move(r)); };
    dispatcher_->Submit(std::move(call));
    auto reply = f.get();
    if (!reply.ok()) return reply.status().WithContext("cannot list");
    auto page = ParseListObjectsV2(reply->BodyText());
    if (!page.ok()) return page.status().WithContext(prefix_uri);
    for (auto& o : page->objects) {
      // Anything outside the prefix is a server bug; folder markers are not objects.
      if (o.key.size() <= prefix.size() || o.key.compare(0, prefix.size(), prefix) != 0) continue;
      if (o.key.back() == '/') continue;
      out.push_back({o.key.substr(prefix.size()), o.size});
    }
    if (!page->truncated) {
      std::sort(out.begin(), out.end(),
                [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
      if (out.empty()) return NotFound(prefix_uri + ": no objects under this prefix");
      return out;
    }
    if (!seen_tokens.insert(page->next_token).second) {
      return Corrupt(prefix_uri + ": ListObjectsV2 returned the same continuation token twice");
    }
    token = std::move(page->next_token);
  }
  return Corrupt(prefix_uri + ": listing did not end after " + std::to_string(kMaxPages) + " pages");
}

std::string S3Storage::Join(const std::string& base, const std::string& key) const {
  if (base.empty() || base.back() == '/') return base + key;
  return base + "/" + key;
}

StorageCounters S3Storage::counters() const {
  const auto s = dispatcher_->stats();
  StorageCounters c = meters_->Counters();
  c.requests = s.requests;
  c.retries = s.retries;
  c.timeouts = s.timeouts;
  c.latency_us = s.latency_us;
  return c;
}

}  // namespace stoker::storage::s3
