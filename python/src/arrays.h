// Small conversions shared by the bindings.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <initializer_list>
#include <span>
#include <vector>

namespace stoker::python {

// A NumPy array that owns `data`.
template <typename T>
nanobind::ndarray<nanobind::numpy, T> OwnedArray(std::vector<T>&& data,
                                                 std::initializer_list<size_t> shape) {
  auto* heap = new std::vector<T>(std::move(data));
  nanobind::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nanobind::ndarray<nanobind::numpy, T>(heap->data(), shape, owner);
}

// The bytes of a Python bytes object.
inline std::span<const uint8_t> Span(const nanobind::bytes& b) {
  return {static_cast<const uint8_t*>(b.data()), b.size()};
}

}  // namespace stoker::python
