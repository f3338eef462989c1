// Trace events in Chrome's trace-event JSON (the format chrome://tracing and
// Perfetto open): one track per thread, a span per sample per stage.
//
//   decode, collate, deliver  complete events ("X") on the thread that did
//                             the work
//   fetch                     an async span ("b" ... "e", id = the sample's
//                             position in the pass) from the request to its
//                             bytes, on the fetch thread's track: requests
//                             overlap, so they cannot nest as "X" events do
//
// Off unless a loader is opened with `trace` on; then each span costs a
// clock read and an append under a mutex. At most `max_events` are kept
// (the rest are counted as dropped), so a long run cannot exhaust memory.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace stoker::obs {

class TraceRecorder {
 public:
  explicit TraceRecorder(size_t max_events = 2'000'000);

  // The calling thread's id as the trace shows it, and its name there.
  static int64_t ThreadId();
  void NameThread(const std::string& name);

  // A span [begin_ns, end_ns] of NowNs() on the calling thread.
  void Complete(const char* name, int64_t begin_ns, int64_t end_ns, int64_t epoch, int64_t k,
                int64_t index);
  // An async span of id `k` (fetch), begun and ended on the given thread.
  void Async(const char* name, int64_t tid, int64_t begin_ns, int64_t end_ns, int64_t epoch,
             int64_t k, int64_t index, int64_t bytes);

  int64_t dropped() const;
  // The whole trace as one JSON object: {"traceEvents": [...], ...}.
  std::string ToJson() const;

 private:
  struct Event {
    char ph;
    const char* name;
    int64_t tid, ts_ns, dur_ns, epoch, k, index, bytes;
  };
  bool Reserve(size_t n);

  const size_t max_events_;
  const int64_t origin_ns_;
  mutable std::mutex mu_;
  std::vector<Event> events_;
  std::vector<std::pair<int64_t, std::string>> thread_names_;
  int64_t dropped_ = 0;
};

}  // namespace stoker::obs
