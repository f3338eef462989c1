#include "stoker/pipeline/autotune.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace stoker::pipeline {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// A made-up machine the tuner is closed around: `cores` cores shared by the
// decode threads and, when the step is CPU-bound, the consumer's step (all
// runnable threads get an equal share); decoding costs `cpu` seconds a
// sample; each read takes `latency` seconds and the batches ahead bound the
// reads in flight; the consumer takes `step` seconds of CPU a batch (0: it
// takes batches as fast as they come). One second a window.
struct Plant {
  int cores = 2;
  double cpu = 0.001;
  double latency = 0;
  double step = 0;
  int64_t batch = 64;
  double bandwidth_images = kInf;  // storage's cap, images/s

  double Rate(const TuneSettings& s) const { return Window(s).images; }

  TuneWindow Window(const TuneSettings& s) const {
    const int runnable = s.threads + (step > 0 ? 1 : 0);
    const double share = std::min(1.0, static_cast<double>(cores) / runnable);
    const double decode = s.threads * share / cpu;
    const double fetch =
        std::min(bandwidth_images, latency > 0 ? static_cast<double>(s.prefetch * batch) / latency : kInf);
    const double consumer = step > 0 ? static_cast<double>(batch) / (step / share) : kInf;
    const double rate = std::min({decode, fetch, consumer});
    TuneWindow w;
    w.wall_s = 1;
    w.images = static_cast<int64_t>(rate);
    w.batches = w.images / batch;
    w.decoded = w.images;
    w.decode_cpu_s = rate * cpu;
    w.fetch_latency_s = latency;
    w.consumer_s = step > 0 ? static_cast<double>(w.batches) * step / share : 0.01;
    if (consumer <= std::min(decode, fetch)) {
      w.wait_consumer_s = 1 - rate / std::min(decode, fetch);
    } else {
      const double waited = step > 0 ? 1 - rate / consumer : 0.95;
      (fetch < decode ? w.wait_fetch_s : w.wait_decode_s) = waited;
    }
    return w;
  }
};

TuneLimits Limits(int max_threads = 2, int max_prefetch = 32) {
  return TuneLimits{.threads = true,
                    .prefetch = true,
                    .max_threads = max_threads,
                    .min_prefetch = 1,
                    .max_prefetch = max_prefetch,
                    .batch_size = 64};
}

// Runs the loop for `windows` windows; returns the settings at the end.
TuneSettings Drive(Autotuner& t, const Plant& p, int windows) {
  TuneSettings s = t.settings();
  for (int i = 0; i < windows; ++i) s = t.Observe(p.Window(s));
  return s;
}

TEST(Autotune, DecodeBoundKeepsEveryCoreAndTwoBatches) {
  Plant p;  // a consumer that takes batches as fast as they come
  Autotuner t(Limits(), {2, 2});
  EXPECT_EQ(Drive(t, p, 40), (TuneSettings{2, 2}));
  EXPECT_EQ(t.changes(), 0);
  EXPECT_NEAR(t.predicted(), 2000, 1);
  EXPECT_NEAR(t.measured(), 2000, 1);
}

TEST(Autotune, LatencyRaisesPrefetchByLittlesLaw) {
  Plant p;
  p.latency = 0.1;  // 2 batches ahead: 128 reads / 0.1 s = 1,280 images/s < 2,000
  Autotuner t(Limits(), {2, 2});
  const TuneSettings s = Drive(t, p, 20);
  // Little's law asks for 2,000 images/s x 0.1 s x 1.5 = 300 reads: 5
  // batches, and the one decoding; at most doubled per trial, 4 already
  // keep 2,000 images/s coming.
  EXPECT_EQ(s, (TuneSettings{2, 4}));
  EXPECT_NEAR(p.Rate(s), 2000, 1);
  EXPECT_EQ(t.reverted(), 0);
  EXPECT_EQ(t.reason(), "the consumer waited for storage reads");
}

TEST(Autotune, PrefetchStaysWithinTheMemoryPlan) {
  Plant p;
  p.latency = 0.5;  // would want 25 batches
  Autotuner t(Limits(2, 8), {2, 2});
  EXPECT_EQ(Drive(t, p, 30), (TuneSettings{2, 8}));
}

TEST(Autotune, PrefetchThatDoesNotPayIsRevertedAndTriedLessOften) {
  Plant p;
  p.latency = 0.01;
  p.bandwidth_images = 500;  // storage-bound: batches ahead do not help
  Autotuner t(Limits(), {2, 2});
  int changes_at[64] = {};
  TuneSettings s = t.settings();
  int n = 0;
  for (int i = 0; i < 60; ++i) {
    const TuneSettings next = t.Observe(p.Window(s));
    if (!(next == s) && next.prefetch > s.prefetch && n < 64) changes_at[n++] = i;
    s = next;
  }
  EXPECT_EQ(s.prefetch, 2);
  EXPECT_EQ(s.threads, 2);
  ASSERT_GE(n, 3);
  // Each revert doubles the wait before the next try.
  EXPECT_LT(changes_at[1] - changes_at[0], changes_at[2] - changes_at[1]);
  EXPECT_EQ(t.reverted(), n);
}

TEST(Autotune, SlowConsumerGetsTheCoreBack) {
  // A training step that keeps one core busy for twice the loader's batch
  // time: two decode threads take a share of its core and slow it down.
  Plant p;
  p.step = 2 * 64 * p.cpu / 2;
  Autotuner t(Limits(), {2, 2});
  const double before = p.Rate({2, 2});
  const TuneSettings s = Drive(t, p, 30);
  EXPECT_EQ(s.threads, 1);
  EXPECT_GT(p.Rate(s), 1.4 * before);
  EXPECT_EQ(t.reason(), "the loader waited for the consumer: fewer decode threads cover its rate");
}

TEST(Autotune, FewerThreadsThatCostRateAreReverted) {
  Plant p;
  p.cores = 4;
  p.step = 0.2;  // 320 images/s: needs 0.32 cores of decoding, by the model
  p.cpu = 0.001;
  Autotuner t(Limits(4), {4, 2});
  // The model says 1 thread; make fewer threads cost rate anyway by a
  // plant whose decode is slower than its CPU says (waiting on memory).
  struct Slow : Plant {
    TuneWindow W(const TuneSettings& s) const {
      TuneWindow w = Window(s);
      if (s.threads < 4) {
        w.images = w.images * 6 / 10;
        w.batches = w.images / batch;
      }
      return w;
    }
  } slow;
  static_cast<Plant&>(slow) = p;
  TuneSettings s = t.settings();
  int fewer = 0;  // windows run with fewer threads
  for (int i = 0; i < 40; ++i) {
    s = t.Observe(slow.W(s));
    fewer += s.threads < 4;
  }
  // Each trial runs three windows with fewer threads (one to settle, two
  // measured), and each revert doubles the wait before the next.
  EXPECT_GE(t.reverted(), 2);
  EXPECT_LE(fewer, 3 * (t.reverted() + 1));
}

TEST(Autotune, DriftToAFasterConsumerAddsThreadsBack) {
  Plant p;
  p.step = 2 * 64 * p.cpu / 2;
  Autotuner t(Limits(), {2, 2});
  ASSERT_EQ(Drive(t, p, 30).threads, 1);
  p.step = 0;  // the step got fast (or moved to a GPU)
  const TuneSettings s = Drive(t, p, 20);
  EXPECT_EQ(s.threads, 2);
  EXPECT_NEAR(p.Rate(s), 2000, 1);
}

TEST(Autotune, GivenSettingsAreNeverChanged) {
  Plant p;
  p.step = 2 * 64 * p.cpu / 2;
  p.latency = 0.2;
  TuneLimits l = Limits();
  l.threads = false;
  l.prefetch = false;
  Autotuner t(l, {2, 2});
  EXPECT_EQ(Drive(t, p, 40), (TuneSettings{2, 2}));
  EXPECT_EQ(t.changes(), 0);
}

TEST(Autotune, ThreadsStayWithinTheCpuBudget) {
  Plant p;
  p.cores = 8;  // more cores than the budget allows
  Autotuner t(Limits(3), {1, 2});
  EXPECT_EQ(Drive(t, p, 40).threads, 3);
}

TEST(Autotune, SettingsChangedFromOutsideAreAdopted) {
  Plant p;
  p.step = 2 * 64 * p.cpu / 2;
  Autotuner t(Limits(), {2, 2});
  ASSERT_EQ(Drive(t, p, 30).threads, 1);
  // The user set 2 threads, then handed them back: the tuner starts from
  // what runs, and finds 1 again.
  t.Adopt({2, 2});
  EXPECT_EQ(t.settings(), (TuneSettings{2, 2}));
  EXPECT_EQ(t.Observe(p.Window({2, 2})), (TuneSettings{2, 2}));  // a transient
  EXPECT_EQ(Drive(t, p, 30).threads, 1);
}

TEST(Autotune, ThreadsTakenByTheUserAreLeftAlone) {
  // set_threads(n) on a tuned loader: the threads are no longer the
  // tuner's, however slow the consumer; given back, they are again.
  Plant p;
  p.step = 2 * 64 * p.cpu / 2;
  Autotuner t(Limits(), {2, 2});
  t.TuneThreads(false);
  EXPECT_EQ(Drive(t, p, 30), (TuneSettings{2, 2}));
  EXPECT_EQ(t.changes(), 0);
  t.TuneThreads(true);
  EXPECT_EQ(Drive(t, p, 30).threads, 1);
}

TEST(Autotune, EmptyWindowsChangeNothing) {
  Autotuner t(Limits(), {2, 2});
  TuneWindow w;  // no time, nothing delivered
  for (int i = 0; i < 10; ++i) EXPECT_EQ(t.Observe(w), (TuneSettings{2, 2}));
  w.wall_s = 1;  // time, nothing delivered and nothing waited
  for (int i = 0; i < 10; ++i) EXPECT_EQ(t.Observe(w), (TuneSettings{2, 2}));
  EXPECT_EQ(t.changes(), 0);
}

}  // namespace
}  // namespace stoker::pipeline
