// stoker's C++ API: a Loader turns a dataset URI into batches of decoded,
// transformed images, prepared by a pool of C++ threads ahead of the consumer
// and delivered in order.
//
//   stoker::LoaderOptions opt;
//   opt.uri = "/data/imagenet/train";
//   opt.transform.kind = stoker::TransformOptions::Kind::kTrain;
//   auto loader = stoker::Loader::Open(opt);          // Result<unique_ptr<Loader>>
//   for (int64_t epoch = 0; epoch < 3; ++epoch) {
//     (*loader)->SetEpoch(epoch);
//     while (true) {
//       auto batch = (*loader)->Next();               // Result<optional<Batch>>
//       if (!batch.ok()) { /* only with OnError::kRaise */ }
//       if (!batch->has_value()) break;                // end of epoch
//       use((*batch)->images_data(), (*batch)->size());
//     }
//   }
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stoker/options.h"
#include "stoker/profile.h"
#include "stoker/stats.h"
#include "stoker/status.h"

namespace stoker {

enum class DType { kUInt8, kFloat32, kInt8, kInt16, kUInt16, kInt32, kUInt32, kInt64, kUInt64,
                   kFloat16, kFloat64, kBool };
// Bytes per element.
constexpr size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kUInt8: case DType::kInt8: case DType::kBool: return 1;
    case DType::kInt16: case DType::kUInt16: case DType::kFloat16: return 2;
    case DType::kFloat32: case DType::kInt32: case DType::kUInt32: return 4;
    case DType::kInt64: case DType::kUInt64: case DType::kFloat64: return 8;
  }
  return 1;
}

// An n-dimensional C-contiguous array of a field (FieldColumn).
struct Array {
  DType dtype = DType::kUInt8;
  std::vector<int64_t> shape;
  std::vector<std::byte> data;  // product(shape) * DTypeSize(dtype) bytes
};

// One field of a batch (LoaderOptions::fields), in batch order.
struct FieldColumn {
  std::string name;
  FieldSpec::Kind kind = FieldSpec::Kind::kAuto;  // as resolved: never kAuto
  // kInt (int64), kFloat (float64), kMask (uint8 N x 1 x H x W), and kNpy
  // when every array of the batch has one dtype and shape: one array whose
  // first dimension is the batch.
  std::optional<Array> stacked;
  // kText and kJson (UTF-8), kBytes: one string per sample.
  std::vector<std::string> strings;
  // kNpy whose arrays differ in dtype or shape: one array per sample.
  std::vector<Array> arrays;
};

// One sample's field as a SampleHook sees it (read-only).
struct SampleField {
  const std::string* name = nullptr;
  FieldSpec::Kind kind = FieldSpec::Kind::kAuto;
  int64_t int_value = 0;       // kInt
  double float_value = 0;      // kFloat
  std::string_view bytes;      // kText, kJson (UTF-8), kBytes
  const Array* array = nullptr;  // kNpy, kMask
};

// A decoded, transformed sample, as LoaderOptions::map sees it.
struct SampleView {
  void* image = nullptr;  // channels x height x width, C-contiguous, `dtype`
  DType dtype = DType::kUInt8;
  int64_t channels = 0, height = 0, width = 0;
  int64_t label = 0;  // the hook may change it
  int64_t index = 0;  // position in the dataset listing
  int64_t epoch = 0;
  uint64_t position = 0;  // in the epoch's global order
  std::vector<SampleField> fields;
  // What the hook leaves for the batch: Batch::sample_user_data()[i].
  std::shared_ptr<void> user;
};

// One batch. Cheap to copy: copies share the same buffers, which live as long
// as any copy (or any tensor made from them) does.
class Batch {
 public:
  struct Buffers;  // defined in the pipeline

  Batch() = default;
  explicit Batch(std::shared_ptr<Buffers> buffers);

  // Number of samples; smaller than batch_size for the last batch of an epoch
  // (drop_last=false) or when samples were skipped.
  int64_t size() const;
  // Images as N x C x H x W, C-contiguous: C, H, W and the dtype are the
  // transform's output (C is 1 after Grayscale(1), else 3).
  DType dtype() const;
  std::vector<int64_t> image_shape() const;
  void* images_data() const;
  // N labels and N dataset indices (position of each sample in the listing).
  const int64_t* labels_data() const;
  const int64_t* indices_data() const;
  // The epoch this batch belongs to and its number within the epoch.
  int64_t epoch() const;
  int64_t batch_number() const;
  // The fields asked for in LoaderOptions::fields, in that order.
  const std::vector<FieldColumn>& fields() const;
  // What LoaderOptions::map left per sample (SampleView::user), in batch
  // order; empty without a map.
  const std::vector<std::shared_ptr<void>>& sample_user_data() const;
  // What LoaderOptions::batch_map left (null without one). If it refers to
  // this batch's buffers (keep_alive), take it out (set_user_data(nullptr))
  // once read, or the two keep each other alive.
  std::shared_ptr<void> user_data() const;
  void set_user_data(std::shared_ptr<void> data);

  // Shares ownership of all buffers; used to hand them to other runtimes
  // (DLPack) without a copy.
  std::shared_ptr<void> keep_alive() const;

 private:
  std::shared_ptr<Buffers> buffers_;
};

// Dataset summary for `stoker ls`.
struct DatasetInfo {
  int64_t num_samples = 0;
  std::vector<std::string> classes;  // index = label
  // A shard dataset (stoker convert): its index object, its shards, its
  // fields and what its images are. Empty for loose files.
  struct Shard {
    std::string uri;
    int64_t bytes = 0;
    int64_t samples = 0;
  };
  // "stoker" (written by stoker convert) or "webdataset" (tars, indexed
  // when opened: shard_index_bytes is that index's memory).
  std::string shard_format;
  std::string shard_index_uri;
  int64_t shard_index_bytes = 0;
  std::vector<Shard> shards;
  std::vector<std::pair<std::string, std::string>> shard_fields;  // name, kind
  // Samples by image format: "jpeg_restart" (with restart markers and a row
  // table), "jpeg", "png", "other", "none".
  std::map<std::string, int64_t> image_formats;
};

// Where iteration stands, O(1) in size: the epoch and how many positions of
// its global order the consumers have received (over all ranks). Restored on
// a new Loader, with the same or another world size, the next pass resumes
// right after the last batch received: nothing replayed, nothing skipped.
struct LoaderState {
  static constexpr int64_t kVersion = 1;
  int64_t version = kVersion;
  uint64_t seed = 0;
  bool shuffle = false;
  int64_t num_samples = 0;  // checked on restore: the state is for this dataset
  int64_t epoch = 0;
  int64_t position = 0;  // global positions consumed in `epoch`
};

// Fork: a Loader belongs to the process that opened it. In a child forked
// from that process its threads do not exist; there Next() returns an error
// saying so, Stop() does nothing, and destroying it frees nothing that a
// thread of the parent might have been using (it is left to the process's
// exit). A Loader opened in the child works normally.
class Loader {
 public:
  // Lists the dataset and validates `options`. Fails with the URI and the
  // reason when the dataset cannot be listed or is empty.
  static Result<std::unique_ptr<Loader>> Open(const LoaderOptions& options);

  virtual ~Loader() = default;

  // Batches per epoch for this rank.
  virtual int64_t num_batches() const = 0;
  // Samples in the dataset listing (all ranks).
  virtual int64_t num_samples() const = 0;
  virtual const DatasetInfo& info() const = 0;
  // URI and label of dataset index `index`.
  virtual std::string sample_uri(int64_t index) const = 0;
  virtual int64_t sample_label(int64_t index) const = 0;

  // Selects the epoch used by the next Start(); cancels an epoch in progress.
  virtual void SetEpoch(int64_t epoch) = 0;
  virtual int64_t epoch() const = 0;

  // Starts (or restarts) iterating over the current epoch from its first
  // batch. Any work in flight for a previous iteration is cancelled.
  virtual void Start() = 0;
  // Returns the next batch in order, std::nullopt at the end of the epoch, or
  // (with OnError::kRaise) the error of the first bad sample in this batch.
  // Blocks while the batch is being prepared. Calls Start() if needed.
  virtual Result<std::optional<Batch>> Next() = 0;
  // Waits at most `timeout` for Next() to have something to return (a batch,
  // the end of the epoch or an error) and says whether it has: then the next
  // Next() does not block. Lets a caller that must react to something else
  // (a signal, in the Python binding) wait in slices. Calls Start() if needed.
  virtual bool WaitForNext(std::chrono::milliseconds timeout) = 0;
  // Stops the worker threads and joins them; Next() then returns the end of
  // the epoch, and the next Start() begins the epoch again. May be called
  // from any thread, also while another thread waits in Next() or
  // WaitForNext(): that call then returns at once.
  virtual void Stop() = 0;
  // Stop(), for good: Start() does nothing after it and Next() returns
  // Cancelled. For shutdown (the Python binding closes every loader when the
  // interpreter exits). Any thread, like Stop().
  virtual void Close() = 0;

  virtual LoaderStats stats() const = 0;
  // Where the time went since the first batch was asked for: per-stage
  // rates, the consumer's waits by stage, the bottleneck, a what-if
  // (stoker/profile.h).
  virtual ProfileReport Profile() const = 0;
  // The spans recorded so far as Chrome trace-event JSON (Perfetto,
  // chrome://tracing); empty unless LoaderOptions::trace.
  virtual std::string TraceJson() const = 0;

  // Decode threads from now on (0: one per available core). Takes effect in
  // the running pass at once; batches stay identical for any thread count.
  virtual void SetThreads(int threads) = 0;
  virtual int threads() const = 0;

  // The state after the last batch Next() returned.
  virtual LoaderState state() const = 0;
  // Makes the next pass start at `state` (its epoch, from its position).
  // Calling SetEpoch with the same epoch before that pass keeps the position.
  // Fails if the state was saved for another dataset size, seed or shuffle.
  virtual Status LoadState(const LoaderState& state) = 0;
};

}  // namespace stoker
