// libFuzzer target: URI parsing. The input is split at its first newline
// into an S3 endpoint URL and a dataset URI (no newline: both are the whole
// input). Exercised: OpenStorage's choice of backend by scheme (for the
// backends that start no I/O thread: file and unknown schemes), s3:// URI
// parsing, endpoint URL parsing, percent-encoding, and building (and, with
// credentials, SigV4-signing) a request for the parsed bucket and key.
//
// Checked beyond "no crash": parse -> format -> parse gives the same
// pieces; UriDecode(UriEncode(s)) == s; a parsed endpoint has an http(s)
// scheme, a host and a valid port; a built request's URL starts with the
// endpoint's origin (or a virtual-hosted bucket under it) and parses back.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "stoker/storage/http/url.h"
#include "stoker/storage/s3/request.h"
#include "stoker/storage/storage.h"

namespace {

namespace http = stoker::storage::http;
namespace s3 = stoker::storage::s3;

[[noreturn]] void Fail(const char* what, std::string_view detail = "") {
  std::fprintf(stderr, "uri_fuzz invariant broken: %s [%.*s]\n", what,
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}

void CheckEncoding(std::string_view s) {
  for (bool keep_slash : {false, true}) {
    const std::string enc = http::UriEncode(s, keep_slash);
    for (char c : enc) {
      const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.' || c == '~' || c == '%' ||
                      (keep_slash && c == '/');
      if (!ok) Fail("UriEncode left a reserved character", enc);
    }
    auto dec = http::UriDecode(enc);
    if (!dec || *dec != s) Fail("UriDecode(UriEncode(s)) != s", s);
  }
  if (auto dec = http::UriDecode(s, /*plus_is_space=*/true)) {
    auto again = http::UriDecode(http::UriEncode(*dec, false));
    if (!again || *again != *dec) Fail("decoded string does not survive encoding", s);
  }
}

void CheckStorage(const std::string& uri) {
  const auto scheme_end = uri.find("://");
  std::string scheme = http::ToLower(uri.substr(0, scheme_end == std::string::npos ? 0 : scheme_end));
  // s3 and http(s) start an I/O thread per backend: their parsing is
  // fuzzed below, not their start-up.
  if (scheme == "s3" || scheme == "http" || scheme == "https") return;
  auto storage = stoker::storage::OpenStorage(uri);
  const bool local = scheme_end == std::string::npos || scheme == "file";
  if (storage.ok() != local) Fail("OpenStorage accepted an unknown scheme or refused a local one", uri);
  if (!storage.ok() && storage.status().message().find(uri) == std::string::npos) {
    Fail("OpenStorage error does not name the URI", uri);
  }
  if (storage.ok()) (void)(*storage)->Join(uri, "k");
}

// The pieces of `u` survive formatting and parsing again.
void CheckUrl(const http::Url& u, std::string_view input) {
  if (u.scheme != "http" && u.scheme != "https") Fail("bad scheme", input);
  if (u.host.empty()) Fail("no host", input);
  if (u.port < 0 || u.port > 65535) Fail("bad port", input);
  if (!u.path.empty() && (u.path.front() != '/' || u.path.back() == '/')) Fail("bad path", input);
  auto again = http::ParseUrl(u.Origin() + u.path);
  if (!again.ok()) Fail("formatted URL does not parse", u.Origin() + u.path);
  if (again->scheme != u.scheme || again->host != u.host || again->path != u.path ||
      again->Authority() != u.Authority()) {
    Fail("URL changes when formatted and parsed", input);
  }
}

void CheckRequest(const std::string& endpoint, const s3::S3Uri& where, bool signed_request) {
  s3::S3Config config;
  config.endpoint_url = endpoint;
  if (signed_request) {
    config.credentials.access_key_id = "AKIDEXAMPLE";
    config.credentials.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
  }
  auto builder = s3::RequestBuilder::Create(config);
  if (!builder.ok()) {
    if (endpoint.empty()) Fail("the default AWS endpoint is refused", builder.status().ToString());
    return;
  }
  const s3::QueryParams query = {{"list-type", "2"}, {"prefix", where.key}};
  auto req = builder->Build("GET", where.bucket, where.key, query, {},
                            std::chrono::system_clock::time_point{});
  if (!req.ok()) return;
  const std::string base = req->url.substr(0, req->url.find('?'));
  auto parsed = http::ParseUrl(base);
  if (!parsed.ok()) Fail("request URL does not parse", req->url);
  if (!endpoint.empty()) {
    auto ep = http::ParseUrl(endpoint);
    if (!ep.ok()) Fail("endpoint accepted by Create does not parse", endpoint);
    if (parsed->host != ep->host && parsed->host != http::ToLower(where.bucket) + "." + ep->host) {
      Fail("request goes to another host", req->url);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto nl = input.find('\n');
  const std::string endpoint(input.substr(0, nl));
  const std::string uri(nl == std::string_view::npos ? input : input.substr(nl + 1));

  CheckEncoding(input);
  CheckStorage(uri);
  (void)stoker::storage::IsLocal(uri);

  auto url = http::ParseUrl(endpoint);
  if (url.ok()) CheckUrl(*url, endpoint);

  auto where = s3::ParseS3Uri(uri);
  if (where.ok()) {
    if (where->bucket.empty()) Fail("s3 URI without a bucket parsed", uri);
    auto again = s3::ParseS3Uri(s3::FormatS3Uri(where->bucket, where->key));
    if (!again.ok() || again->bucket != where->bucket || again->key != where->key) {
      Fail("s3 URI changes when formatted and parsed", uri);
    }
    for (bool signed_request : {false, true}) {
      CheckRequest(endpoint, *where, signed_request);
      CheckRequest("", *where, signed_request);
    }
  } else if (where.status().code() == stoker::StatusCode::kInternal) {
    Fail("internal error", uri);
  }
  return 0;
}
