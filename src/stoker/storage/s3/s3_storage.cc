#include "stoker/storage/s3/s3_storage.h"

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <stop_token>

#include "stoker/storage/http/range.h"
#include "stoker/storage/registry.h"
#include "stoker/storage/s3/sigv4.h"
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

// ---- writing -------------------------------------------------------------------

namespace {

// The bucket and key of an object to write: a key, not a prefix.
Result<S3Uri> ObjectToWrite(const std::string& uri) {
  STOKER_ASSIGN_OR_RETURN(S3Uri where, ParseS3Uri(uri));
  if (where.key.empty() || where.key.back() == '/') {
    return InvalidArgument(uri + ": names a bucket or prefix, not an object to write");
  }
  return where;
}

}  // namespace

void S3Storage::SendWrite(const std::string& method, const std::string& uri, const S3Uri& where,
                          QueryParams query, std::shared_ptr<const std::string> body,
                          const std::string& op, bool check_body,
                          std::function<void(Result<http::Response>)> done, std::stop_token stop) {
  // Hashed once, however often the request is signed again.
  const std::string sha = body ? Sha256Hex(*body) : std::string(kEmptySha256);
  http::Dispatcher::Call call;
  auto b = builder_;
  auto w = std::make_shared<const S3Uri>(where);
  call.prepare = [b, w, method, query = std::move(query), body, sha]() {
    return b->Build(method, w->bucket, w->key, query, {}, std::chrono::system_clock::now(), body,
                    sha);
  };
  call.classify = [b, w, uri, check_body](const http::Response& r) {
    http::Verdict v = ClassifyS3Reply(r, uri, *w, b->config());
    if (v.kind != http::Verdict::kDone || !check_body || r.body.empty()) return v;
    // A 200 whose body is an <Error>: the request failed after all.
    std::optional<S3Error> err = ParseS3Error(r.BodyText());
    if (!err || err->code.empty()) return v;
    std::string msg = uri + ": HTTP " + std::to_string(r.status) + " " + Sanitize(err->code, 64);
    if (!err->message.empty()) msg += ": " + Sanitize(err->message);
    msg += " (bucket '" + Sanitize(w->bucket, 255) + "', key '" + Sanitize(w->key, 1024) + "')";
    Status st = IOError(std::move(msg));
    return http::IsTransientErrorCode(err->code) ? http::Verdict::Retry(std::move(st))
                                                 : http::Verdict::Fail(std::move(st));
  };
  call.done = [op, done = std::move(done)](Result<http::Response> r) {
    if (!r.ok()) {
      done(Status(r.status().code(), r.status().message() + " [" + op + "]"));
      return;
    }
    done(std::move(r));
  };
  call.stop = std::move(stop);
  dispatcher_->Submit(std::move(call));
}

Result<http::Response> S3Storage::Write(const std::string& method, const std::string& uri,
                                        const S3Uri& where, QueryParams query,
                                        std::shared_ptr<const std::string> body,
                                        const std::string& op, bool check_body) {
  std::promise<Result<http::Response>> p;
  auto f = p.get_future();
  SendWrite(method, uri, where, std::move(query), std::move(body), op, check_body,
            [&p](Result<http::Response> r) { p.set_value(std::move(r)); });
  return f.get();
}

Status S3Storage::Put(const std::string& uri, std::span<const uint8_t> bytes) {
  STOKER_ASSIGN_OR_RETURN(const S3Uri where, ObjectToWrite(uri));
  auto body = std::make_shared<const std::string>(reinterpret_cast<const char*>(bytes.data()),
                                                  bytes.size());
  return Write("PUT", uri, where, {}, std::move(body), "PutObject").status();
}

Status S3Storage::Delete(const std::string& uri) {
  STOKER_ASSIGN_OR_RETURN(const S3Uri where, ObjectToWrite(uri));
  auto r = Write("DELETE", uri, where, {}, nullptr, "DeleteObject");
  // S3 answers 204 for a missing key; a server that says NoSuchKey means
  // the same. A missing bucket stays an error.
  if (!r.ok() && r.status().code() == StatusCode::kNotFound &&
      r.status().message().find("NoSuchBucket") == std::string::npos) {
    return Status::Ok();
  }
  return r.status();
}

// One object being written: the part being filled is buffer_; full parts
// go out on the dispatcher while the caller fills the next.
class S3Writer final : public ObjectWriter {
 public:
  S3Writer(S3Storage* s3, std::string uri, S3Uri where, const WriteOptions& options)
      : ObjectWriter(std::move(uri)), s3_(s3), where_(std::move(where)), options_(options) {}
  ~S3Writer() override { (void)Abort(); }

  Status Append(std::span<const uint8_t> bytes) override {
    if (!error_.ok()) return error_;
    if (done_) return InvalidArgument(uri() + ": written to after Commit or Abort");
    const auto part = static_cast<size_t>(options_.part_size);
    while (!bytes.empty()) {
      // A full part goes only once a byte follows it: an object of exactly
      // part_size bytes is one PutObject.
      if (buffer_.size() == part) STOKER_RETURN_IF_ERROR(SendPart());
      const size_t take = std::min(part - buffer_.size(), bytes.size());
      if (buffer_.size() + take > buffer_.capacity()) {
        // Once parts are going out, every buffer fills to part_size; before,
        // the object may be small: grow by doubling, never past part_size.
        buffer_.reserve(upload_id_.empty()
                            ? std::min(part, std::max(buffer_.size() + take, 2 * buffer_.capacity()))
                            : part);
      }
      buffer_.append(reinterpret_cast<const char*>(bytes.data()), take);
      bytes = bytes.subspan(take);
      size_ += static_cast<int64_t>(take);
    }
    return Status::Ok();
  }

  Status Commit() override {
    if (!error_.ok()) return error_;
    if (done_) return InvalidArgument(uri() + ": committed or aborted already");
    if (upload_id_.empty()) {
      auto body = std::make_shared<const std::string>(std::move(buffer_));
      buffer_ = {};
      done_ = true;
      Status st = s3_->Write("PUT", uri(), where_, {}, std::move(body), "PutObject").status();
      if (!st.ok()) error_ = st;
      return st;
    }
    if (!buffer_.empty()) STOKER_RETURN_IF_ERROR(SendPart());
    std::vector<std::string> etags;
    {
      std::unique_lock<std::mutex> lock(shared_->mu);
      shared_->cv.wait(lock, [&] { return shared_->in_flight == 0; });
      if (!shared_->error.ok()) {
        Status st = shared_->error;
        lock.unlock();
        return Fail(std::move(st));
      }
      for (int n = 1; n < next_part_; ++n) etags.push_back(shared_->etags.at(n));
    }
    auto xml = std::make_shared<const std::string>(CompleteMultipartUploadXml(etags));
    auto r = s3_->Write("POST", uri(), where_, {{"uploadId", upload_id_}}, std::move(xml),
                        "CompleteMultipartUpload of " + std::to_string(etags.size()) + " parts",
                        /*check_body=*/true);
    if (!r.ok()) return Fail(r.status());
    done_ = true;
    return Status::Ok();
  }

  Status Abort() override {
    if (done_) return Status::Ok();
    done_ = true;
    buffer_ = {};
    // Parts on the way end (cancelled if still queued or on the wire) before
    // the upload goes: S3 may keep a part that finishes after the abort.
    stop_.request_stop();
    {
      std::unique_lock<std::mutex> lock(shared_->mu);
      shared_->cv.wait(lock, [&] { return shared_->in_flight == 0; });
    }
    if (upload_id_.empty()) return Status::Ok();
    auto r = s3_->Write("DELETE", uri(), where_, {{"uploadId", upload_id_}}, nullptr,
                        "AbortMultipartUpload " + upload_id_);
    if (!r.ok()) return r.status();
    return Status::Ok();
  }

  const std::string& upload_id() const { return upload_id_; }

 private:
  // What the parts on the way share with their callbacks.
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    int in_flight = 0;                 // guarded by mu
    std::map<int, std::string> etags;  // guarded by mu: by part number
    Status error;                      // guarded by mu: the first part's failure
  };

  // Sends buffer_ as the next part (starting the upload first), once fewer
  // than parts_in_flight are on the way.
  Status SendPart() {
    if (upload_id_.empty()) {
      auto r = s3_->Write("POST", uri(), where_, {{"uploads", ""}}, nullptr,
                          "CreateMultipartUpload");
      if (!r.ok()) return Fail(r.status());
      auto id = ParseUploadId(r->BodyText());
      if (!id.ok()) return Fail(id.status().WithContext(uri()));
      upload_id_ = std::move(*id);
    }
    if (next_part_ > kMaxParts) {
      return Fail(InvalidArgument(uri() + ": more than " + std::to_string(kMaxParts) +
                                  " parts of " + std::to_string(options_.part_size) +
                                  " bytes (S3's limit): write it with a larger part_size"));
    }
    {
      std::unique_lock<std::mutex> lock(shared_->mu);
      shared_->cv.wait(lock, [&] {
        return shared_->in_flight < std::max(1, options_.parts_in_flight) || !shared_->error.ok();
      });
      if (!shared_->error.ok()) {
        Status st = shared_->error;
        lock.unlock();
        return Fail(std::move(st));
      }
      ++shared_->in_flight;
    }
    const int n = next_part_++;
    auto body = std::make_shared<const std::string>(std::move(buffer_));
    buffer_ = {};
    s3_->SendWrite(
        "PUT", uri(), where_, {{"partNumber", std::to_string(n)}, {"uploadId", upload_id_}},
        std::move(body), "UploadPart " + std::to_string(n), /*check_body=*/false,
        [shared = shared_, n, uri = uri()](Result<http::Response> r) {
          std::lock_guard<std::mutex> lock(shared->mu);
          --shared->in_flight;
          const std::string* etag = r.ok() ? r->Header("etag") : nullptr;
          if (r.ok() && etag && !etag->empty()) {
            shared->etags[n] = *etag;
          } else if (shared->error.ok()) {
            shared->error = r.ok() ? Corrupt(uri + ": UploadPart " + std::to_string(n) +
                                             " reply without an ETag")
                                   : r.status();
          }
          shared->cv.notify_all();
        },
        stop_.get_token());
    return Status::Ok();
  }

  // Keeps `st`, aborts the upload, returns `st` (with the abort's own
  // failure, if any, added).
  Status Fail(Status st) {
    error_ = st;
    if (Status a = Abort(); !a.ok()) {
      error_ = Status(st.code(), st.message() + "; and the upload's parts were not deleted: " +
                                     a.message());
    }
    return error_;
  }

  static constexpr int kMaxParts = 10000;

  S3Storage* const s3_;
  const S3Uri where_;
  const WriteOptions options_;
  std::string buffer_;
  std::string upload_id_;
  int next_part_ = 1;
  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
  std::stop_source stop_;
  Status error_;
  bool done_ = false;
};

Result<std::unique_ptr<ObjectWriter>> S3Storage::OpenWriter(const std::string& uri,
                                                            const WriteOptions& options) {
  STOKER_ASSIGN_OR_RETURN(S3Uri where, ObjectToWrite(uri));
  if (options.part_size < 1) return InvalidArgument(uri + ": part_size must be at least 1 byte");
  return std::unique_ptr<ObjectWriter>(new S3Writer(this, uri, std::move(where), options));
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
