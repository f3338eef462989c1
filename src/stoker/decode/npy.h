// NumPy's .npy format (format versions 1.0, 2.0 and 3.0), read into an
// Array (stoker/loader.h): the header's dtype, shape and C order checked,
// the data copied (byte-swapped to this machine's order when stored
// big-endian). docs/fields.md lists what is accepted.
#pragma once

#include <cstdint>
#include <span>

#include "stoker/loader.h"
#include "stoker/status.h"

namespace stoker::decode {

// Errors: kCorrupt (not an .npy file, a malformed header, data shorter or
// longer than the shape says), kUnsupported (a dtype other than bool,
// int8-64, uint8-64, float16/32/64; Fortran order). Messages say which.
Result<Array> ParseNpy(std::span<const uint8_t> bytes);

}  // namespace stoker::decode
