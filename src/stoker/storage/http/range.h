// Byte ranges over HTTP (plain and S3): the Range header asked, and what a
// reply to it means. One semantics for every server (storage.h's contract):
//   206 Partial Content: the body is the range (Content-Range must start at
//       the offset asked, and the body may not be longer than asked);
//   200 OK: the server ignored Range and sent the whole object: the range is
//       cut out of it here;
//   416 Range Not Satisfiable: the object ends at or before the offset (S3
//       also answers so for any range of an empty object): no bytes.
#pragma once

#include <string>

#include "stoker/status.h"
#include "stoker/storage/http/http.h"
#include "stoker/storage/storage.h"

namespace stoker::storage::http {

// "bytes=OFFSET-LAST" for range.length > 0.
std::string RangeHeader(ByteRange range);

// True for a reply that answers a range request without an error of its own
// (416 included: it means "no bytes there").
bool IsRangeAnswer(const Response& r);

// The range's bytes from a 2xx or 416 reply to a request for `range` of `uri`.
Result<Bytes> RangeBody(Response& r, const std::string& uri, ByteRange range);

}  // namespace stoker::storage::http
