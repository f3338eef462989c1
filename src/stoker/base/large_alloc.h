// Memory for the loader's large, short-lived buffers (encoded samples,
// decoded regions, resize rows): mapped from the kernel and returned to it
// on free, not carved out of malloc's arenas.
//
// Why: the loader's threads start and end with each epoch, and glibc hands
// a new thread whichever arena an old one left. Buffers of 64 KiB to a few
// MiB freed there stay resident, fragmented, and which arena holds how much
// changes from epoch to epoch: the process's RSS after an epoch wandered by
// +-10 MB (2-4% of a 400 MB loader process) with nothing leaking. With these
// buffers mapped, RSS after epochs 1 to 10 of the demo stayed within 0.2%
// (and 25 MB lower). What is kept for reuse (BufferRecycler, a decoder's
// scratch) is still reused: a mapping is made only when none fits, and then
// the kernel zero-fills its pages as they are first touched.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdlib>
#include <new>
#include <utility>

namespace stoker {

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define STOKER_LARGE_ALLOC_USES_MALLOC 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define STOKER_LARGE_ALLOC_USES_MALLOC 1
#endif

// Allocations from this size up are mapped; smaller ones use malloc. Under
// AddressSanitizer everything uses malloc, so that reads past the end of a
// buffer meet a redzone (a mapping has none until the next page).
#if defined(STOKER_LARGE_ALLOC_USES_MALLOC)
inline constexpr size_t kMappedAllocationMin = static_cast<size_t>(-1);
#else
inline constexpr size_t kMappedAllocationMin = size_t{64} << 10;
#endif

inline void* AllocateLarge(size_t bytes) {
  if (bytes >= kMappedAllocationMin) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return p;
  }
  void* p = std::malloc(bytes == 0 ? 1 : bytes);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

// `bytes` must be what was passed to AllocateLarge.
inline void FreeLarge(void* p, size_t bytes) noexcept {
  if (p == nullptr) return;
  if (bytes >= kMappedAllocationMin) {
    ::munmap(p, bytes);
  } else {
    std::free(p);
  }
}

// A std::allocator for vectors of bytes and numbers on the hot path:
// AllocateLarge memory, and resize() leaves new elements uninitialised
// (default-initialised) instead of zeroing them: every user overwrites
// what it asked for.
template <typename T>
struct LargeAllocator {
  using value_type = T;
  LargeAllocator() noexcept = default;
  template <typename U>
  LargeAllocator(const LargeAllocator<U>&) noexcept {}

  T* allocate(size_t n) {
    if (n > static_cast<size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(AllocateLarge(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) noexcept { FreeLarge(p, n * sizeof(T)); }

  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;  // default-initialised: no zeroing
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }

  template <typename U>
  bool operator==(const LargeAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace stoker
