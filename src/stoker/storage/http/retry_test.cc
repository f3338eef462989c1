#include "stoker/storage/http/retry.h"

#include <gtest/gtest.h>

#include <random>

namespace stoker::storage::http {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

TEST(Retry, FullJitterStaysUnderTheExponentialCeiling) {
  RetryPolicy p;
  p.base_backoff = milliseconds(50);
  p.max_backoff = milliseconds(2000);
  std::mt19937_64 rng(1);
  for (int retry = 1; retry <= 12; ++retry) {
    const auto ceiling = std::min(milliseconds(50) * (int64_t{1} << (retry - 1)), milliseconds(2000));
    nanoseconds lo = nanoseconds::max(), hi(0);
    for (int i = 0; i < 2000; ++i) {
      const nanoseconds d = Backoff(p, retry, rng());
      ASSERT_GE(d.count(), 0);
      ASSERT_LE(d, ceiling);
      lo = std::min(lo, d);
      hi = std::max(hi, d);
    }
    // Spread over the whole interval, not clustered at its end.
    EXPECT_LT(lo, ceiling / 10) << retry;
    EXPECT_GT(hi, ceiling * 9 / 10) << retry;
  }
  EXPECT_EQ(Backoff(p, 1, 0), nanoseconds(0));
  EXPECT_LE(Backoff(p, 1, ~uint64_t{0}), milliseconds(50));
  EXPECT_LE(Backoff(p, 1000000, ~uint64_t{0}), milliseconds(2000));  // no overflow
  p.base_backoff = milliseconds(0);
  EXPECT_EQ(Backoff(p, 3, 12345), nanoseconds(0));
}

Response Status(int code) {
  Response r;
  r.status = code;
  return r;
}
Response Net(NetError e) {
  Response r;
  r.error = e;
  return r;
}

TEST(Retry, WhatIsTransient) {
  for (int code : {500, 502, 503, 504, 429}) EXPECT_TRUE(IsTransient(Status(code))) << code;
  for (int code : {200, 206, 301, 400, 401, 403, 404, 416, 501}) {
    EXPECT_FALSE(IsTransient(Status(code))) << code;
  }
  EXPECT_TRUE(IsTransient(Net(NetError::kTimeout)));
  EXPECT_TRUE(IsTransient(Net(NetError::kConnect)));
  EXPECT_TRUE(IsTransient(Net(NetError::kReset)));
  EXPECT_FALSE(IsTransient(Net(NetError::kOther)));
  EXPECT_FALSE(IsTransient(Net(NetError::kCancelled)));
  EXPECT_TRUE(IsTransientErrorCode("SlowDown"));
  EXPECT_TRUE(IsTransientErrorCode("InternalError"));
  EXPECT_TRUE(IsTransientErrorCode("RequestTimeout"));
  EXPECT_FALSE(IsTransientErrorCode("NoSuchKey"));
  EXPECT_FALSE(IsTransientErrorCode("AccessDenied"));
  EXPECT_FALSE(IsTransientErrorCode(""));
}

}  // namespace
}  // namespace stoker::storage::http
