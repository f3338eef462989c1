// stoker._core: the nanobind extension. One register_<part> file per part;
// every call that does real work releases the GIL.
#include "errors.h"
#include "register_transforms.h"

NB_MODULE(_core, m) {
  m.doc() = "stoker's C++ core";
  stoker::python::register_errors(m);
  stoker::python::register_loader(m);
  stoker::python::register_kernels(m);
  stoker::python::register_transforms(m);
}
