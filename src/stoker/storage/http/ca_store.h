// The certificate authorities an https client trusts, loaded into an
// SSL_CTX without parsing every certificate up front.
//
// OpenSSL 3 takes about 0.2 ms to parse one certificate (most of it decoding
// the public key), so loading a system bundle of ~150 CAs
// (SSL_CTX_load_verify_locations, SSL_CTX_set_default_verify_paths) costs
// 25-30 ms before the first https connection can start, though a server's
// chain needs one or two of them. Here the file is read once and each PEM
// certificate kept as DER, indexed by its subject name's hash (about 1.5 ms
// for the same bundle); a certificate is parsed and put into the store when
// a chain first asks for its subject, as OpenSSL's hashed-folder lookup does
// for a CA folder. What verifies against the file is unchanged: every
// certificate with the asked-for subject is added, and the file is not read
// again (a file removed later does not matter).
//
// A file this does not take lazily goes to OpenSSL's own loader, whole and
// at once, with its errors: one that cannot be read, holds no certificate,
// has a PEM block that does not decode, or holds anything besides plain
// certificates (trusted certificates with trust settings, CRLs). A
// certificate whose subject parses but whose body does not is skipped when
// asked for (OpenSSL's loader would refuse the whole file).
#pragma once

#include <openssl/ssl.h>

#include <string>

namespace stoker::storage::http {

// Makes `ctx` trust the certificates of the PEM file `path` (as
// SSL_CTX_load_verify_locations(ctx, path, nullptr) does). False when the
// file cannot be used: OpenSSL's error queue then says why.
bool UseCaFile(SSL_CTX* ctx, const std::string& path);

// Makes `ctx` trust the system's CAs (as SSL_CTX_set_default_verify_paths
// does): the default file (SSL_CERT_FILE, else OpenSSL's cert.pem) taken as
// UseCaFile takes a file, the default hashed folder (SSL_CERT_DIR, else
// OpenSSL's certs/) and the default store URI, both looked up on demand.
// False only when OpenSSL's own call would fail (it ignores a missing file).
bool UseSystemCaStore(SSL_CTX* ctx);

}  // namespace stoker::storage::http
