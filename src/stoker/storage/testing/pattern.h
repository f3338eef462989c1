// Test bytes no stretch of which repeats for a while: a part or range put in
// the wrong place shows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace stoker::storage::testing {

inline std::string Pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

}  // namespace stoker::storage::testing
