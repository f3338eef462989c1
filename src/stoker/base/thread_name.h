#pragma once

#include <pthread.h>

#include <cstdio>

namespace stoker {

// Names the calling thread, as top -H, perf and /proc/<pid>/task/*/comm show
// it ("stoker-io", "stoker-decode"): where the time goes, per stage, with
// the system's own tools. Linux keeps 15 characters; longer names are cut.
inline void SetThreadName(const char* name) {
#if defined(__linux__)
  char buf[16];
  std::snprintf(buf, sizeof buf, "%s", name);
  pthread_setname_np(pthread_self(), buf);
#else
  (void)name;
#endif
}

}  // namespace stoker
