#include "stoker/storage/http/http_storage.h"

#include <future>

#include "stoker/storage/http/url.h"

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
    : dispatcher_(Dispatcher::Create(std::move(transport), options)),
      bytes_read_(std::make_shared<std::atomic<int64_t>>(0)) {}

Result<std::vector<ObjectInfo>> HttpStorage::List(const std::string& prefix_uri) {
  return Unsupported(prefix_uri + ": http(s) URLs cannot be listed; use a manifest (.csv or .jsonl)");
}

HttpStorage::~HttpStorage() { dispatcher_->Shutdown(); }
void HttpStorage::Shutdown() { dispatcher_->Shutdown(); }

void HttpStorage::ReadAsync(const std::string& uri, ReadCallback done) {
  const std::string scheme = ToLower(uri.substr(0, uri.find("://")));
  if (scheme != "http" && scheme != "https") {
    done(InvalidArgument(uri + ": not an http(s) URL"));
    return;
  }
  Dispatcher::Call call;
  call.prepare = [uri, buffers = buffers_]() -> Result<Request> {
    Request r;
    r.url = uri;  // sent as given: a presigned URL's query stays intact
    r.body_buffers = buffers;
    return r;
  };
  call.classify = [uri](const Response& r) { return ClassifyHttpReply(r, uri); };
  call.done = [counter = bytes_read_, done = std::move(done)](Result<Response> r) {
    if (!r.ok()) {
      done(r.status());
      return;
    }
    counter->fetch_add(static_cast<int64_t>(r->body.size()), std::memory_order_relaxed);
    done(std::move(r->body));
  };
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
  return {s.requests, bytes_read_->load(std::memory_order_relaxed), s.retries, s.timeouts};
}

}  // namespace stoker::storage::http
