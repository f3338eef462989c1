#include "stoker/obs/metrics.h"

#include <time.h>

#include <algorithm>

namespace stoker::obs {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

int64_t ThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

namespace {
double Seconds(const std::atomic<int64_t>& ns) {
  return static_cast<double>(ns.load(std::memory_order_relaxed)) * 1e-9;
}
}  // namespace

StageStats StageMeter::Snapshot() const {
  StageStats s;
  s.name = name_;
  s.items = items_.load(std::memory_order_relaxed);
  s.bytes = bytes_.load(std::memory_order_relaxed);
  s.busy_cpu_s = Seconds(busy_ns_);
  s.wait_input_s = Seconds(wait_in_ns_);
  s.wait_output_s = Seconds(wait_out_ns_);
  s.parallelism = parallelism();
  return s;
}

QueueStats QueueMeter::Snapshot() const {
  QueueStats q;
  q.name = name_;
  q.capacity = capacity_.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(mu_);
  q.puts = puts_;
  q.gets = gets_;
  // Up to now, at the current length.
  const int64_t now = NowNs();
  double area = area_;
  int64_t empty = empty_ns_;
  if (start_ != 0 && now > last_) {
    area += static_cast<double>(length_) * static_cast<double>(now - last_);
    if (length_ == 0) empty += now - last_;
  }
  const int64_t life = start_ == 0 ? 0 : now - start_;
  if (life > 0) {
    q.mean_occupancy = area / static_cast<double>(life);
    q.empty_fraction = static_cast<double>(empty) / static_cast<double>(life);
  }
  return q;
}

void Histogram::Read(std::vector<Metric>& out) const {
  const HistogramSnapshot h = Snapshot();
  out.push_back({name_ + "_count", static_cast<double>(h.count), true});
  out.push_back({name_ + "_mean_s", h.Mean() * 1e-9, false});
  out.push_back({name_ + "_p50_s", static_cast<double>(h.Percentile(0.5)) * 1e-9, false});
  out.push_back({name_ + "_p90_s", static_cast<double>(h.Percentile(0.9)) * 1e-9, false});
  out.push_back({name_ + "_p99_s", static_cast<double>(h.Percentile(0.99)) * 1e-9, false});
}

StageMeter& Registry::Stage(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& s : stages_)
    if (s.name() == name) return s;
  return stages_.emplace_back(name);
}

QueueMeter& Registry::Queue(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& q : queues_)
    if (q.name() == name) return q;
  return queues_.emplace_back(name);
}

Counter& Registry::Count(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& c : counters_)
    if (c.name() == name) return c;
  return counters_.emplace_back(name);
}

Counter& Registry::Seconds(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& c : counters_)
    if (c.name() == name) return c;
  return counters_.emplace_back(name, 1e-9);
}

Histogram& Registry::Latency(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& h : histograms_)
    if (h.name() == name) return h;
  return histograms_.emplace_back(name);
}

void Registry::AddSource(Source source) {
  std::lock_guard<std::mutex> lock(mu_);
  sources_.push_back(std::move(source));
}

void Registry::Snapshot(LoaderStats& out) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& c : counters_) out.metrics.push_back(c.Read());
  for (const auto& h : histograms_) h.Read(out.metrics);
  for (const auto& src : sources_) src(out.metrics);
  for (const auto& s : stages_) out.stages.push_back(s.Snapshot());
  for (const auto& q : queues_) out.queues.push_back(q.Snapshot());
  // The typed fields are views of the named metrics.
  auto i64 = [&](const char* name) { return static_cast<int64_t>(out.Get(name)); };
  out.samples_delivered = i64("samples_delivered");
  out.samples_skipped = i64("samples_skipped");
  out.batches_delivered = i64("batches_delivered");
  out.bytes_read = i64("bytes_read");
  out.requests = i64("requests");
  out.retries = i64("retries");
  out.timeouts = i64("timeouts");
  out.stall_s = out.Get("stall_s");
  out.lookahead_reads = i64("lookahead_reads");
  out.lookahead_used = i64("lookahead_used");
  out.jpeg_index_jumps = i64("jpeg_index_jumps");
  out.jpeg_index_crops = i64("jpeg_index_crops");
  out.jpeg_index_bytes = i64("jpeg_index_bytes");
}

}  // namespace stoker::obs
