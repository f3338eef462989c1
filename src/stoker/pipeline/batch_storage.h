// The memory behind a Batch, and the pool that recycles image buffers so
// resident memory stays flat across epochs.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <vector>

#include "stoker/loader.h"

namespace stoker::pipeline {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<uint8_t, FreeDeleter>;

// Fixed-size, 64-byte aligned buffers. Returned buffers are kept (up to
// `max_free`) and handed out again; a batch the consumer still holds simply
// keeps its buffer until it is dropped.
class BufferPool {
 public:
  BufferPool(size_t buffer_bytes, size_t max_free)
      : buffer_bytes_(buffer_bytes), max_free_(max_free) {}

  size_t buffer_bytes() const { return buffer_bytes_; }

  Buffer Get() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        Buffer b = std::move(free_.back());
        free_.pop_back();
        return b;
      }
    }
    size_t rounded = (buffer_bytes_ + 63) / 64 * 64;
    return Buffer(static_cast<uint8_t*>(std::aligned_alloc(64, rounded == 0 ? 64 : rounded)));
  }

  void Put(Buffer b) {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.size() < max_free_) free_.push_back(std::move(b));
  }

 private:
  const size_t buffer_bytes_;
  const size_t max_free_;
  std::mutex mu_;
  std::vector<Buffer> free_;
};

}  // namespace stoker::pipeline

namespace stoker {

struct Batch::Storage {
  std::shared_ptr<pipeline::BufferPool> pool;
  pipeline::Buffer images;
  int64_t n = 0;
  int size = 0;  // images are n x 3 x size x size
  DType dtype = DType::kUInt8;
  std::vector<int64_t> labels;
  std::vector<int64_t> indices;
  int64_t epoch = 0;
  int64_t batch_number = 0;

  ~Storage() {
    if (pool && images) pool->Put(std::move(images));
  }
};

}  // namespace stoker
