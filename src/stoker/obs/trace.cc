#include "stoker/obs/trace.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "stoker/obs/metrics.h"

namespace stoker::obs {

TraceRecorder::TraceRecorder(size_t max_events) : max_events_(max_events), origin_ns_(NowNs()) {}

int64_t TraceRecorder::ThreadId() { return static_cast<int64_t>(::syscall(SYS_gettid)); }

void TraceRecorder::NameThread(const std::string& name) {
  const int64_t tid = ThreadId();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [t, n] : thread_names_) {
    if (t == tid) {
      n = name;
      return;
    }
  }
  thread_names_.emplace_back(tid, name);
}

bool TraceRecorder::Reserve(size_t n) {
  if (events_.size() + n > max_events_) {
    ++dropped_;
    return false;
  }
  return true;
}

void TraceRecorder::Complete(const char* name, int64_t begin_ns, int64_t end_ns, int64_t epoch,
                             int64_t k, int64_t index) {
  const int64_t tid = ThreadId();
  std::lock_guard<std::mutex> lock(mu_);
  if (!Reserve(1)) return;
  events_.push_back(Event{'X', name, tid, begin_ns, end_ns - begin_ns, epoch, k, index, -1});
}

void TraceRecorder::Async(const char* name, int64_t tid, int64_t begin_ns, int64_t end_ns,
                          int64_t epoch, int64_t k, int64_t index, int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Reserve(2)) return;
  events_.push_back(Event{'b', name, tid, begin_ns, 0, epoch, k, index, bytes});
  events_.push_back(Event{'e', name, tid, end_ns, 0, epoch, k, index, bytes});
}

int64_t TraceRecorder::dropped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_;
}

namespace {
void AppendEscaped(std::string& out, const std::string& s) {
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
}
}  // namespace

std::string TraceRecorder::ToJson() const {
  std::lock_guard<std::mutex> lock(mu_);
  const int pid = static_cast<int>(::getpid());
  std::string out;
  out.reserve(events_.size() * 150 + 256);
  out += "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[";
  bool first = true;
  char buf[512];
  for (const auto& [tid, name] : thread_names_) {
    if (!first) out += ',';
    first = false;
    std::snprintf(buf, sizeof(buf),
                  "{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":%d,\"tid\":%lld,\"args\":{\"name\":\"",
                  pid, static_cast<long long>(tid));
    out += buf;
    AppendEscaped(out, name);
    out += "\"}}";
  }
  for (const Event& e : events_) {
    if (!first) out += ',';
    first = false;
    // Timestamps in microseconds from the recorder's creation.
    const double ts = static_cast<double>(e.ts_ns - origin_ns_) * 1e-3;
    int n;
    if (e.ph == 'X') {
      n = std::snprintf(buf, sizeof(buf),
                        "{\"ph\":\"X\",\"cat\":\"%s\",\"name\":\"%s\",\"pid\":%d,\"tid\":%lld,"
                        "\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"epoch\":%lld,\"k\":%lld,\"index\":%lld}}",
                        e.name, e.name, pid, static_cast<long long>(e.tid), ts,
                        static_cast<double>(e.dur_ns) * 1e-3, static_cast<long long>(e.epoch),
                        static_cast<long long>(e.k), static_cast<long long>(e.index));
    } else {
      n = std::snprintf(buf, sizeof(buf),
                        "{\"ph\":\"%c\",\"cat\":\"%s\",\"name\":\"%s\",\"id\":\"%lld.%lld\",\"pid\":%d,"
                        "\"tid\":%lld,\"ts\":%.3f,\"args\":{\"epoch\":%lld,\"k\":%lld,\"index\":%lld,"
                        "\"bytes\":%lld}}",
                        e.ph, e.name, e.name, static_cast<long long>(e.epoch),
                        static_cast<long long>(e.k), pid, static_cast<long long>(e.tid), ts,
                        static_cast<long long>(e.epoch), static_cast<long long>(e.k),
                        static_cast<long long>(e.index), static_cast<long long>(e.bytes));
    }
    if (n > 0) out.append(buf, static_cast<size_t>(std::min<int>(n, sizeof(buf) - 1)));
  }
  std::snprintf(buf, sizeof(buf), "],\"otherData\":{\"dropped_events\":%lld}}",
                static_cast<long long>(dropped_));
  out += buf;
  return out;
}

}  // namespace stoker::obs
