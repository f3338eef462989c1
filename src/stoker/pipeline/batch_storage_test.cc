#include "stoker/pipeline/batch_storage.h"

#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

namespace stoker::pipeline {
namespace {

// A spike of live buffers above the bound is freed as the buffers come
// back; afterwards the pool serves from the buffers it kept and allocates
// nothing new, so memory returns to the same level after every spike.
TEST(BufferPool, KeepsAtMostTheBoundAfterASpike) {
  BufferPool pool(1000, 4);
  std::vector<Buffer> live;
  for (int i = 0; i < 7; ++i) {
    live.push_back(pool.Get());
    ASSERT_NE(live.back(), nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(live.back().get()) % 64, 0u);
  }
  EXPECT_EQ(pool.allocated(), 7u);
  for (auto& b : live) pool.Put(std::move(b));
  live.clear();
  EXPECT_EQ(pool.allocated(), 4u);

  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 4; ++i) {
      live.push_back(pool.Get());
    }
    EXPECT_EQ(pool.allocated(), 4u) << "round " << round;
    for (auto& b : live) pool.Put(std::move(b));
    live.clear();
  }
  EXPECT_EQ(pool.allocated(), 4u);
  pool.Put(Buffer());  // an empty buffer is ignored
  EXPECT_EQ(pool.allocated(), 4u);
}

}  // namespace
}  // namespace stoker::pipeline
