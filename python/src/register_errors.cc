#include <cstring>

#include "errors.h"

namespace stoker::python {

nanobind::str DecodePath(const std::string& s) {
  PyObject* o = PyUnicode_DecodeFSDefaultAndSize(s.data(), static_cast<Py_ssize_t>(s.size()));
  if (o == nullptr) throw nanobind::python_error();
  return nanobind::steal<nanobind::str>(o);
}

void register_errors(nanobind::module_& m) {
  nanobind::exception<Error> error(m, "Error", PyExc_RuntimeError);
  // Registered after the default one, so tried first. Messages name files,
  // and a Linux file name is bytes that need not be UTF-8: decode the
  // message as os.fsdecode does (undecodable bytes become lone surrogates)
  // instead of letting a strict UTF-8 decode turn stoker.Error into a
  // UnicodeDecodeError that has lost the reason.
  nanobind::register_exception_translator(
      [](const std::exception_ptr& p, void* type) {
        try {
          std::rethrow_exception(p);
        } catch (const Error& e) {
          const char* what = e.what();
          PyObject* msg =
              PyUnicode_DecodeFSDefaultAndSize(what, static_cast<Py_ssize_t>(std::strlen(what)));
          if (msg == nullptr) return;  // the decode error is set instead
          PyErr_SetObject(static_cast<PyObject*>(type), msg);
          Py_DECREF(msg);
        }
      },
      error.ptr());
}

}  // namespace stoker::python
