// The CA store of https connections (ca_store.h): certificates from a PEM
// file trusted as OpenSSL's loader trusts them, each parsed into the store
// only when a chain asks for its subject (counted in the store), the file
// read once; files it does not take lazily, and bad files, go to OpenSSL's
// loader with its verdict; the system store from SSL_CERT_FILE and
// SSL_CERT_DIR.
#include "stoker/storage/http/ca_store.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace stoker::storage::http {
namespace {

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertFree {
  void operator()(X509* c) const { X509_free(c); }
};
struct CtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;
using Ctx = std::unique_ptr<SSL_CTX, CtxFree>;

Key NewKey() { return Key(EVP_EC_gen("P-256")); }

// A certificate named `cn` for `key`, signed by `issuer_key` under
// `issuer`'s name (a self-signed CA when `issuer` is null).
Cert MakeCert(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key) {
  Cert c(X509_new());
  X509_set_version(c.get(), 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(c.get()), ++serial);
  X509_gmtime_adj(X509_getm_notBefore(c.get()), -86400);
  X509_gmtime_adj(X509_getm_notAfter(c.get()), 30 * 86400);
  X509_set_pubkey(c.get(), key);
  X509_NAME* name = X509_get_subject_name(c.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(c.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : c.get(), c.get(), nullptr, nullptr, 0);
  // Key identifiers, as real CAs have: they tell apart CAs of one name.
  const auto add = [&](int nid, const char* value) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    ASSERT_NE(ext, nullptr) << value;
    X509_add_ext(c.get(), ext, -1);
    X509_EXTENSION_free(ext);
  };
  add(NID_basic_constraints, issuer ? "critical,CA:FALSE" : "critical,CA:TRUE");
  add(NID_subject_key_identifier, "hash");
  add(NID_authority_key_identifier, "keyid:always");
  X509_sign(c.get(), issuer_key, EVP_sha256());
  return c;
}

// A temporary file, removed with the object.
struct TempFile {
  std::string path;
  TempFile() {
    char name[] = "/tmp/stoker-ca-store-XXXXXX";
    const int fd = ::mkstemp(name);
    EXPECT_GE(fd, 0);
    ::close(fd);
    path = name;
  }
  ~TempFile() { std::remove(path.c_str()); }
  void Write(const std::string& text) const {
    FILE* f = std::fopen(path.c_str(), "w");
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
};

std::string Pem(X509* c) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, c);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

Ctx NewCtx() { return Ctx(SSL_CTX_new(TLS_client_method())); }

// Certificates the store of `ctx` holds (parsed).
int Held(SSL_CTX* ctx) {
  return sk_X509_OBJECT_num(X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx)));
}

// X509_V_OK, or why `leaf` does not verify against the store of `ctx`.
int Verify(SSL_CTX* ctx, X509* leaf) {
  X509_STORE_CTX* v = X509_STORE_CTX_new();
  X509_STORE_CTX_init(v, SSL_CTX_get_cert_store(ctx), leaf, nullptr);
  X509_verify_cert(v);
  const int err = X509_STORE_CTX_get_error(v);
  X509_STORE_CTX_free(v);
  return err;
}

// A bundle of unrelated CAs with two CAs named "root A" (different keys) in
// the middle, and leaves signed by each, and by a CA not in the bundle.
struct Bundle {
  Key a1_key = NewKey(), a2_key = NewKey(), other_key = NewKey(), leaf_key = NewKey();
  Cert a1 = MakeCert(a1_key.get(), "root A", nullptr, a1_key.get());
  Cert a2 = MakeCert(a2_key.get(), "root A", nullptr, a2_key.get());
  Cert other = MakeCert(other_key.get(), "not in the bundle", nullptr, other_key.get());
  Cert leaf1 = MakeCert(leaf_key.get(), "leaf 1", a1.get(), a1_key.get());
  Cert leaf2 = MakeCert(leaf_key.get(), "leaf 2", a2.get(), a2_key.get());
  Cert stranger = MakeCert(leaf_key.get(), "stranger", other.get(), other_key.get());
  std::string pem;
  Bundle() {
    for (int i = 0; i < 40; ++i) {
      Key k = NewKey();
      pem += "some text between blocks\n" + Pem(MakeCert(k.get(), "CA " + std::to_string(i),
                                                          nullptr, k.get()).get());
      if (i == 20) pem += Pem(a1.get()) + Pem(a2.get());
    }
  }
};

TEST(CaStore, ParsesACaOnlyWhenAChainAsksForIt) {
  Bundle b;
  TempFile f;
  f.Write(b.pem);
  Ctx ctx = NewCtx();
  ASSERT_TRUE(UseCaFile(ctx.get(), f.path));
  EXPECT_EQ(Held(ctx.get()), 0);
  EXPECT_EQ(Verify(ctx.get(), b.leaf1.get()), X509_V_OK);
  EXPECT_EQ(Held(ctx.get()), 2);  // both CAs named "root A", nothing else
  EXPECT_EQ(Verify(ctx.get(), b.leaf2.get()), X509_V_OK);
  EXPECT_EQ(Verify(ctx.get(), b.stranger.get()), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
  EXPECT_EQ(Held(ctx.get()), 2);
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(CaStore, TrustsWhatOpenSslsLoaderTrusts) {
  Bundle b;
  TempFile f;
  f.Write(b.pem);
  Ctx lazy = NewCtx(), eager = NewCtx();
  ASSERT_TRUE(UseCaFile(lazy.get(), f.path));
  ASSERT_EQ(SSL_CTX_load_verify_locations(eager.get(), f.path.c_str(), nullptr), 1);
  EXPECT_EQ(Held(eager.get()), 42);
  for (X509* leaf : {b.leaf1.get(), b.leaf2.get(), b.stranger.get(), b.a1.get(), b.other.get()}) {
    EXPECT_EQ(Verify(lazy.get(), leaf), Verify(eager.get(), leaf));
  }
}

TEST(CaStore, TheFileIsReadOnce) {
  Bundle b;
  Ctx ctx = NewCtx();
  {
    TempFile f;
    f.Write(b.pem);
    ASSERT_TRUE(UseCaFile(ctx.get(), f.path));
  }  // removed
  EXPECT_EQ(Verify(ctx.get(), b.leaf1.get()), X509_V_OK);
}

TEST(CaStore, TwoFilesAreBothTrusted) {
  Bundle b;
  TempFile f1, f2;
  f1.Write(Pem(b.a1.get()));
  f2.Write(Pem(b.other.get()));
  Ctx ctx = NewCtx();
  ASSERT_TRUE(UseCaFile(ctx.get(), f1.path));
  ASSERT_TRUE(UseCaFile(ctx.get(), f2.path));
  EXPECT_EQ(Verify(ctx.get(), b.leaf1.get()), X509_V_OK);
  EXPECT_EQ(Verify(ctx.get(), b.stranger.get()), X509_V_OK);
  EXPECT_NE(Verify(ctx.get(), b.leaf2.get()), X509_V_OK);  // a2 (a1's name, another key) is not in
}

TEST(CaStore, TrustedCertificatesGoToOpenSslsLoader) {
  // "BEGIN TRUSTED CERTIFICATE" carries trust settings: OpenSSL's loader
  // takes the file, whole (the store holds it at once).
  Bundle b;
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509_AUX(bio, b.a1.get());
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  TempFile f;
  f.Write(Pem(b.other.get()) + std::string(data, static_cast<size_t>(n)));
  BIO_free(bio);
  Ctx ctx = NewCtx();
  ASSERT_TRUE(UseCaFile(ctx.get(), f.path));
  EXPECT_EQ(Held(ctx.get()), 2);
  EXPECT_EQ(Verify(ctx.get(), b.leaf1.get()), X509_V_OK);
}

TEST(CaStore, BadFilesFailAsWithOpenSslsLoader) {
  const std::string good = Pem(Bundle().a1.get());
  const struct {
    const char* what;
    std::string text;  // the file's; none for "missing"
  } cases[] = {
      {"missing", ""},
      {"empty", ""},
      {"no PEM block", "just some text\n"},
      {"bad base64", "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"},
      {"no certificate inside",
       "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n"},
      {"a good one, then a cut one", good + good.substr(0, good.size() / 2)},
      {"a good one, then one that is no certificate",
       good + "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n"},
  };
  for (const auto& c : cases) {
    TempFile f;
    const std::string path =
        std::string(c.what) == "missing" ? f.path + ".missing" : f.path;
    f.Write(c.text);
    Ctx lazy = NewCtx(), eager = NewCtx();
    ERR_clear_error();
    EXPECT_FALSE(UseCaFile(lazy.get(), path)) << c.what;
    EXPECT_NE(ERR_peek_error(), 0u) << c.what << ": no reason";
    ERR_clear_error();
    EXPECT_EQ(SSL_CTX_load_verify_locations(eager.get(), path.c_str(), nullptr), 0) << c.what;
    ERR_clear_error();
  }
}

TEST(CaStore, TheSystemStoreTakesTheDefaultFileLazily) {
  Bundle b;
  TempFile f;
  f.Write(b.pem);
  char folder[] = "/tmp/stoker-ca-dir-XXXXXX";
  ASSERT_NE(::mkdtemp(folder), nullptr);
  ::setenv(X509_get_default_cert_file_env(), f.path.c_str(), 1);
  ::setenv(X509_get_default_cert_dir_env(), folder, 1);
  Ctx ctx = NewCtx();
  EXPECT_TRUE(UseSystemCaStore(ctx.get()));
  EXPECT_EQ(Held(ctx.get()), 0);
  EXPECT_EQ(Verify(ctx.get(), b.leaf1.get()), X509_V_OK);
  EXPECT_EQ(Verify(ctx.get(), b.stranger.get()), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
  EXPECT_EQ(Held(ctx.get()), 2);
  // A default file that is not there is no error (as OpenSSL's call): it
  // trusts nothing from it.
  ::setenv(X509_get_default_cert_file_env(), (f.path + ".missing").c_str(), 1);
  Ctx none = NewCtx();
  EXPECT_TRUE(UseSystemCaStore(none.get()));
  EXPECT_EQ(Verify(none.get(), b.leaf1.get()), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
  ::unsetenv(X509_get_default_cert_file_env());
  ::unsetenv(X509_get_default_cert_dir_env());
  ::rmdir(folder);
  ERR_clear_error();
}

}  // namespace
}  // namespace stoker::storage::http
