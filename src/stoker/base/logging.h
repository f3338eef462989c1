// Minimal logging to stderr; warnings only, the loader is otherwise quiet.
#pragma once

#include <string>

namespace stoker {

// Writes "stoker: <message>\n" to stderr in one write (lines from several
// threads never interleave).
void LogWarning(const std::string& message);

}  // namespace stoker
