#include "stoker/storage/http/http_storage.h"

#include <future>
#include <optional>

#include "stoker/storage/http/range.h"
#include "stoker/storage/http/url.h"
#include "stoker/storage/registry.h"

namespace stoker::storage::http {

Verdict ClassifyHttpReply(const Response& r, const std::string& uri) {
  if (IsFirstContactFailure(r)) return Verdict::Fail(FirstContactStatus(r, uri, OriginOf(uri)));
  if (r.error != NetError::kNone) {
    Status st = IOError(uri + ": " + NetErrorName(r.error) + ": " + DescribeNetFailure(r));
    return IsTransient(r) ? Verdict::Retry(std::move(st)) : Verdict::Fail(std::move(st));
  }
  if (r.status >= 200 && r.status < 300) return Verdict::Done();
  const std::string msg = uri + ": HTTP " + std::to_string(r.status);
  if (IsTransient(r)) return Verdict::Retry(IOError(msg));
  if (r.status == 404 || r.status == 410) return Verdict::Fail(NotFound(msg));
  if (r.status == 401 || r.status == 403) {
    return Verdict::Fail(Status(StatusCode::kPermissionDenied, msg));
  }
  return Verdict::Fail(IOError(msg));
}

HttpStorage::HttpStorage(std::unique_ptr<Transport> transport, const DispatcherOptions& options)
    : dispatcher_(Dispatcher::Create(std::move(transport), options)) {}

void RegisterHttpStorage() {
  const StorageFactory open = [](const std::string&, const StorageOptions& options) {
    return Result<std::shared_ptr<Storage>>(std::make_shared<HttpStorage>(
        NewTransport(CurlOptionsFor(options.io)),
        DispatcherOptions{.retry = RetryPolicyFor(options.io, 0)}));
  };
  RegisterStorage("http", open, "http");
  RegisterStorage("https", open, "http");  // one storage for both
}

Result<std::vector<ObjectInfo>> HttpStorage::List(const std::string& prefix_uri) {
  return Unsupported(prefix_uri + ": http(s) URLs cannot be listed; use a manifest (.csv or .jsonl)");
}

HttpStorage::~HttpStorage() { dispatcher_->Shutdown(); }
void HttpStorage::Shutdown() { dispatcher_->Shutdown(); }

namespace {

constexpr int kMaxRedirects = 5;

bool IsRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// Where a Location header sends a request for `url`; empty if nowhere an
// http(s) GET can go.
std::string ResolveLocation(const std::string& url, std::string location) {
  location = std::string(Trim(location));
  if (const size_t hash = location.find('#'); hash != std::string::npos) location.resize(hash);
  if (location.empty()) return {};
  const std::string lower = ToLower(location.substr(0, 8));
  if (lower.rfind("http://", 0) == 0 || lower.rfind("https://", 0) == 0) return location;
  if (location.find("://") != std::string::npos) return {};  // another scheme
  const std::string origin = url.substr(0, url.find_first_of("/?#", url.find("://") + 3));
  if (location.rfind("//", 0) == 0) return url.substr(0, url.find("://") + 1) + location;
  if (location[0] == '/') return origin + location;
  // Relative to the URL's folder.
  std::string base = url.substr(0, url.find_first_of("?#", origin.size()));
  const size_t slash = base.rfind('/');
  base = slash == std::string::npos || slash < origin.size() ? origin + "/" : base.substr(0, slash + 1);
  return base + location;
}

struct ReadContext {
  std::shared_ptr<Dispatcher> dispatcher;
  std::shared_ptr<BufferRecycler> buffers;
  std::shared_ptr<StorageMeters> meters;
};

// GETs `url` (bytes `range` of it, when given) for the sample `uri`,
// following up to kMaxRedirects redirects (each hop is a request of its own,
// with its own retries, and the same stop token).
void ReadFollowing(const ReadContext& ctx, const std::string& uri, const std::string& url, int hops,
                   std::optional<ByteRange> range, std::stop_token stop,
                   Storage::ReadCallback done) {
  Dispatcher::Call call;
  call.prepare = [url, range, buffers = ctx.buffers]() -> Result<Request> {
    Request req;
    req.url = url;  // sent as given: a presigned URL's query stays intact
    if (range) req.headers.emplace_back("Range", RangeHeader(*range));
    req.body_buffers = buffers;
    return req;
  };
  const std::string shown = url == uri ? uri : uri + " (redirected to " + url + ")";
  call.classify = [shown, ranged = range.has_value()](const Response& r) {
    if (r.error == NetError::kNone && IsRedirect(r.status) && r.Header("location")) {
      return Verdict::Done();
    }
    if (ranged && IsRangeAnswer(r)) return Verdict::Done();
    return ClassifyHttpReply(r, shown);
  };
  call.done = [ctx, uri, url, hops, shown, range, stop,
               done = std::move(done)](Result<Response> r) mutable {
    auto finish = [&](Result<Bytes> out) {
      ctx.meters->Ended(out);
      ctx.meters->Add(ctx.meters->in_flight, -1);
      done(std::move(out));
    };
    if (!r.ok()) return finish(r.status());
    if (IsRedirect(r->status)) {
      const std::string next = ResolveLocation(url, *r->Header("location"));
      if (next.empty()) {
        return finish(IOError(shown + ": HTTP " + std::to_string(r->status) +
                              " redirects to a location that is not an http(s) URL"));
      }
      if (hops >= kMaxRedirects) {
        return finish(IOError(shown + ": more than " + std::to_string(kMaxRedirects) + " redirects"));
      }
      ReadFollowing(ctx, uri, next, hops + 1, range, stop, std::move(done));
      return;
    }
    finish(range ? RangeBody(*r, shown, *range) : Result<Bytes>(std::move(r->body)));
  };
  call.stop = std::move(stop);
  ctx.dispatcher->Submit(std::move(call));
}

}  // namespace

void HttpStorage::ReadAsync(const std::string& uri, ReadCallback done) {
  Get(uri, nullptr, std::move(done), std::stop_token());
}

void HttpStorage::ReadAsync(const std::string& uri, ReadCallback done, std::stop_token stop) {
  Get(uri, nullptr, std::move(done), std::move(stop));
}

void HttpStorage::ReadRangeAsync(const std::string& uri, ByteRange range, ReadCallback done,
                                 std::stop_token stop) {
  if (AnswerWithoutReading(uri, range, done)) return;
  Get(uri, &range, std::move(done), std::move(stop));
}

void HttpStorage::Get(const std::string& uri, const ByteRange* range, ReadCallback done,
                      std::stop_token stop) {
  const std::string scheme = ToLower(uri.substr(0, uri.find("://")));
  if (scheme != "http" && scheme != "https") {
    done(InvalidArgument(uri + ": not an http(s) URL"));
    return;
  }
  meters_->Add(meters_->in_flight);
  ReadFollowing(ReadContext{dispatcher_, buffers_, meters_}, uri, uri, 0,
                range ? std::optional<ByteRange>(*range) : std::nullopt, std::move(stop),
                std::move(done));
}

Result<Bytes> HttpStorage::Read(const std::string& uri) {
  std::promise<Result<Bytes>> p;
  auto f = p.get_future();
  ReadAsync(uri, [&p](Result<Bytes> r) { p.set_value(std::move(r)); });
  return f.get();
}

std::string HttpStorage::Join(const std::string& base, const std::string& key) const {
  if (base.empty() || base.back() == '/') return base + key;
  return base + "/" + key;
}

StorageCounters HttpStorage::counters() const {
  const auto s = dispatcher_->stats();
  StorageCounters c = meters_->Counters();
  c.requests = s.requests;
  c.retries = s.retries;
  c.timeouts = s.timeouts;
  c.latency_us = s.latency_us;
  return c;
}

}  // namespace stoker::storage::http
