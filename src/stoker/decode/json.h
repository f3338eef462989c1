// A strict check that text is one JSON value (RFC 8259), for JSON fields
// (docs/fields.md): the text is handed to the user as it is, so only its
// validity matters here.
#pragma once

#include <string_view>

#include "stoker/status.h"

namespace stoker::decode {

// Ok if `text` is exactly one JSON value with optional whitespace around it,
// in valid UTF-8, nested at most 512 deep. Otherwise kCorrupt saying what and
// at which byte offset.
Status ValidateJson(std::string_view text);

}  // namespace stoker::decode
