#include "stoker/storage/http/http_storage.h"

#include <future>

#include "stoker/storage/http/range.h"
#include "stoker/storage/http/url.h"
#include "stoker/storage/registry.h"

namespace stoker::storage::http {

Verdict ClassifyHttpReply(const Response& r, const std::string& uri) {
  if (r.error != NetError::kNone) {
    Status st = IOError(uri + ": " + NetErrorName(r.error) + ": " + r.error_message);
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
  Dispatcher::Call call;
  const bool ranged = range != nullptr;
  const ByteRange r = ranged ? *range : ByteRange{};
  call.prepare = [uri, ranged, r, buffers = buffers_]() -> Result<Request> {
    Request req;
    req.url = uri;  // sent as given: a presigned URL's query stays intact
    if (ranged) req.headers.emplace_back("Range", RangeHeader(r));
    req.body_buffers = buffers;
    return req;
  };
  call.classify = [uri, ranged](const Response& reply) {
    if (ranged && IsRangeAnswer(reply)) return Verdict::Done();
    return ClassifyHttpReply(reply, uri);
  };
  call.done = [meters = meters_, uri, ranged, r, done = std::move(done)](Result<Response> reply) {
    Result<Bytes> out = !reply.ok()  ? Result<Bytes>(reply.status())
                        : ranged     ? RangeBody(*reply, uri, r)
                                     : Result<Bytes>(std::move(reply->body));
    meters->Ended(out);
    meters->Add(meters->in_flight, -1);
    done(std::move(out));
  };
  call.stop = std::move(stop);
  dispatcher_->Submit(std::move(call));
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
