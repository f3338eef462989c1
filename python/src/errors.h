// The one place where stoker's Status becomes a Python exception.
#pragma once

#include <nanobind/nanobind.h>

#include <stdexcept>
#include <string>

#include "stoker/status.h"

namespace stoker::python {

// Raised as stoker.Error (a RuntimeError) with Status::ToString() as message.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline void ThrowIfError(const Status& st) {
  if (!st.ok()) throw Error(st.ToString());
}

template <typename T>
T ValueOrThrow(Result<T> r) {
  ThrowIfError(r.status());
  return std::move(r).value();
}

// A file name or URI as Python sees one: os.fsdecode of the bytes (names
// that are not UTF-8 round-trip through surrogateescape).
nanobind::str DecodePath(const std::string& s);

void register_errors(nanobind::module_& m);
void register_loader(nanobind::module_& m);
void register_kernels(nanobind::module_& m);

}  // namespace stoker::python
