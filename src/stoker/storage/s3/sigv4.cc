#include "stoker/storage/s3/sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <ctime>
#include <map>

#include "stoker/storage/http/url.h"

namespace stoker::storage::s3 {
namespace {

// Lower-cases nothing; collapses runs of whitespace (folded lines included)
// to one space and trims the ends, as botocore does with ' '.join(v.split()).
std::string TrimAll(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

}  // namespace

std::string HexEncode(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

namespace {

// OpenSSL 3's one-shot SHA256() and HMAC() look the algorithm up in the
// provider tables on every call, which costs more than hashing a few hundred
// bytes: fetch it once, keep one digest context per thread.
const EVP_MD* Sha256Md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

struct DigestCtx {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~DigestCtx() { EVP_MD_CTX_free(ctx); }
};

void Sha256(std::string_view a, std::string_view b, unsigned char out[32]) {
  thread_local DigestCtx d;
  EVP_DigestInit_ex2(d.ctx, Sha256Md(), nullptr);
  EVP_DigestUpdate(d.ctx, a.data(), a.size());
  EVP_DigestUpdate(d.ctx, b.data(), b.size());
  EVP_DigestFinal_ex(d.ctx, out, nullptr);
}

}  // namespace

std::string Sha256Hex(std::string_view data) {
  unsigned char md[32];
  Sha256(data, {}, md);
  return HexEncode({reinterpret_cast<const char*>(md), sizeof(md)});
}

// RFC 2104 over SHA-256 (64-byte blocks).
std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char k[64] = {};
  if (key.size() > sizeof(k)) {
    Sha256(key, {}, k);
  } else {
    std::copy(key.begin(), key.end(), k);
  }
  char ipad[64], opad[64];
  for (size_t i = 0; i < sizeof(k); ++i) {
    ipad[i] = static_cast<char>(k[i] ^ 0x36);
    opad[i] = static_cast<char>(k[i] ^ 0x5c);
  }
  unsigned char inner[32], outer[32];
  Sha256({ipad, sizeof(ipad)}, data, inner);
  Sha256({opad, sizeof(opad)}, {reinterpret_cast<const char*>(inner), sizeof(inner)}, outer);
  OPENSSL_cleanse(k, sizeof(k));
  OPENSSL_cleanse(ipad, sizeof(ipad));
  return std::string(reinterpret_cast<const char*>(outer), sizeof(outer));
}

std::string SigningKey(const Credentials& creds, std::string_view date, std::string_view region,
                       std::string_view service) {
  std::string key = HmacSha256("AWS4" + creds.secret_access_key, date);
  key = HmacSha256(key, region);
  key = HmacSha256(key, service);
  return HmacSha256(key, "aws4_request");
}

std::string AmzDate(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string CanonicalQuery(const std::vector<std::pair<std::string, std::string>>& query) {
  std::vector<std::pair<std::string, std::string>> enc;
  enc.reserve(query.size());
  for (const auto& [k, v] : query) {
    enc.emplace_back(http::UriEncode(k, false), http::UriEncode(v, false));
  }
  std::sort(enc.begin(), enc.end());
  std::string out;
  for (const auto& [k, v] : enc) {
    if (!out.empty()) out += '&';
    out += k;
    out += '=';
    out += v;
  }
  return out;
}

Signature SignV4(const SigningRequest& r, const Credentials& creds) {
  return SignV4(r, creds, SigningKey(creds, r.amz_date.substr(0, 8), r.region, r.service));
}

Signature SignV4(const SigningRequest& r, const Credentials& creds, std::string_view signing_key) {
  // Canonical headers: lower-case names, sorted; values trimmed, repeats
  // joined with ',' in the order given.
  std::map<std::string, std::string> headers;
  for (const auto& [name, value] : r.headers) {
    std::string key = http::ToLower(http::Trim(name));
    auto [it, inserted] = headers.emplace(key, TrimAll(value));
    if (!inserted) {
      it->second += ',';
      it->second += TrimAll(value);
    }
  }
  std::string canonical_headers, signed_headers;
  for (const auto& [name, value] : headers) {
    canonical_headers += name + ":" + value + "\n";
    if (!signed_headers.empty()) signed_headers += ';';
    signed_headers += name;
  }
  Signature s;
  s.canonical_request = r.method + "\n" + r.canonical_uri + "\n" + CanonicalQuery(r.query) + "\n" +
                        canonical_headers + "\n" + signed_headers + "\n" + r.payload_hash;
  const std::string date = r.amz_date.substr(0, 8);
  const std::string scope = date + "/" + r.region + "/" + r.service + "/aws4_request";
  s.string_to_sign = "AWS4-HMAC-SHA256\n" + r.amz_date + "\n" + scope + "\n" +
                     Sha256Hex(s.canonical_request);
  s.signature = HexEncode(HmacSha256(signing_key, s.string_to_sign));
  s.authorization = "AWS4-HMAC-SHA256 Credential=" + creds.access_key_id + "/" + scope +
                    ", SignedHeaders=" + signed_headers + ", Signature=" + s.signature;
  return s;
}

}  // namespace stoker::storage::s3
