#include "stoker/base/logging.h"

#include <unistd.h>

namespace stoker {

void LogWarning(const std::string& message) {
  std::string line = "stoker: " + message + "\n";
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace stoker
