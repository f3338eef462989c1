// One pass over an epoch, as stages joined by bounded queues:
//
//   plan ──► fetch ──(fetched: min-heap on position)──► decode ×N ──(batches
//   under assembly)──► collate ──► deliver (in order, to Next())
//
//   plan     which sample (and which bytes) each position of this rank's
//            slice of the epoch's order takes (Planner: a pure function)
//   fetch    one thread issuing storage reads, at most `max_in_flight` at a
//            time and at most `prefetch_batches` batches ahead of delivery;
//            completed reads land in the fetched queue
//   decode   worker threads taking the lowest fetched position first (the
//            batch the consumer waits for completes first), decoding and
//            transforming straight into the batch's buffer; their number can
//            change while the pass runs (SetDecodeThreads)
//   collate  a complete batch: failed samples dropped (skip) or reported
//            (raise), counts taken; runs on the consumer's thread
//   deliver  Next() hands batches out in order
//
// Every stage and queue records into the loader's metrics registry, and the
// consumer's waiting is attributed to the stage it waited for (wait.*).
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stop_token>
#include <thread>
#include <vector>

#include "stoker/dataset/dataset.h"
#include "stoker/decode/jpeg_rows.h"
#include "stoker/loader.h"
#include "stoker/obs/metrics.h"
#include "stoker/obs/trace.h"
#include "stoker/pipeline/batch_storage.h"
#include "stoker/pipeline/decoded_cache.h"
#include "stoker/pipeline/fields.h"
#include "stoker/pipeline/lookahead.h"
#include "stoker/pipeline/page_reader.h"
#include "stoker/pipeline/sample.h"
#include "stoker/sampler/sampler.h"
#include "stoker/storage/storage.h"

namespace stoker::pipeline {

// The meters of one loader, looked up once in its registry.
struct LoaderMeters {
  explicit LoaderMeters(std::shared_ptr<obs::Registry> r);
  const std::shared_ptr<obs::Registry> registry;  // kept alive by every pass
  obs::StageMeter &plan, &fetch, &decode, &collate, &deliver;
  obs::QueueMeter &in_flight, &fetched, &assembling, &complete;
  obs::Histogram& fetch_latency;  // request to bytes, as the pipeline sees it
  obs::Counter &delivered, &skipped, &batches, &stall_ns;
  // The consumer's waits by the stage it waited for, and the time the
  // pipeline waited for the consumer (the next batch was ready when it came
  // back), in nanoseconds.
  obs::Counter &wait_fetch_ns, &wait_decode_ns, &wait_collate_ns, &wait_consumer_ns;
  // Time the consumer spent away from Next() between two batches.
  obs::Counter& consumer_ns;
  std::mutex mu;
  std::map<std::string, int64_t> errors_by_kind;
  std::set<int64_t> logged;  // dataset indices already logged as skipped
};

// Plan: position k of this rank's slice of the pass -> the sample it takes.
class Planner {
 public:
  struct Work {
    int64_t k;         // position in this pass (0 .. total-1)
    int64_t batch;     // k / batch_size
    int64_t slot;      // k % batch_size
    uint64_t global;   // position in the epoch's global order
    int64_t index;     // dataset index
  };
  Planner(const sampler::Sampler& sampler, int64_t batch_size)
      : sampler_(sampler), batch_size_(batch_size) {}
  Work At(int64_t k) const {
    const uint64_t g = sampler_.GlobalPosition(static_cast<uint64_t>(k));
    return Work{k, k / batch_size_, k % batch_size_, g, static_cast<int64_t>(sampler_.IndexAt(g))};
  }

 private:
  const sampler::Sampler& sampler_;
  const int64_t batch_size_;
};

class Pass : public std::enable_shared_from_this<Pass> {
 public:
  struct Config {
    LoaderOptions options;
    std::shared_ptr<const dataset::Dataset> dataset;
    sampler::Sampler sampler;  // set to this pass's epoch
    std::shared_ptr<storage::Storage> storage;
    std::shared_ptr<BufferPool> pool;
    std::shared_ptr<LoaderMeters> meters;
    std::shared_ptr<obs::TraceRecorder> trace;  // null: no trace
    int64_t num_batches;
    int64_t total;  // samples this rank takes in this pass
    int threads;    // decode threads at the start
    int prefetch;   // batches ahead of delivery at the start (>= 1)
    // Reads of the next epoch's first positions, issued once this pass has
    // issued all of its own (null: none), and how many positions to read.
    std::shared_ptr<Lookahead> lookahead;
    int64_t lookahead_count = 0;
    // Where JPEG MCU rows start, by dataset index (null: off).
    std::shared_ptr<decode::JpegRowIndex> row_index;
    // A remote shard dataset's records, read a page at a time (null: one
    // ranged read per record).
    std::shared_ptr<PageReader> pages;
    // Samples kept decoded (null: off).
    std::shared_ptr<DecodedCache> decoded;
  };

  // Remote shards in storage order: pages read ahead of the one in use.
  // In the chunk order, whole windows ahead of the one in use: at least
  // kPagesAhead pages' worth.
  static constexpr uint64_t kPagesAhead = 8;
  static uint64_t LeadWindows(uint32_t window) {
    return window >= kPagesAhead ? 1 : (kPagesAhead + window - 1) / window;
  }

  explicit Pass(Config c);

  void Launch();
  // Any thread; returns once the pass's threads are joined.
  void Stop();
  // Decode threads from now on (>= 1); more start at once, fewer exit as
  // they finish their current sample.
  void SetDecodeThreads(int n);
  // Batches started ahead of delivery from now on (>= 1): more are started
  // at once; with fewer, the fetch thread waits until delivery catches up.
  void SetPrefetchBatches(int n);

  bool finished() const;
  int64_t epoch() const { return c_.sampler.epoch(); }
  // Global position after the last delivered batch.
  int64_t position() const;

  // True when Next() would return without waiting.
  bool Wait(std::chrono::milliseconds timeout);
  // The next non-empty batch, the end of the pass, or an error.
  Result<std::optional<Batch>> Next();

 private:
  struct Slot {
    std::unique_ptr<Batch::Buffers> buffers;
    int64_t unfetched = 0;  // reads not yet back
    int64_t remaining = 0;  // samples not yet decoded (or failed)
    std::vector<Status> errors;  // per sample; ok unless it failed
    std::vector<std::vector<FieldValue>> fields;  // [field][sample]
    std::vector<std::shared_ptr<void>> user;      // LoaderOptions::map's, per sample
  };
  struct Item {
    int64_t k;
    Result<storage::Bytes> bytes;
    // One per dataset field: the file's bytes (file fields the sample has),
    // else empty.
    std::vector<Result<storage::Bytes>> files;
    bool decoded = false;  // kept in the decoded cache: nothing was read
  };
  // A sample whose image and field files are read by several requests,
  // until the last of them is back.
  struct Pending {
    int left = 0;
    std::optional<Result<storage::Bytes>> image;
    std::vector<Result<storage::Bytes>> files;
  };
  static bool Later(const Item& a, const Item& b) { return a.k > b.k; }
  enum class Waited { kFetch, kDecode, kCollate };

  Result<std::optional<Batch>> NextIncludingEmpty();
  bool NextReady() const;
  Waited Blocking() const;
  // Waits (under mu_) until NextReady() or `deadline`, attributing the
  // wait to the stage it is for; false on timeout.
  bool WaitReadyLocked(std::unique_lock<std::mutex>& lock,
                       std::optional<std::chrono::steady_clock::time_point> deadline);
  template <typename F>
  void Guard(const char* what, F&& f);
  void Fail(Status st);
  int64_t BatchCount(int64_t b) const;
  std::unique_ptr<Slot> NewSlot(int64_t b);
  void SpawnDecoderLocked(int id);
  void SetQueueCapacitiesLocked();
  void ConsumerArrivedLocked(int64_t now);

  void FetchLoop();
  void ReadAhead();
  // part: -1 for the image, else the field whose file this is.
  // decoded: sample k is in the decoded cache, and nothing was read.
  void OnFetched(int64_t k, int part, Result<storage::Bytes> bytes, int64_t t_issue,
                 bool decoded = false);
  // Decodes the sample's fields into slot->fields[.][j]; the first error.
  // `source` is the image's size as decoded (a mask must match it).
  void PrefetchPages(int64_t k, uint64_t index);
  uint64_t prefetched_window_ = UINT64_MAX;  // FetchLoop only
  Status CheckRecord(const Item& item, int64_t index) const;
  Status DecodeFields(const Item& item, int64_t index, Slot& slot, int64_t j,
                      const SourceInfo& source, decode::Decoder& decoder,
                      transform::Scratch& scratch);
  void DecodeLoop(int id);
  // Runs LoaderOptions::map on the sample just decoded into `dst`.
  Status MapSample(Slot& slot, int64_t j, int64_t k, int64_t index, void* dst);
  // With LoaderOptions::batch_map: collates complete batches in order and
  // runs the hook on each, ahead of the consumer (thread "stoker-map").
  void MapLoop();
  Result<std::optional<Batch>> Collate(std::unique_ptr<Slot> slot);

  const Config c_;
  LoaderMeters& m_;
  obs::TraceRecorder* const trace_;
  const size_t sample_bytes_;
  const int64_t max_in_flight_;
  std::mutex join_mu_;
  std::vector<std::thread> threads_;  // guarded by join_mu_ once launched
  std::stop_source stop_source_;      // asks storage reads in flight to give up

  mutable std::mutex mu_;
  std::condition_variable cv_fetch_, cv_decode_, cv_consumer_;
  bool stop_ = false;
  std::optional<Status> fatal_;
  int64_t next_deliver_ = 0;
  int64_t taken_ = 0;
  int64_t in_flight_ = 0;
  std::map<int64_t, std::unique_ptr<Slot>> slots_;
  std::vector<Item> fetched_;  // min-heap on k
  std::map<int64_t, Pending> pending_;  // samples with field files, by k
  // batch_map: batches collated and mapped, by number, and the next to map.
  std::map<int64_t, Result<std::optional<Batch>>> mapped_;
  int64_t next_map_ = 0;
  std::vector<size_t> file_fields_;     // dataset fields read from files
  int decode_target_ = 0;
  int prefetch_ = 1;  // under mu_
  std::vector<bool> decoder_running_;  // by decoder id
  // When the consumer last left Next() or Wait() (0: it is inside one).
  std::atomic<int64_t> consumer_left_ns_{0};
  int64_t fetch_tid_ = 0;          // the fetch thread's, in the trace
  bool meters_settled_ = false;  // under mu_: queue lengths taken back once stopped
};

}  // namespace stoker::pipeline
