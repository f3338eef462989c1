#include "stoker/obs/metrics.h"

#include <gtest/gtest.h>

#include "stoker/obs/trace.h"
#include "stoker/profile.h"

namespace stoker::obs {
namespace {

TEST(LatencyMeter, ReadsCountMeanAndPercentilesInSeconds) {
  Histogram h("latency");
  // 90 requests of 10 ms, 9 of 100 ms, 1 of 1 s.
  for (int i = 0; i < 90; ++i) h.AddNs(10'000'000);
  for (int i = 0; i < 9; ++i) h.AddNs(100'000'000);
  h.AddNs(1'000'000'000);
  auto high_of = [](int64_t ns) {
    return static_cast<double>(HistogramSnapshot::BucketHigh(HistogramSnapshot::BucketOf(ns))) * 1e-9;
  };
  std::vector<Metric> out;
  h.Read(out);
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(out[0].name, "latency_count");
  EXPECT_EQ(out[0].value, 100);
  EXPECT_EQ(out[1].name, "latency_mean_s");
  EXPECT_DOUBLE_EQ(out[1].value, (90 * 0.01 + 9 * 0.1 + 1.0) / 100);
  EXPECT_EQ(out[2].name, "latency_p50_s");
  EXPECT_DOUBLE_EQ(out[2].value, high_of(10'000'000));
  EXPECT_DOUBLE_EQ(out[3].value, high_of(10'000'000));  // p90: the 90th of 100
  EXPECT_DOUBLE_EQ(out[4].value, high_of(100'000'000));  // p99: the 99th
}

TEST(LatencyMeter, EmptyReadsZero) {
  Histogram h("x");
  std::vector<Metric> out;
  h.Read(out);
  for (const auto& m : out) EXPECT_EQ(m.value, 0) << m.name;
}

TEST(QueueMeter, OccupancyIsTheTimeWeightedMean) {
  QueueMeter q("q");
  // Length 0 for 100 ns, 2 for 300 ns, 1 for 600 ns: mean (600 + 600) / 1000.
  q.Change(0, 1000);
  q.Change(2, 1100);
  q.Change(-1, 1400);
  q.Change(-1, 2000);
  QueueStats s = q.Snapshot();
  EXPECT_EQ(s.puts, 2);
  EXPECT_EQ(s.gets, 2);
  // The snapshot extends to now at length 0, so compare the area instead.
  const double life = s.mean_occupancy > 0 ? 1200.0 / s.mean_occupancy : 0;
  EXPECT_GT(life, 1000.0);
  EXPECT_NEAR(s.empty_fraction, (life - 900.0) / life, 1e-9);
}

TEST(Registry, SnapshotHoldsEveryMeterByNameAndFillsTheTypedFields) {
  Registry r;
  r.Count("samples_delivered").Add(7);
  r.Seconds("stall_s").Add(1'500'000'000);
  r.Stage("decode").AddItems(3, 30);
  r.Stage("decode").AddBusyNs(2'000'000'000);
  r.Queue("fetched").SetCapacity(8);
  r.AddSource([](std::vector<Metric>& out) { out.push_back({"requests", 11}); });
  LoaderStats s;
  r.Snapshot(s);
  EXPECT_EQ(s.samples_delivered, 7);
  EXPECT_EQ(s.requests, 11);
  EXPECT_DOUBLE_EQ(s.stall_s, 1.5);
  EXPECT_DOUBLE_EQ(s.Get("stall_s"), 1.5);
  ASSERT_EQ(s.stages.size(), 1u);
  EXPECT_EQ(s.stages[0].items, 3);
  EXPECT_EQ(s.stages[0].bytes, 30);
  EXPECT_DOUBLE_EQ(s.stages[0].busy_cpu_s, 2.0);
  ASSERT_EQ(s.queues.size(), 1u);
  EXPECT_EQ(s.queues[0].capacity, 8);
  // The same name twice is the same meter.
  EXPECT_EQ(&r.Stage("decode"), &r.Stage("decode"));
}

TEST(Trace, IsOneJsonObjectWithNamedThreadsAndBothKindsOfSpan) {
  TraceRecorder t(3);
  t.NameThread("worker \"1\"");
  const int64_t now = NowNs();
  t.Complete("decode", now, now + 5000, 0, 7, 42);
  t.Async("fetch", TraceRecorder::ThreadId(), now, now + 2000, 0, 7, 42, 100);
  t.Complete("decode", now, now + 1, 0, 8, 43);  // over max_events: dropped
  const std::string j = t.ToJson();
  EXPECT_EQ(j.front(), '{');
  EXPECT_EQ(j.back(), '}');
  EXPECT_NE(j.find("\"ph\":\"X\""), std::string::npos);
  EXPECT_NE(j.find("\"ph\":\"b\""), std::string::npos);
  EXPECT_NE(j.find("\"ph\":\"e\""), std::string::npos);
  EXPECT_NE(j.find("worker \\\"1\\\""), std::string::npos);
  EXPECT_NE(j.find("\"dur\":5.000"), std::string::npos);
  EXPECT_EQ(t.dropped(), 1);
  EXPECT_NE(j.find("\"dropped_events\":1"), std::string::npos);
}

LoaderStats Synthetic(double w_fetch, double w_decode, double w_consumer) {
  Registry r;
  r.Count("samples_delivered").Add(1000);
  r.Count("batches_delivered").Add(100);
  r.Seconds("wait.fetch_s").Add(static_cast<int64_t>(w_fetch * 1e9));
  r.Seconds("wait.decode_s").Add(static_cast<int64_t>(w_decode * 1e9));
  r.Seconds("wait.collate_s");
  r.Seconds("wait.consumer_s").Add(static_cast<int64_t>(w_consumer * 1e9));
  r.Seconds("consumer_s").Add(static_cast<int64_t>(w_consumer * 1e9));
  auto& dec = r.Stage("decode");
  dec.AddItems(1000);
  dec.AddBusyNs(2'000'000'000);  // 500 images per core-second
  dec.SetParallelism(1);
  r.Stage("fetch").AddItems(1000);
  LoaderStats s;
  r.Snapshot(s);
  return s;
}

TEST(Profile, NamesTheStageWithTheLargestShareAndTheSharesSumToOne) {
  ProfileInputs in{.wall_s = 4, .cpu_s = 2.5, .cores = 2, .batch_size = 10};
  for (auto [f, d, c, want] : {std::tuple{0.1, 3.0, 0.0, "decode"}, std::tuple{2.0, 0.5, 0.1, "fetch"},
                               std::tuple{0.0, 0.1, 3.0, "consumer"}}) {
    ProfileReport p = MakeProfile(Synthetic(f, d, c), in);
    double sum = 0;
    for (const auto& st : p.stages) sum += st.wait_share;
    EXPECT_NEAR(sum, 1.0, 1e-9);
    EXPECT_EQ(p.bottleneck, want);
    EXPECT_NE(p.summary.find(want), std::string::npos) << p.summary;
  }
}

TEST(Profile, WhatIfIsBoundedByDecodeRateAndCores) {
  // Decode: 500 images per core-second on 1 thread; the process spent 2.5
  // CPU-s on 1000 images (2.5 ms each), so 2 cores carry at most 800/s.
  ProfileInputs in{.wall_s = 2, .cpu_s = 2.5, .cores = 2, .batch_size = 10};
  ProfileReport p = MakeProfile(Synthetic(0, 1.0, 0), in);
  EXPECT_DOUBLE_EQ(p.whatif_one_more_decode_thread_images_per_s, 800);
  // As it runs now, 1 thread: 500/s, so a 10-image batch every 20 ms.
  EXPECT_DOUBLE_EQ(p.no_stall_step_ms, 20);
  // With 4 cores the second thread's full rate counts: 1000/s.
  in.cores = 4;
  EXPECT_DOUBLE_EQ(MakeProfile(Synthetic(0, 1.0, 0), in).whatif_one_more_decode_thread_images_per_s,
                   1000);
}

TEST(Profile, EnergyIsRaplWhenReadableElseALabelledEstimate) {
  ProfileInputs in{.wall_s = 2, .cpu_s = 3, .cores = 2, .batch_size = 10, .watts_per_core = 10};
  ProfileReport est = MakeProfile(Synthetic(0, 1, 0), in);
  EXPECT_EQ(est.energy_source, "estimate");
  EXPECT_DOUBLE_EQ(est.energy_j, 30);
  EXPECT_DOUBLE_EQ(est.energy_j_per_image, 0.03);
  in.rapl_j = 50;
  ProfileReport rapl = MakeProfile(Synthetic(0, 1, 0), in);
  EXPECT_EQ(rapl.energy_source, "rapl");
  EXPECT_DOUBLE_EQ(rapl.energy_j, 50);
}

TEST(Profile, TheSummaryWritesCountsWithThousandsSeparators) {
  ProfileInputs in{.wall_s = 2, .cpu_s = 0.5, .cores = 8, .batch_size = 10};
  ProfileReport p = MakeProfile(Synthetic(0, 1.0, 0), in);  // 2 x 500/s
  EXPECT_NE(p.summary.find("about 1,000 images/s"), std::string::npos) << p.summary;
}

TEST(Profile, NothingWaitedNamesNoStage) {
  ProfileReport p = MakeProfile(Synthetic(0, 0, 0), ProfileInputs{.wall_s = 1, .cores = 2});
  EXPECT_EQ(p.bottleneck, "none");
}

}  // namespace
}  // namespace stoker::obs
