#include "stoker/storage/http/ca_store.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace stoker::storage::http {
namespace {

// The certificates of a CA file, as DER, by subject: what a lookup hands to
// the store when a chain asks for their subject.
struct LazyCerts {
  struct Cert {
    std::string der;     // emptied once parsed
    bool tried = false;  // parsed (and added to the store if it parsed)
  };
  std::mutex mu;  // a store may be searched from several threads
  std::vector<Cert> certs;
  std::unordered_multimap<unsigned long, size_t> by_subject;  // X509_NAME_hash_ex → certs[i]
};

// Reads the header of the DER element at *p (not past `end`) and moves *p
// to its contents; their length, or -1 when the element is not well formed
// DER (bad header, longer than what is left, indefinite length).
long Enter(const unsigned char** p, const unsigned char* end, int* tag, int* cls) {
  long len = 0;
  const int r = ASN1_get_object(p, &len, tag, cls, end - *p);
  if ((r & 0x80) != 0 || (r & 1) != 0) return -1;
  return len;
}

// Steps *p over the DER element it points at; false when it is not well formed.
bool Skip(const unsigned char** p, const unsigned char* end, int* tag, int* cls) {
  const long len = Enter(p, end, tag, cls);
  if (len < 0) return false;
  *p += len;
  return true;
}

// The subject Name of DER certificate `der`, as its DER bytes (a view into
// `der`); empty when `der` is no certificate.
std::string_view SubjectOf(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* end = p + der.size();
  int tag = 0, cls = 0;
  // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { ... }, ... }
  for (int level = 0; level < 2; ++level) {
    const long len = Enter(&p, end, &tag, &cls);
    if (len < 0 || tag != V_ASN1_SEQUENCE || cls != V_ASN1_UNIVERSAL) return {};
    end = p + len;
  }
  // tbsCertificate: [0] version (optional), serialNumber, signature,
  // issuer, validity, subject, ...
  if (!Skip(&p, end, &tag, &cls)) return {};
  if (cls == V_ASN1_CONTEXT_SPECIFIC && tag == 0 && !Skip(&p, end, &tag, &cls)) return {};
  for (int field = 0; field < 3; ++field) {
    if (!Skip(&p, end, &tag, &cls)) return {};
  }
  const unsigned char* subject = p;
  if (!Skip(&p, end, &tag, &cls) || tag != V_ASN1_SEQUENCE) return {};
  return {reinterpret_cast<const char*>(subject), static_cast<size_t>(p - subject)};
}

// The hash OpenSSL files a name under (X509_NAME_hash_ex: of its canonical
// form, as the hashed-folder lookup uses); false when `subject` is no Name.
bool SubjectHash(std::string_view subject, unsigned long* hash) {
  if (subject.empty()) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(subject.data());
  X509_NAME* name = d2i_X509_NAME(nullptr, &p, static_cast<long>(subject.size()));
  if (!name) return false;
  int ok = 0;
  *hash = X509_NAME_hash_ex(name, nullptr, nullptr, &ok);
  X509_NAME_free(name);
  return ok == 1;
}

// The certificates of PEM file `path`; null when it cannot be read, holds
// no certificate, a block that does not decode, or anything besides plain
// certificates (OpenSSL's own loader then takes it, and says what is wrong).
// Leaves OpenSSL's error queue as it found it.
std::unique_ptr<LazyCerts> ReadCertificates(const std::string& path) {
  ERR_set_mark();
  auto lazy = std::make_unique<LazyCerts>();
  BIO* bio = BIO_new_file(path.c_str(), "r");
  bool ok = bio != nullptr;
  while (ok) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    if (PEM_read_bio(bio, &name, &header, &data, &len) != 1) {
      // No more blocks (no start line left), or one that does not decode.
      const unsigned long e = ERR_peek_last_error();
      ok = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
      break;
    }
    const std::string_view type(name);
    const bool plain = (type == PEM_STRING_X509 || type == PEM_STRING_X509_OLD) && *header == '\0';
    std::string der(reinterpret_cast<const char*>(data), static_cast<size_t>(len));
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    unsigned long hash = 0;
    if (!plain || !SubjectHash(SubjectOf(der), &hash)) {
      ok = false;
      break;
    }
    lazy->by_subject.emplace(hash, lazy->certs.size());
    lazy->certs.push_back({std::move(der)});
  }
  BIO_free(bio);
  ERR_pop_to_mark();
  if (!ok || lazy->certs.empty()) return nullptr;
  return lazy;
}

// The lookup's search: parses the certificates filed under `name`'s hash
// that were not parsed yet into the store, then answers with what the store
// holds under `name`.
int GetBySubject(X509_LOOKUP* lookup, X509_LOOKUP_TYPE type, const X509_NAME* name,
                 X509_OBJECT* ret) {
  auto* lazy = static_cast<LazyCerts*>(X509_LOOKUP_get_method_data(lookup));
  X509_STORE* store = X509_LOOKUP_get_store(lookup);
  if (type != X509_LU_X509 || !lazy || !store) return 0;
  int hashed = 0;
  const unsigned long hash = X509_NAME_hash_ex(name, nullptr, nullptr, &hashed);
  if (hashed != 1) return 0;
  {
    std::lock_guard<std::mutex> lock(lazy->mu);
    ERR_set_mark();
    const auto [first, last] = lazy->by_subject.equal_range(hash);
    for (auto it = first; it != last; ++it) {
      LazyCerts::Cert& c = lazy->certs[it->second];
      if (c.tried) continue;
      c.tried = true;
      const auto* p = reinterpret_cast<const unsigned char*>(c.der.data());
      if (X509* x = d2i_X509(nullptr, &p, static_cast<long>(c.der.size()))) {
        X509_STORE_add_cert(store, x);  // the store takes its own reference
        X509_free(x);
      }
      std::string().swap(c.der);
    }
    ERR_pop_to_mark();
  }
  if (X509_STORE_lock(store) != 1) return 0;
  X509_OBJECT* found =
      X509_OBJECT_retrieve_by_subject(X509_STORE_get0_objects(store), X509_LU_X509, name);
  X509* x = found ? X509_OBJECT_get0_X509(found) : nullptr;
  const bool set = x && X509_OBJECT_set1_X509(ret, x) == 1;
  X509_STORE_unlock(store);
  if (!set) return 0;
  // `ret` borrows the store's reference, as OpenSSL's own lookups hand it
  // back: the caller takes one of its own.
  X509_free(x);
  return 1;
}

void FreeLazyCerts(X509_LOOKUP* lookup) {
  delete static_cast<LazyCerts*>(X509_LOOKUP_get_method_data(lookup));
}

// The lookup method, made once and kept for the life of the process.
X509_LOOKUP_METHOD* LazyMethod() {
  static X509_LOOKUP_METHOD* const method = [] {
    X509_LOOKUP_METHOD* m = X509_LOOKUP_meth_new("stoker: PEM certificates parsed when asked for");
    if (m) {
      X509_LOOKUP_meth_set_get_by_subject(m, &GetBySubject);
      X509_LOOKUP_meth_set_free(m, &FreeLazyCerts);
    }
    return m;
  }();
  return method;
}

// Adds `lazy` to `store`'s lookup (one per store: a second file joins the
// first's). False when OpenSSL cannot make it.
bool Install(X509_STORE* store, std::unique_ptr<LazyCerts> lazy) {
  X509_LOOKUP_METHOD* method = LazyMethod();
  X509_LOOKUP* lookup = method ? X509_STORE_add_lookup(store, method) : nullptr;
  if (!lookup) return false;
  if (auto* held = static_cast<LazyCerts*>(X509_LOOKUP_get_method_data(lookup))) {
    std::lock_guard<std::mutex> lock(held->mu);
    for (auto& [hash, i] : lazy->by_subject) held->by_subject.emplace(hash, held->certs.size() + i);
    for (auto& c : lazy->certs) held->certs.push_back(std::move(c));
    return true;
  }
  if (X509_LOOKUP_set_method_data(lookup, lazy.get()) != 1) return false;
  lazy.release();  // the lookup's now (FreeLazyCerts)
  return true;
}

}  // namespace

bool UseCaFile(SSL_CTX* ctx, const std::string& path) {
  if (std::unique_ptr<LazyCerts> lazy = ReadCertificates(path);
      lazy && Install(SSL_CTX_get_cert_store(ctx), std::move(lazy))) {
    return true;
  }
  return SSL_CTX_load_verify_locations(ctx, path.c_str(), nullptr) == 1;
}

bool UseSystemCaStore(SSL_CTX* ctx) {
  const char* file = std::getenv(X509_get_default_cert_file_env());
  if (!file) file = X509_get_default_cert_file();
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  std::unique_ptr<LazyCerts> lazy = ReadCertificates(file);
  if (!lazy || !Install(store, std::move(lazy))) return SSL_CTX_set_default_verify_paths(ctx) == 1;
  // The rest of OpenSSL's defaults (X509_STORE_set_default_paths): the
  // hashed folder and the default store, both searched on demand.
  X509_LOOKUP* folder = X509_STORE_add_lookup(store, X509_LOOKUP_hash_dir());
  if (!folder) return false;
  X509_LOOKUP_add_dir(folder, nullptr, X509_FILETYPE_DEFAULT);
  X509_LOOKUP* uri = X509_STORE_add_lookup(store, X509_LOOKUP_store());
  if (!uri) return false;
  X509_LOOKUP_add_store_ex(uri, nullptr, nullptr, nullptr);
  ERR_clear_error();  // as OpenSSL's call: a folder that is not there is no error
  return true;
}

}  // namespace stoker::storage::http
