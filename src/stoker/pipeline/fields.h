// Fields of a sample besides its image (LoaderOptions::fields): decoded on
// a decode thread into a FieldValue, then gathered into a batch's
// FieldColumn when the batch is collated.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "stoker/dataset/dataset.h"
#include "stoker/loader.h"
#include "stoker/status.h"

namespace stoker::pipeline {

// One sample's value of one field.
struct FieldValue {
  int64_t i = 0;    // kInt
  double d = 0;     // kFloat
  std::string s;    // kText, kJson, kBytes
  Array array;      // kNpy, kMask
};

// Decodes `field` of one sample: `value` is the sample's Sample::fields
// entry (the value itself, or the URI of its file), `file` the file's bytes
// when field.file. kMask is the pipeline's (it needs the image's
// transform). Errors say what is wrong with the value; the caller names
// the sample.
Status DecodeField(const dataset::Field& field, const std::string& value,
                   std::span<const uint8_t> file, FieldValue& out);

// The batch's column of `field` from its samples' values, in batch order
// (moved from). Numbers become one int64 or float64 array; masks and .npy
// arrays one stacked array when all share dtype and shape (else, for .npy,
// one array per sample); text, JSON and bytes one string per sample.
FieldColumn CollateField(const dataset::Field& field, std::vector<FieldValue>& values);

}  // namespace stoker::pipeline
