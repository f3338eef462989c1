#include "stoker/storage/http/concurrency.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>

namespace stoker::storage::http {
namespace {

// Drives the controller with a simulated closed loop: a consumer that wants
// `demand` requests/s, a server with fixed `latency`, and the controller's
// limit capping what is in flight. Returns the limit after `seconds`.
struct Sim {
  ConcurrencyController c;
  double now = 0;
  std::deque<double> in_flight;  // completion times
  int64_t queued = 0;
  int64_t completed = 0;

  explicit Sim(ConcurrencyOptions o) : c(o) {}

  void Run(double demand, double latency, double seconds) {
    const double dt = 0.001;
    double owed = 0;
    const double end = now + seconds;
    for (int step = 0; now < end && step < 10000000; ++step) {
      now += dt;
      while (!in_flight.empty() && in_flight.front() <= now) {
        in_flight.pop_front();
        c.OnCompletion(now, latency, queued);
        ++completed;
      }
      // The consumer asks at its rate, but (like the loader's bounded
      // prefetch window) never has more than 256 outstanding.
      owed += demand * dt;
      while (owed >= 1 && queued + static_cast<int64_t>(in_flight.size()) < 256) {
        owed -= 1;
        ++queued;
        c.OnArrival(now, queued);
      }
      if (owed > 1) owed = 1;
      while (queued > 0 && static_cast<int>(in_flight.size()) < c.limit()) {
        --queued;
        in_flight.push_back(now + latency);
      }
    }
  }
};

TEST(Concurrency, LittlesLawWithHeadroom) {
  ConcurrencyOptions o;
  o.initial_in_flight = 8;
  Sim sim(o);
  // 1,000 requests/s at 20 ms needs 20 in flight; headroom 2 gives ~40.
  sim.Run(1000, 0.020, 3);
  EXPECT_NEAR(sim.c.rate(), 1000, 100);
  EXPECT_NEAR(sim.c.latency(), 0.020, 0.001);
  EXPECT_GE(sim.c.limit(), 36);
  EXPECT_LE(sim.c.limit(), 46);
  EXPECT_GE(sim.completed, 2800);  // kept up with demand
}

TEST(Concurrency, GrowsWhenTheLimitIsWhatBinds) {
  ConcurrencyOptions o;
  o.initial_in_flight = 4;
  o.min_in_flight = 4;
  Sim sim(o);
  // 4 in flight at 50 ms is 80/s; the consumer wants 2,000/s (100 in flight).
  sim.Run(2000, 0.050, 0.2);
  const int early = sim.c.limit();
  sim.Run(2000, 0.050, 3);
  EXPECT_GT(sim.c.limit(), early);
  EXPECT_GE(sim.c.limit(), 100);
  EXPECT_NEAR(sim.c.rate(), 2000, 300);
}

TEST(Concurrency, FollowsLatencyAndDemandDown) {
  ConcurrencyOptions o;
  Sim sim(o);
  sim.Run(1000, 0.050, 2);
  const int high = sim.c.limit();  // ~100
  sim.Run(1000, 0.005, 2);
  EXPECT_LT(sim.c.limit(), high / 4);  // ~10
  sim.Run(100, 0.005, 2);
  EXPECT_EQ(sim.c.limit(), o.min_in_flight);  // 100/s * 5 ms * 2 = 1 -> the floor
}

// Everything asked for at once (a listing's worth of reads), nothing after:
// the arrival rate drops to zero, but the backlog says the limit binds.
TEST(Concurrency, ABurstGrowsTheLimitInsteadOfStarvingIt) {
  ConcurrencyOptions o;
  o.initial_in_flight = 4;
  o.max_in_flight = 128;
  ConcurrencyController c(o);
  const double latency = 0.020;
  int64_t queued = 5000;
  std::deque<double> in_flight;
  double now = 0;
  for (int64_t i = 0; i < queued; ++i) c.OnArrival(0, i + 1);
  int peak = 0;
  for (int step = 0; step < 100000 && (queued > 0 || !in_flight.empty()); ++step) {
    now += 0.001;
    while (!in_flight.empty() && in_flight.front() <= now) {
      in_flight.pop_front();
      c.OnCompletion(now, latency, queued);
    }
    while (queued > 0 && static_cast<int>(in_flight.size()) < c.limit()) {
      --queued;
      in_flight.push_back(now + latency);
    }
    peak = std::max(peak, c.limit());
  }
  EXPECT_EQ(queued, 0);
  EXPECT_EQ(peak, 128);
  // 5,000 requests at 128 in flight and 20 ms each: ~0.8 s plus the ramp;
  // stuck at 4 it would take 25 s.
  EXPECT_LT(now, 2.0);
}

TEST(Concurrency, RespectsTheCap) {
  ConcurrencyOptions o;
  o.max_in_flight = 32;
  Sim sim(o);
  sim.Run(5000, 0.1, 2);
  EXPECT_EQ(sim.c.limit(), 32);
  EXPECT_LE(sim.in_flight.size(), 32u);
}

TEST(Concurrency, KeepsItsInitialLimitUntilMeasuredAndAfterIdleGaps) {
  ConcurrencyOptions o;
  o.initial_in_flight = 64;
  ConcurrencyController c(o);
  EXPECT_EQ(c.limit(), 64);
  for (int i = 0; i < 100; ++i) c.OnArrival(i * 0.001, 0);
  EXPECT_EQ(c.limit(), 64);  // no latency measured yet
  // Steady 1,000/s at 10 ms.
  double t = 0.1;
  for (int i = 0; i < 2000; ++i, t += 0.001) {
    c.OnArrival(t, 0);
    c.OnCompletion(t, 0.010, 0);
  }
  const int steady = c.limit();
  EXPECT_NEAR(steady, 20, 3);
  // Ten idle seconds, then work resumes: the gap is not read as zero demand.
  t += 10;
  c.OnArrival(t, 0);
  c.OnCompletion(t + 0.001, 0.010, 0);
  EXPECT_EQ(c.limit(), steady);
}

}  // namespace
}  // namespace stoker::storage::http
