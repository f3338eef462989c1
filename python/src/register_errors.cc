#include "errors.h"

namespace stoker::python {

void register_errors(nanobind::module_& m) {
  nanobind::exception<Error>(m, "Error", PyExc_RuntimeError);
}

}  // namespace stoker::python
