// MakeProfile: the profile report from a loader's stats (docs/profile.md).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "stoker/profile.h"

namespace stoker {
namespace {

const StageStats* FindStage(const LoaderStats& s, const std::string& name) {
  for (const auto& st : s.stages)
    if (st.name == name) return &st;
  return nullptr;
}

const QueueStats* FindQueue(const LoaderStats& s, const std::string& name) {
  for (const auto& q : s.queues)
    if (q.name == name) return &q;
  return nullptr;
}

std::string Fmt(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, v);
  return buf;
}

// A whole number with thousands separators: 1,134.
std::string Count(double v) {
  std::string digits = Fmt("%.0f", v);
  const size_t start = digits[0] == '-' ? 1 : 0;
  for (size_t i = digits.size(); i > start + 3; i -= 3) digits.insert(i - 3, ",");
  return digits;
}

}  // namespace

ProfileReport MakeProfile(const LoaderStats& s, const ProfileInputs& in) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  ProfileReport r;
  r.wall_s = in.wall_s;
  r.images = s.samples_delivered;
  r.batches = s.batches_delivered;
  r.images_per_s = in.wall_s > 0 ? static_cast<double>(r.images) / in.wall_s : 0;
  r.cores = in.cores;
  r.max_in_flight = in.max_in_flight;
  r.cpu_s = in.cpu_s;
  r.cpu_s_per_image = r.images > 0 ? in.cpu_s / static_cast<double>(r.images) : 0;

  // The consumer's waits by stage, and the loader's for the consumer.
  const double w_fetch = s.Get("wait.fetch_s"), w_decode = s.Get("wait.decode_s"),
               w_collate = s.Get("wait.collate_s"), w_consumer = s.Get("wait.consumer_s");
  const double w_total = w_fetch + w_decode + w_collate + w_consumer;
  auto share = [&](double w) { return w_total > 0 ? w / w_total : 0.0; };

  for (const char* name : {"plan", "fetch", "decode", "collate", "deliver"}) {
    const StageStats* st = FindStage(s, name);
    if (!st) continue;
    StageProfile p;
    p.name = name;
    p.items = st->items;
    p.busy_cpu_s = st->busy_cpu_s;
    p.parallelism = st->parallelism;
    p.rate_per_core = st->busy_cpu_s > 0 ? static_cast<double>(st->items) / st->busy_cpu_s : 0;
    // fetch and plan run on one thread (fetch's parallelism is the cap on
    // requests in flight, not threads); collate and deliver on the
    // consumer's.
    const int threads = p.name == "decode" ? std::max(1, st->parallelism) : 1;
    p.utilisation = in.wall_s > 0 ? st->busy_cpu_s / (in.wall_s * threads) : 0;
    if (p.name == "fetch") p.wait_share = share(w_fetch);
    if (p.name == "decode") p.wait_share = share(w_decode);
    if (p.name == "collate") p.wait_share = share(w_collate);
    r.stages.push_back(p);
  }
  {
    StageProfile c;
    c.name = "consumer";
    c.items = s.batches_delivered;
    c.parallelism = 1;
    const double away = s.Get("consumer_s");
    c.utilisation = in.wall_s > 0 ? std::min(1.0, away / in.wall_s) : 0;
    c.wait_share = share(w_consumer);
    r.stages.push_back(c);
  }
  const StageProfile* worst = nullptr;
  for (const auto& p : r.stages)
    if (p.wait_share > 0 && (!worst || p.wait_share > worst->wait_share)) worst = &p;

  // I/O as the pipeline saw it.
  r.io_requests = s.requests;
  r.io_retries = s.retries;
  r.io_timeouts = s.timeouts;
  r.io_latency_p50_ms = s.Get("fetch.latency_p50_s") * 1e3;
  r.io_latency_p90_ms = s.Get("fetch.latency_p90_s") * 1e3;
  r.io_latency_p99_ms = s.Get("fetch.latency_p99_s") * 1e3;
  if (const QueueStats* q = FindQueue(s, "in_flight")) r.io_mean_in_flight = q->mean_occupancy;
  r.io_bytes_per_request =
      s.requests > 0 ? static_cast<double>(s.bytes_read) / static_cast<double>(s.requests) : 0;

  // What-if. Capacities in images/s, from per-core rates and Little's law.
  const StageStats* dec = FindStage(s, "decode");
  const StageStats* fet = FindStage(s, "fetch");
  const int n = dec ? std::max(1, dec->parallelism) : 1;
  r.decode_threads = n;
  const double decode_rate = dec && dec->busy_cpu_s > 0
                                 ? static_cast<double>(dec->items) / dec->busy_cpu_s
                                 : kInf;
  // All of the process's CPU per image: the cores cap the rate at
  // cores / cpu_per_image whatever the threads.
  const double cpu_cap = r.cpu_s_per_image > 0 ? in.cores / r.cpu_s_per_image : kInf;
  // Fetch: requests in flight / latency (Little's law), or, when the fetch
  // thread itself is busy (local reads), its own rate on its one core.
  double fetch_cap = kInf;
  const double latency = s.Get("fetch.latency_mean_s");
  if (latency > 0 && r.io_mean_in_flight > 0) {
    // What the cap on requests allows; without one, what the measured
    // concurrency sustained is a lower bound and does not bind.
    if (in.max_in_flight > 0) fetch_cap = static_cast<double>(in.max_in_flight) / latency;
  }
  if (fet && fet->busy_cpu_s > 0 && fet->items > 0)
    fetch_cap = std::min(fetch_cap, static_cast<double>(fet->items) / fet->busy_cpu_s);
  // The consumer: images per second of its time away from the loader.
  const double away = s.Get("consumer_s");
  const double consumer_cap =
      away > 0 && r.images > 0 ? static_cast<double>(r.images) / away : kInf;
  auto finite = [](double v) { return std::isfinite(v) ? v : 0.0; };
  r.whatif_one_more_decode_thread_images_per_s =
      finite(std::min({(n + 1) * decode_rate, cpu_cap, fetch_cap, consumer_cap}));
  // The loader's own capacity as it runs now (the consumer aside).
  const double now_cap = std::min({n * decode_rate, cpu_cap, fetch_cap});
  r.no_stall_step_ms = std::isfinite(now_cap) && now_cap > 0
                           ? static_cast<double>(in.batch_size) / now_cap * 1e3
                           : 0;

  // Energy.
  r.watts_per_core = in.watts_per_core;
  if (in.rapl_j >= 0) {
    r.energy_source = "rapl";
    r.energy_j = in.rapl_j;
  } else {
    r.energy_source = "estimate";
    r.energy_j = in.cpu_s * in.watts_per_core;
  }
  r.energy_j_per_image = r.images > 0 ? r.energy_j / static_cast<double>(r.images) : 0;

  // The bottleneck, in one sentence.
  if (!worst) {
    r.bottleneck = "none";
    r.summary = "Nothing waited: too few batches to tell.";
  } else {
    r.bottleneck = worst->name;
    const std::string pct = Fmt("%.0f%%", worst->wait_share * 100);
    if (r.bottleneck == "consumer") {
      r.summary = "The consumer (the training step) limits the rate: the loader waited for it " +
                  pct + " of all waiting; the loader could keep up with steps down to " +
                  Fmt("%.1f", r.no_stall_step_ms) + " ms per batch.";
    } else if (r.bottleneck == "decode") {
      r.summary = "decode limits the rate: " + pct +
                  " of the consumer's waiting was for decoding; one more decode thread would give "
                  "about " +
                  Count(r.whatif_one_more_decode_thread_images_per_s) + " images/s.";
    } else if (r.bottleneck == "fetch") {
      r.summary = "fetch limits the rate: " + pct +
                  " of the consumer's waiting was for storage reads (p50 " +
                  Fmt("%.1f", r.io_latency_p50_ms) + " ms, " + Fmt("%.1f", r.io_mean_in_flight) +
                  " in flight on average); more requests in flight or larger reads would help.";
    } else {
      r.summary = r.bottleneck + " limits the rate: " + pct + " of the consumer's waiting was for it.";
    }
  }
  return r;
}

}  // namespace stoker
