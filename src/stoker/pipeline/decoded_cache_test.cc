#include "stoker/pipeline/decoded_cache.h"

#include <gtest/gtest.h>

#include <vector>

namespace stoker::pipeline {
namespace {

std::vector<uint8_t> Sample(uint8_t seed, size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed * 31 + i);
  return v;
}

TEST(DecodedCache, KeepsWhatFitsAndCopiesItBack) {
  DecodedCache c(100, 250);  // room for two samples
  const auto a = Sample(1, 100), b = Sample(2, 100), d = Sample(3, 100);
  c.Keep(7, a.data());
  c.Keep(9, b.data());
  c.Keep(11, d.data());  // no room: not kept, nothing evicted
  EXPECT_TRUE(c.Contains(7) && c.Contains(9));
  EXPECT_FALSE(c.Contains(11));
  EXPECT_EQ(c.samples(), 2);
  EXPECT_EQ(c.bytes(), 200);
  std::vector<uint8_t> out(100);
  ASSERT_TRUE(c.CopyTo(9, out.data()));
  EXPECT_EQ(out, b);
  EXPECT_FALSE(c.CopyTo(11, out.data()));
  EXPECT_EQ(c.hits(), 1);
  // A sample kept once is not replaced.
  c.Keep(7, d.data());
  ASSERT_TRUE(c.CopyTo(7, out.data()));
  EXPECT_EQ(out, a);
}

TEST(DecodedCache, OnlyTransformsWithoutRandomness) {
  TransformOptions t;
  t.kind = TransformOptions::Kind::kVal;
  EXPECT_EQ(RandomTransformOp(t), "");
  t.kind = TransformOptions::Kind::kTrain;
  EXPECT_EQ(RandomTransformOp(t), "RandomResizedCrop");
  t.kind = TransformOptions::Kind::kCompose;
  using T = TransformOp::Type;
  for (T type : {T::kResize, T::kCenterCrop, T::kPad, T::kGrayscale, T::kNormalize, T::kToDtype}) {
    t.ops.push_back(TransformOp{.type = type});
  }
  EXPECT_EQ(RandomTransformOp(t), "");
  TransformOp flip{.type = T::kRandomHorizontalFlip};
  flip.p = 0;  // never flips
  t.ops.push_back(flip);
  EXPECT_EQ(RandomTransformOp(t), "");
  t.ops.back().p = 0.5;
  EXPECT_EQ(RandomTransformOp(t), "RandomHorizontalFlip");
  t.ops.back() = TransformOp{.type = T::kGaussianBlur};
  t.ops.back().sigma = {1.0, 1.0};  // one sigma: the same blur every time
  EXPECT_EQ(RandomTransformOp(t), "");
  t.ops.back().sigma = {0.1, 2.0};
  EXPECT_EQ(RandomTransformOp(t), "GaussianBlur");
  t.ops.back() = TransformOp{.type = T::kColorJitter};
  EXPECT_EQ(RandomTransformOp(t), "ColorJitter");
}

}  // namespace
}  // namespace stoker::pipeline
