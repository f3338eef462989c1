#include "stoker/storage/http/url.h"

#include <cctype>
#include <charconv>

namespace stoker::storage::http {
namespace {

bool IsUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string UriEncode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (IsUnreserved(c) || (keep_slash && c == '/')) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::optional<std::string> UriDecode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (s.size() - i < 3) return std::nullopt;
      int hi = HexValue(s[i + 1]), lo = HexValue(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string Url::Authority() const {
  const bool default_port = port == 0 || (scheme == "http" && port == 80) ||
                            (scheme == "https" && port == 443);
  return default_port ? host : host + ":" + std::to_string(port);
}

std::string Url::Origin() const { return scheme + "://" + Authority(); }

Result<Url> ParseUrl(std::string_view url) {
  Url out;
  const auto sep = url.find("://");
  if (sep == std::string_view::npos) {
    return InvalidArgument("endpoint URL '" + std::string(url) +
                           "' has no scheme (expected http:// or https://)");
  }
  out.scheme = ToLower(url.substr(0, sep));
  if (out.scheme != "http" && out.scheme != "https") {
    return InvalidArgument("endpoint URL scheme '" + out.scheme + "' is not http or https");
  }
  std::string_view rest = url.substr(sep + 3);
  const auto path_start = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, path_start);
  std::string_view tail = path_start == std::string_view::npos ? "" : rest.substr(path_start);
  if (authority.find('@') != std::string_view::npos) {
    // Say where, not what: the user-info part is usually a secret.
    return InvalidArgument("endpoint URL " + out.scheme +
                           "://...: credentials in the URL are not supported; use "
                           "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or a profile");
  }
  if (!tail.empty() && tail.front() != '/') {
    return InvalidArgument("endpoint URL '" + std::string(url) +
                           "' must not have a query or fragment");
  }
  if (tail.find_first_of("?#") != std::string_view::npos) {
    return InvalidArgument("endpoint URL '" + std::string(url) +
                           "' must not have a query or fragment");
  }
  std::string_view host = authority, port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      return InvalidArgument("endpoint URL '" + std::string(url) + "': unterminated IPv6 address");
    }
    host = authority.substr(0, close + 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return InvalidArgument("endpoint URL '" + std::string(url) + "': bad host");
      }
      port = after.substr(1);
    }
  } else if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty() || host == "[]") {
    return InvalidArgument("endpoint URL '" + std::string(url) + "' has no host");
  }
  // ':' and brackets only in an IPv6 literal ("[::1]"), which holds nothing
  // else: "http://a:b:80" would be host "a:b" here and host "a", port "b"
  // to curl (found by uri_fuzz).
  const bool ipv6 = host.front() == '[';
  const std::string_view inner = ipv6 ? host.substr(1, host.size() - 2) : host;
  for (char c : inner) {
    const auto u = static_cast<unsigned char>(c);
    const bool bad = ipv6 ? !(std::isxdigit(u) || c == ':' || c == '.')
                          : (u <= 0x20 || u >= 0x7f || c == '\\' || c == '%' || c == ':' ||
                             c == '[' || c == ']');
    if (bad) return InvalidArgument("endpoint URL '" + std::string(url) + "': bad character in host");
  }
  if (!port.empty()) {
    int p = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || ptr != port.data() + port.size() || p <= 0 || p > 65535) {
      return InvalidArgument("endpoint URL '" + std::string(url) + "': bad port");
    }
    out.port = p;
  }
  out.host = ToLower(host);
  std::string path(tail);
  while (!path.empty() && path.back() == '/') path.pop_back();
  out.path = std::move(path);
  return out;
}

}  // namespace stoker::storage::http
