// stoker.transforms.Compose on the C++ side (register_transforms.cc).
#pragma once

#include <nanobind/nanobind.h>

#include "stoker/options.h"

namespace stoker::python {

// A Python transform (stoker.transforms.Compose, imagenet_train/val) as
// TransformOptions::Kind::kCompose. Raises ValueError/TypeError for what
// Python could not describe and stoker.Error for what Loader::Open would
// refuse (naming the op and argument).
TransformOptions TransformFromPython(nanobind::handle transform);

void register_transforms(nanobind::module_& m);

}  // namespace stoker::python
