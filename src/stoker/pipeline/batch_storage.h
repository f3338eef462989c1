// The memory behind a Batch, and the pool that recycles image buffers so
// resident memory stays flat across epochs.
#pragma once

#include <algorithm>
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

// Fixed-size, 64-byte aligned buffers, recycled. The pool keeps at most
// `max_buffers` buffers in existence (in use plus free) in the steady state:
// when timing makes one more batch live for a moment (the consumer holds two
// while the pipeline fills its prefetch slots), the extra buffer is freed when
// it comes back instead of being kept, so resident memory returns to the same
// level after every such spike (a batch buffer is tens of MB: malloc hands it
// back to the kernel on free). A batch the consumer still holds keeps its
// buffer until it is dropped.
class BufferPool {
 public:
  BufferPool(size_t buffer_bytes, size_t max_buffers)
      : buffer_bytes_(buffer_bytes), max_buffers_(max_buffers) {}

  size_t buffer_bytes() const { return buffer_bytes_; }

  Buffer Get() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        Buffer b = std::move(free_.back());
        free_.pop_back();
        return b;
      }
      ++allocated_;
      peak_ = std::max(peak_, allocated_);
    }
    size_t rounded = (buffer_bytes_ + 63) / 64 * 64;
    Buffer b(static_cast<uint8_t*>(std::aligned_alloc(64, rounded == 0 ? 64 : rounded)));
    if (!b) {
      std::lock_guard<std::mutex> lock(mu_);
      --allocated_;
    }
    return b;
  }

  void Put(Buffer b) {
    if (!b) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (allocated_ <= max_buffers_) {
        free_.push_back(std::move(b));
        return;
      }
      --allocated_;
    }
    b.reset();  // outside the lock: unmapping tens of MB takes a while
  }

  // Buffers in existence (in use or free); for tests.
  size_t allocated() const {
    std::lock_guard<std::mutex> lock(mu_);
    return allocated_;
  }
  // The most buffers that existed at once.
  size_t peak() const {
    std::lock_guard<std::mutex> lock(mu_);
    return peak_;
  }
  // Buffers kept for reuse from now on; free ones beyond it are freed.
  void SetMaxBuffers(size_t n) {
    std::vector<Buffer> drop;
    {
      std::lock_guard<std::mutex> lock(mu_);
      max_buffers_ = n;
      while (allocated_ > max_buffers_ && !free_.empty()) {
        drop.push_back(std::move(free_.back()));
        free_.pop_back();
        --allocated_;
      }
    }
  }  // `drop` freed here, outside the lock

 private:
  const size_t buffer_bytes_;
  size_t max_buffers_;
  mutable std::mutex mu_;
  std::vector<Buffer> free_;
  size_t allocated_ = 0;
  size_t peak_ = 0;
};

}  // namespace stoker::pipeline

namespace stoker {

struct Batch::Buffers {
  std::shared_ptr<pipeline::BufferPool> pool;
  pipeline::Buffer images;
  int64_t n = 0;
  int channels = 3;  // images are n x channels x height x width
  int height = 0;
  int width = 0;
  DType dtype = DType::kUInt8;
  std::vector<int64_t> labels;
  std::vector<int64_t> indices;
  std::vector<FieldColumn> fields;  // LoaderOptions::fields, in order
  std::vector<std::shared_ptr<void>> sample_user;  // LoaderOptions::map's, per sample
  std::shared_ptr<void> user;                      // LoaderOptions::batch_map's
  int64_t epoch = 0;
  int64_t batch_number = 0;

  ~Buffers() {
    if (pool && images) pool->Put(std::move(images));
  }
};

}  // namespace stoker
