// libFuzzer target: the S3 XML replies, which come from the network: the
// generic reader, ListObjectsV2 pages, <Error> documents, a
// CreateMultipartUpload reply's UploadId, and how an error
// reply becomes a Status (ClassifyS3Reply).
//
// Checked beyond "no crash": the reader reports paths no deeper than its
// bound, never empty, each ending in a name; a ListObjectsV2 page that
// parses and says it is truncated has a continuation token, every object
// has a non-negative size or -1; an error reply's Status is never OK or
// kInternal, names the URI, and never holds the secret key even when the
// reply echoes it.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "stoker/storage/s3/s3_storage.h"
#include "stoker/storage/s3/xml.h"

namespace {

namespace s3 = stoker::storage::s3;

constexpr char kSecret[] = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

[[noreturn]] void Fail(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "xml_fuzz invariant broken: %s %s\n", what, detail.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view xml(reinterpret_cast<const char*>(data), size);

  auto st = s3::ParseXml(xml, [](const s3::XmlPath& path, std::string& text) {
    if (path.empty() || path.size() > 32) Fail("bad element path depth");
    if (path.back().empty()) Fail("element without a name");
    (void)text.size();
    return stoker::Status::Ok();
  });
  if (!st.ok() && st.code() != stoker::StatusCode::kCorrupt) Fail("reader error is not kCorrupt", st.ToString());

  auto page = s3::ParseListObjectsV2(xml);
  if (page.ok()) {
    if (page->truncated && page->next_token.empty()) Fail("truncated page without a token");
    for (const auto& o : page->objects) {
      if (o.size < -1) Fail("negative object size");
    }
  } else if (page.status().code() != stoker::StatusCode::kCorrupt) {
    Fail("listing error is not kCorrupt", page.status().ToString());
  }

  (void)s3::ParseS3Error(xml);

  auto upload = s3::ParseUploadId(xml);
  if (upload.ok() && upload->empty()) Fail("an empty upload id");
  if (!upload.ok() && upload.status().code() != stoker::StatusCode::kCorrupt) {
    Fail("upload id error is not kCorrupt", upload.status().ToString());
  }

  static const s3::S3Config config = [] {
    s3::S3Config c;
    c.credentials.access_key_id = "AKIDEXAMPLE";
    c.credentials.secret_access_key = kSecret;
    c.credentials_source = "environment";
    return c;
  }();
  stoker::storage::http::Response reply;
  // The status from the input's length: cheap variety without taking bytes.
  static constexpr int kStatuses[] = {400, 403, 404, 301, 500, 503, 416, 409};
  reply.status = kStatuses[size % 8];
  reply.body.assign(data, data + size);
  const std::string uri = "s3://bucket/prefix/";
  const auto verdict = s3::ClassifyS3Reply(reply, uri, s3::S3Uri{"bucket", "prefix/"}, config);
  if (verdict.status.ok()) Fail("an error reply classified as OK");
  if (verdict.status.code() == stoker::StatusCode::kInternal) Fail("internal error");
  if (verdict.status.message().find(uri) == std::string::npos) Fail("error does not name the URI");
  if (verdict.status.message().find(kSecret) != std::string::npos) Fail("secret key in a message");
  return 0;
}
