// URL pieces shared by the HTTP and S3 backends: RFC 3986 percent-encoding as
// SigV4 defines it, and splitting an endpoint URL.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "stoker/status.h"

namespace stoker::storage::http {

// Percent-encodes every byte except the unreserved A-Z a-z 0-9 - _ . ~ (and
// '/' when `keep_slash`), upper-case hex: SigV4's UriEncode.
std::string UriEncode(std::string_view s, bool keep_slash);

// Decodes %XX escapes (and '+' as space when `plus_is_space`); nullopt on a
// malformed escape.
std::optional<std::string> UriDecode(std::string_view s, bool plus_is_space = false);

struct Url {
  std::string scheme;  // "http" or "https", lower-case
  std::string host;    // lower-case; an IPv6 literal keeps its brackets
  int port = 0;        // 0: the scheme's default
  std::string path;    // "" or starting with '/', without trailing '/' (no query)
  // "host" or "host:port" (the port only when it is not the default): the
  // Host header, and what SigV4 signs.
  std::string Authority() const;
  // scheme://authority
  std::string Origin() const;
};

// Parses an http(s) URL such as "http://127.0.0.1:9000" or
// "https://s3.eu-west-1.amazonaws.com/base". Refuses user:password@ (a
// secret in a URL ends up in logs) without echoing it, queries and fragments.
Result<Url> ParseUrl(std::string_view url);

// ASCII lower-case copy.
std::string ToLower(std::string_view s);

// `s` without leading and trailing spaces and tabs.
std::string_view Trim(std::string_view s);

}  // namespace stoker::storage::http
