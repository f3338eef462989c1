// The Loader: list once, then per pass over an epoch run a fetch thread and a
// pool of decode threads that fill batch buffers ahead of the consumer.
//
//   fetch thread ──ReadAsync──► storage ──bytes──► ready heap (lowest position
//   first) ──► decode threads ──pixels──► batch slot ──► Next() (in order)
//
// The fetch thread runs at most `prefetch_batches` batches ahead of the
// consumer, which bounds memory. Decoders take the lowest pending position
// first so the batch the consumer waits for completes first.
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <set>
#include <stop_token>
#include <thread>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "stoker/base/cpu_time.h"
#include "stoker/base/logging.h"
#include "stoker/base/thread_name.h"
#include "stoker/dataset/dataset.h"
#include "stoker/loader.h"
#include "stoker/pipeline/batch_storage.h"
#include "stoker/pipeline/lookahead.h"
#include "stoker/pipeline/sample.h"
#include "stoker/sampler/sampler.h"
#include "stoker/storage/storage.h"

namespace stoker {

// ---- Batch -----------------------------------------------------------------

Batch::Batch(std::shared_ptr<Storage> storage) : storage_(std::move(storage)) {}
int64_t Batch::size() const { return storage_ ? storage_->n : 0; }
DType Batch::dtype() const { return storage_->dtype; }
std::vector<int64_t> Batch::image_shape() const {
  return {storage_->n, 3, storage_->size, storage_->size};
}
void* Batch::images_data() const { return storage_->images.get(); }
const int64_t* Batch::labels_data() const { return storage_->labels.data(); }
const int64_t* Batch::indices_data() const { return storage_->indices.data(); }
int64_t Batch::epoch() const { return storage_->epoch; }
int64_t Batch::batch_number() const { return storage_->batch_number; }
std::shared_ptr<void> Batch::keep_alive() const { return storage_; }

namespace pipeline {
namespace {

// Keeps `p` for the rest of the process, on purpose; LeakSanitizer is told
// so, and still checks everything else.
template <typename T>
void LeakOnPurpose(T* p) {
#if defined(__SANITIZE_ADDRESS__)
  __lsan_ignore_object(p);
#else
  (void)p;
#endif
}

int AvailableCores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

// Adds seconds to an atomic nanosecond counter.
void AddSeconds(std::atomic<int64_t>& ns, double s) {
  ns.fetch_add(static_cast<int64_t>(s * 1e9), std::memory_order_relaxed);
}
double Seconds(const std::atomic<int64_t>& ns) {
  return static_cast<double>(ns.load(std::memory_order_relaxed)) * 1e-9;
}

struct StageCounters {
  std::atomic<int64_t> items{0}, bytes{0}, busy_ns{0}, idle_ns{0};
  StageStats Snapshot(const char* name) const {
    StageStats s;
    s.name = name;
    s.items = items.load(std::memory_order_relaxed);
    s.bytes = bytes.load(std::memory_order_relaxed);
    s.busy_cpu_s = Seconds(busy_ns);
    s.idle_s = Seconds(idle_ns);
    return s;
  }
};

// Counters that outlive individual passes.
struct Counters {
  std::atomic<int64_t> delivered{0}, skipped{0}, batches{0}, stall_ns{0};
  StageCounters fetch, decode;
  std::mutex mu;
  std::map<std::string, int64_t> errors_by_kind;
  std::set<int64_t> logged;  // dataset indices already logged as skipped
};

constexpr size_t kMaxLoggedSkips = 100;

// Everything one pass over an epoch needs. Shared with storage callbacks,
// which may fire after the pass was stopped.
class Run : public std::enable_shared_from_this<Run> {
 public:
  struct Config {
    LoaderOptions options;
    std::shared_ptr<const format::Dataset> dataset;
    sampler::Sampler sampler;  // set to this pass's epoch
    std::shared_ptr<storage::Storage> storage;
    std::shared_ptr<BufferPool> pool;
    std::shared_ptr<Counters> counters;
    int64_t num_batches;
    int64_t total;  // samples this rank takes in this pass
    int threads;
    // Reads of the next epoch's first positions, issued once this pass has
    // issued all of its own (null: none), and how many positions to read.
    std::shared_ptr<Lookahead> lookahead;
    int64_t lookahead_count = 0;
    // Where JPEG MCU rows start, by dataset index (null: off).
    std::shared_ptr<decode::JpegRowIndex> row_index;
  };

  explicit Run(Config c) : c_(std::move(c)), sample_bytes_(SampleImageBytes(c_.options.transform)) {}

  void Launch() {
    auto self = shared_from_this();
    threads_.emplace_back([self] {
      SetThreadName("stoker-fetch");
      self->Guard("fetch", [&] { self->FetchLoop(); });
    });
    for (int i = 0; i < c_.threads; ++i) {
      threads_.emplace_back([self] {
        SetThreadName("stoker-decode");
        self->Guard("decode", [&] { self->DecodeLoop(); });
      });
    }
  }

  // Any thread; returns once the pass's threads are joined. A fetch thread
  // waiting on storage is woken through the stop token.
  void Stop() {
    if (finished()) {
      // Every batch was delivered, so every read was issued and the fetch
      // thread is at most starting the next epoch's lookahead (which only
      // queues reads): let it finish rather than cut it short, so that the
      // next pass finds it whatever the timing.
      std::lock_guard<std::mutex> join_lock(join_mu_);
      if (!threads_.empty() && threads_.front().joinable()) threads_.front().join();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    stop_source_.request_stop();
    cv_fetch_.notify_all();
    cv_decode_.notify_all();
    cv_consumer_.notify_all();
    std::lock_guard<std::mutex> join_lock(join_mu_);  // two stoppers never join one thread
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
    threads_.clear();
  }

  bool finished() const {
    std::lock_guard<std::mutex> lock(mu_);
    return next_deliver_ >= c_.num_batches;
  }

  int64_t epoch() const { return c_.sampler.epoch(); }

  // Global position after the last delivered batch.
  int64_t position() const {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t consumed = std::min(next_deliver_ * c_.options.batch_size, c_.total);
    return static_cast<int64_t>(c_.sampler.start() + static_cast<uint64_t>(consumed) *
                                                         c_.sampler.world_size());
  }

  // True when Next() would return without waiting (or, when the batch that
  // is ready had every sample skipped, wait only for the one after it).
  bool Wait(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    if (next_deliver_ >= c_.num_batches || stop_) return true;
    const double t0 = WallSeconds();
    const bool ready = cv_consumer_.wait_for(lock, timeout, [&] { return NextReady(); });
    AddSeconds(c_.counters->stall_ns, WallSeconds() - t0);
    return ready;
  }

  // A batch whose every sample was skipped is not handed out: an empty
  // batch breaks a training step (BatchNorm, a mean over no samples), and
  // nothing in it could be trained on. The next batch comes instead.
  Result<std::optional<Batch>> Next() {
    while (true) {
      auto r = NextIncludingEmpty();
      if (!r.ok() || !r->has_value() || (*r)->size() > 0) return r;
    }
  }

 private:
  Result<std::optional<Batch>> NextIncludingEmpty() {
    std::unique_ptr<Slot> slot;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // A pass that failed keeps saying why: a failure while the consumer
      // was away from Next() must not read as the end of the epoch.
      if (fatal_) return *fatal_;
      if (next_deliver_ >= c_.num_batches || stop_) return std::optional<Batch>();
      const double t0 = WallSeconds();
      cv_consumer_.wait(lock, [&] { return NextReady(); });
      AddSeconds(c_.counters->stall_ns, WallSeconds() - t0);
      if (fatal_) return *fatal_;
      if (stop_ || next_deliver_ >= c_.num_batches) return std::optional<Batch>();
      auto it = slots_.find(next_deliver_);
      slot = std::move(it->second);
      slots_.erase(it);
      ++next_deliver_;
    }
    cv_fetch_.notify_one();
    return Finish(std::move(slot));
  }

  struct Slot {
    std::unique_ptr<Batch::Storage> storage;
    int64_t remaining = 0;
    std::vector<Status> errors;  // per sample; ok unless it failed
  };
  struct Item {
    int64_t k;
    Result<storage::Bytes> bytes;
  };
  static bool Later(const Item& a, const Item& b) { return a.k > b.k; }

  // Under mu_: the batch Next() waits for is complete, or the pass is over.
  bool NextReady() const {
    if (stop_ || fatal_ || next_deliver_ >= c_.num_batches) return true;
    auto it = slots_.find(next_deliver_);
    return it != slots_.end() && it->second->remaining == 0;
  }

  // Runs a worker loop; an unexpected exception stops the pass with an error
  // instead of terminating the process.
  template <typename F>
  void Guard(const char* what, F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      Fail(Internal(std::string(what) + " thread: " + e.what()));
    } catch (...) {
      Fail(Internal(std::string(what) + " thread: unknown exception"));
    }
  }

  void Fail(Status st) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!fatal_) fatal_ = std::move(st);
      stop_ = true;
    }
    stop_source_.request_stop();
    cv_fetch_.notify_all();
    cv_decode_.notify_all();
    cv_consumer_.notify_all();
  }

  int64_t BatchCount(int64_t b) const {
    const int64_t bs = c_.options.batch_size;
    return std::min(bs, c_.total - b * bs);
  }

  void FetchLoop() {
    const int64_t bs = c_.options.batch_size;
    auto self = shared_from_this();
    for (int64_t k = 0; k < c_.total; ++k) {
      const int64_t b = k / bs;
      const uint64_t g = c_.sampler.GlobalPosition(static_cast<uint64_t>(k));
      const int64_t index = static_cast<int64_t>(c_.sampler.IndexAt(g));
      {
        std::unique_lock<std::mutex> lock(mu_);
        const double t0 = WallSeconds();
        cv_fetch_.wait(lock, [&] { return stop_ || b < next_deliver_ + c_.options.prefetch_batches; });
        AddSeconds(c_.counters->fetch.idle_ns, WallSeconds() - t0);
        if (stop_) return;
        auto& slot = slots_[b];
        if (!slot) slot = NewSlot(b);
        const int64_t j = k - b * bs;
        slot->storage->indices[j] = index;
        slot->storage->labels[j] = c_.dataset->samples[index].label;
      }
      const double cpu0 = ThreadCpuSeconds();
      storage::Storage::ReadCallback done = [self, k](Result<storage::Bytes> r) {
        self->OnFetched(k, std::move(r));
      };
      // The loader dropped any lookahead this pass may not use (StartLocked).
      if (!c_.lookahead || !c_.lookahead->Claim(c_.sampler.epoch(), k, index, done)) {
        c_.storage->ReadAsync(c_.dataset->samples[index].uri, std::move(done),
                              stop_source_.get_token());
      }
      AddSeconds(c_.counters->fetch.busy_ns, ThreadCpuSeconds() - cpu0);
    }
    ReadAhead();
  }

  // Every read of this pass is issued: start the next epoch's first reads
  // (remote samples only; local reads are fast enough when asked for).
  void ReadAhead() {
    if (!c_.lookahead || c_.lookahead_count <= 0) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
    }
    sampler::Sampler next = c_.sampler;
    next.SetEpoch(c_.sampler.epoch() + 1, 0);
    const int64_t n = c_.lookahead_count;
    std::vector<int64_t> indices(static_cast<size_t>(n));
    std::vector<std::string> uris(static_cast<size_t>(n));
    for (int64_t k = 0; k < n; ++k) {
      const auto index = static_cast<int64_t>(next.IndexAt(next.GlobalPosition(static_cast<uint64_t>(k))));
      const std::string& uri = c_.dataset->samples[index].uri;
      indices[k] = index;
      if (!storage::IsLocal(uri)) uris[k] = uri;
    }
    c_.lookahead->Begin(next.epoch(), std::move(indices), std::move(uris));
  }

  std::unique_ptr<Slot> NewSlot(int64_t b) {
    auto slot = std::make_unique<Slot>();
    const int64_t n = BatchCount(b);
    auto st = std::make_unique<Batch::Storage>();
    st->pool = c_.pool;
    st->n = n;
    st->size = c_.options.transform.size;
    st->dtype = c_.options.transform.normalize ? DType::kFloat32 : DType::kUInt8;
    st->labels.assign(n, 0);
    st->indices.assign(n, 0);
    st->epoch = c_.sampler.epoch();
    st->batch_number = b;
    slot->storage = std::move(st);
    slot->remaining = n;
    slot->errors.resize(n);
    return slot;
  }

  void OnFetched(int64_t k, Result<storage::Bytes> bytes) {
    if (!bytes.ok() && bytes.status().code() == StatusCode::kUnavailable) {
      // The storage, not this sample, failed (no answer for io_timeout):
      // skipping would skip the rest of the dataset one deadline at a time.
      Fail(bytes.status());
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      if (bytes.ok()) {
        c_.counters->fetch.items.fetch_add(1, std::memory_order_relaxed);
        c_.counters->fetch.bytes.fetch_add(static_cast<int64_t>(bytes->size()),
                                           std::memory_order_relaxed);
      }
      ready_.push_back(Item{k, std::move(bytes)});
      std::push_heap(ready_.begin(), ready_.end(), Later);
    }
    cv_decode_.notify_one();
  }

  void DecodeLoop() {
    decode::Decoder decoder(decode::DecodeOptions{.max_pixels = c_.options.max_pixels,
                                                  .fast = c_.options.transform.fast_decode});
    transform::Scratch scratch;
    const int64_t bs = c_.options.batch_size;
    const auto& t = c_.options.transform;
    while (true) {
      std::optional<Item> item;
      Slot* slot = nullptr;
      bool last = false;
      {
        std::unique_lock<std::mutex> lock(mu_);
        const double t0 = WallSeconds();
        cv_decode_.wait(lock, [&] { return stop_ || !ready_.empty() || taken_ == c_.total; });
        AddSeconds(c_.counters->decode.idle_ns, WallSeconds() - t0);
        if (stop_ || (ready_.empty() && taken_ == c_.total)) return;
        std::pop_heap(ready_.begin(), ready_.end(), Later);
        item.emplace(std::move(ready_.back()));
        ready_.pop_back();
        last = ++taken_ == c_.total;
        slot = slots_.at(item->k / bs).get();  // erased only once this sample is done
        // The image buffer is taken when decoding reaches the batch, not when
        // fetching does: batches only fetched ahead hold no pixel memory.
        if (!slot->storage->images) slot->storage->images = c_.pool->Get();
      }
      if (last) cv_decode_.notify_all();  // let idle decoders exit
      const double cpu0 = ThreadCpuSeconds();
      const int64_t j = item->k - (item->k / bs) * bs;
      const int64_t index = slot->storage->indices[j];
      Status st;
      if (!item->bytes.ok()) {
        st = item->bytes.status();
      } else if (!slot->storage->images) {
        st = ResourceExhausted("out of memory for a batch buffer of " +
                               std::to_string(c_.pool->buffer_bytes()) + " bytes");
      } else {
        uint8_t* dst = slot->storage->images.get() + static_cast<size_t>(j) * sample_bytes_;
        try {
          st = ProcessSample(*item->bytes, t, c_.options.seed, c_.sampler.epoch(),
                             c_.sampler.GlobalPosition(static_cast<uint64_t>(item->k)), decoder,
                             scratch, dst,
                             decode::RowIndexRef{c_.row_index.get(), static_cast<size_t>(index)});
        } catch (const std::exception& e) {
          st = Internal(std::string("while processing: ") + e.what());
        }
        if (!st.ok()) st = st.WithContext(c_.dataset->samples[index].uri);
      }
      // Give the encoded bytes back before waiting again.
      if (item->bytes.ok()) c_.storage->Recycle(std::move(item->bytes).value());
      item.reset();
      AddSeconds(c_.counters->decode.busy_ns, ThreadCpuSeconds() - cpu0);
      if (st.ok()) {
        c_.counters->decode.items.fetch_add(1, std::memory_order_relaxed);
        c_.counters->decode.bytes.fetch_add(static_cast<int64_t>(sample_bytes_),
                                            std::memory_order_relaxed);
      }
      bool complete;
      {
        std::lock_guard<std::mutex> lock(mu_);
        slot->errors[j] = std::move(st);
        complete = --slot->remaining == 0;
      }
      if (complete) cv_consumer_.notify_all();
    }
  }

  // Drops (kSkip) or reports (kRaise) failed samples, then hands the batch out.
  Result<std::optional<Batch>> Finish(std::unique_ptr<Slot> slot) {
    auto& st = *slot->storage;
    Counters& counters = *c_.counters;
    int64_t kept = 0;
    std::optional<Status> first_error;
    for (int64_t j = 0; j < st.n; ++j) {
      const Status& e = slot->errors[j];
      if (e.ok()) {
        if (kept != j) {
          std::memmove(st.images.get() + kept * sample_bytes_, st.images.get() + j * sample_bytes_,
                       sample_bytes_);
          st.labels[kept] = st.labels[j];
          st.indices[kept] = st.indices[j];
        }
        ++kept;
        continue;
      }
      counters.skipped.fetch_add(1, std::memory_order_relaxed);
      std::lock_guard<std::mutex> lock(counters.mu);
      ++counters.errors_by_kind[StatusCodeName(e.code())];
      if (!first_error) first_error = e;
      if (c_.options.on_error == OnError::kSkip && counters.logged.size() < kMaxLoggedSkips &&
          counters.logged.insert(st.indices[j]).second) {
        LogWarning("skipped " + e.message() +
                   (counters.logged.size() == kMaxLoggedSkips
                        ? " (further skipped samples are only counted in stats())"
                        : ""));
      }
    }
    if (first_error && c_.options.on_error == OnError::kRaise) return *first_error;
    st.n = kept;
    st.labels.resize(kept);
    st.indices.resize(kept);
    counters.delivered.fetch_add(kept, std::memory_order_relaxed);
    if (kept > 0) counters.batches.fetch_add(1, std::memory_order_relaxed);
    return std::optional<Batch>(Batch(std::shared_ptr<Batch::Storage>(std::move(slot->storage))));
  }

  const Config c_;
  const size_t sample_bytes_;
  std::mutex join_mu_;
  std::vector<std::thread> threads_;  // guarded by join_mu_ once launched
  std::stop_source stop_source_;      // asks storage reads in flight to give up

  mutable std::mutex mu_;
  std::condition_variable cv_fetch_, cv_decode_, cv_consumer_;
  bool stop_ = false;
  std::optional<Status> fatal_;
  int64_t next_deliver_ = 0;
  int64_t taken_ = 0;
  std::map<int64_t, std::unique_ptr<Slot>> slots_;
  std::vector<Item> ready_;  // min-heap on k
};

class LoaderImpl final : public Loader {
 public:
  LoaderImpl(LoaderOptions options, std::shared_ptr<storage::Storage> storage,
             std::shared_ptr<const format::Dataset> dataset)
      : opt_(std::move(options)),
        storage_(std::move(storage)),
        dataset_(std::move(dataset)),
        sampler_(sampler::SamplerOptions{
            .num_samples = dataset_->samples.size(),
            .shuffle = opt_.shuffle,
            .seed = opt_.seed,
            .drop_last = opt_.drop_last,
            .rank = static_cast<uint64_t>(opt_.rank),
            .world_size = static_cast<uint64_t>(opt_.world_size)}),
        counters_(std::make_shared<Counters>()) {
    info_.num_samples = static_cast<int64_t>(dataset_->samples.size());
    info_.classes = dataset_->classes;
    threads_ = opt_.threads > 0 ? opt_.threads : AvailableCores();
    num_batches_ = BatchesFor(static_cast<int64_t>(sampler_.per_rank()));
    if (opt_.lookahead) {
      lookahead_ = std::make_shared<Lookahead>(storage_);
      // Enough to start the next pass's decoders while its own first reads
      // are in flight (one round trip); more would only be more reads wasted
      // after the last epoch. At most one pass from an epoch's start.
      lookahead_count_ = std::min<int64_t>(
          {int64_t{std::min(opt_.prefetch_batches, 2)} * opt_.batch_size,
           static_cast<int64_t>(sampler_.per_rank()), num_batches_ * opt_.batch_size});
    }
    if (opt_.jpeg_index) {
      row_index_ = std::make_shared<decode::JpegRowIndex>(
          dataset_->samples.size(),
          static_cast<size_t>(std::max<int64_t>(0, opt_.jpeg_index_max_bytes)));
    }
    pool_ = std::make_shared<BufferPool>(
        SampleImageBytes(opt_.transform) * static_cast<size_t>(opt_.batch_size),
        static_cast<size_t>(opt_.prefetch_batches) + 2);
  }

  ~LoaderImpl() override {
    if (Forked()) {
      // The pass's threads, and the storage's I/O thread, ran in the parent:
      // joining them here would wait forever, and their mutexes may be held
      // by threads that do not exist here. Leave them to the process's exit.
      LeakOnPurpose(new std::shared_ptr<Run>(std::move(run_)));
      LeakOnPurpose(new std::shared_ptr<storage::Storage>(std::move(storage_)));
      LeakOnPurpose(new std::shared_ptr<Lookahead>(std::move(lookahead_)));
      return;
    }
    Close();
  }

  int64_t num_batches() const override { return num_batches_; }
  int64_t num_samples() const override { return info_.num_samples; }
  const DatasetInfo& info() const override { return info_; }
  std::string sample_uri(int64_t index) const override { return dataset_->samples.at(index).uri; }
  int64_t sample_label(int64_t index) const override { return dataset_->samples.at(index).label; }

  void SetEpoch(int64_t epoch) override {
    if (Forked()) return;
    Stop();
    // A loaded state's position survives set_epoch(its epoch), the usual
    // first call of a resumed training loop.
    if (!(resume_pending_ && epoch == epoch_)) {
      resume_pending_ = false;
      resume_start_ = 0;
    }
    epoch_ = epoch;
    explicit_epoch_ = true;
  }
  int64_t epoch() const override { return epoch_; }

  void Start() override {
    if (Forked()) return;
    std::lock_guard<std::mutex> lock(run_mu_);
    StartLocked();
  }

  void StartLocked() {
    if (closed_) return;
    if (run_) {
      // Without set_epoch(), each completed pass moves on to the next epoch,
      // as a shuffling DataLoader gives a fresh order each pass.
      if (run_->finished() && !explicit_epoch_) ++epoch_;
      run_->Stop();
    }
    explicit_epoch_ = false;
    sampler_.SetEpoch(epoch_, resume_start_);
    // What was read ahead serves only a pass over that epoch from its start.
    if (lookahead_ && (lookahead_->epoch() != epoch_ || sampler_.start() != 0)) lookahead_->Drop();
    resume_pending_ = false;
    resume_start_ = 0;
    const auto per_rank = static_cast<int64_t>(sampler_.per_rank());
    const int64_t batches = BatchesFor(per_rank);
    run_ = std::make_shared<Run>(Run::Config{opt_, dataset_, sampler_, storage_, pool_, counters_,
                                             batches, std::min(per_rank, batches * opt_.batch_size),
                                             threads_, lookahead_, lookahead_count_, row_index_});
    run_->Launch();
  }

  LoaderState state() const override {
    LoaderState st;
    st.seed = opt_.seed;
    st.shuffle = opt_.shuffle;
    st.num_samples = info_.num_samples;
    const auto run = CurrentRun();
    if (run && !resume_pending_) {
      st.epoch = run->epoch();
      st.position = run->position();
      if (run->finished()) {
        // A finished pass: the next one is the following epoch.
        st.epoch += 1;
        st.position = 0;
      }
    } else {
      st.epoch = epoch_;
      st.position = static_cast<int64_t>(resume_start_);
    }
    return st;
  }

  Status LoadState(const LoaderState& st) override {
    if (st.version != LoaderState::kVersion) {
      return InvalidArgument("state has format version " + std::to_string(st.version) +
                             ", this stoker reads version " +
                             std::to_string(LoaderState::kVersion));
    }
    if (st.num_samples != info_.num_samples || st.seed != opt_.seed || st.shuffle != opt_.shuffle) {
      return InvalidArgument("state was saved for " + std::to_string(st.num_samples) +
                             " samples, seed " + std::to_string(st.seed) + ", shuffle " +
                             (st.shuffle ? "on" : "off") + "; this loader has " +
                             std::to_string(info_.num_samples) + " samples, seed " +
                             std::to_string(opt_.seed) + ", shuffle " +
                             (opt_.shuffle ? "on" : "off"));
    }
    if (st.epoch < 0 || st.position < 0) return InvalidArgument("state has a negative epoch or position");
    if (Forked()) return ForkedError();
    Stop();
    {
      std::lock_guard<std::mutex> lock(run_mu_);
      run_.reset();
    }
    epoch_ = st.epoch;
    resume_start_ = static_cast<uint64_t>(st.position);
    resume_pending_ = true;
    explicit_epoch_ = true;
    return Status::Ok();
  }

  Result<std::optional<Batch>> Next() override {
    if (Forked()) return ForkedError();
    std::shared_ptr<Run> run;
    {
      std::lock_guard<std::mutex> lock(run_mu_);
      if (closed_) return Cancelled("the loader was closed");
      if (!run_) StartLocked();
      run = run_;
    }
    // Waits without run_mu_, so Stop() from another thread can wake it.
    return run->Next();
  }

  bool WaitForNext(std::chrono::milliseconds timeout) override {
    if (Forked()) return true;
    std::shared_ptr<Run> run;
    {
      std::lock_guard<std::mutex> lock(run_mu_);
      if (closed_) return true;
      if (!run_) StartLocked();
      run = run_;
    }
    return run->Wait(timeout);
  }

  void Stop() override {
    if (Forked()) return;
    if (auto run = CurrentRun()) run->Stop();
  }

  void Close() override {
    if (Forked()) return;
    {
      std::lock_guard<std::mutex> lock(run_mu_);
      closed_ = true;
    }
    Stop();
    if (lookahead_) lookahead_->Drop();
    // Requests still in flight for the stopped pass end now, so the
    // storage's I/O thread does not go on retrying them for a loader that
    // is gone (a pending request's callback holds the pass, which holds the
    // storage: without this, nothing would free it before io_timeout).
    storage_->Shutdown();
  }

  LoaderStats stats() const override {
    LoaderStats s;
    const Counters& c = *counters_;
    s.samples_delivered = c.delivered.load();
    s.samples_skipped = c.skipped.load();
    s.batches_delivered = c.batches.load();
    auto sc = storage_->counters();
    s.bytes_read = sc.bytes_read;
    s.requests = sc.requests;
    s.retries = sc.retries;
    s.timeouts = sc.timeouts;
    s.stall_s = Seconds(c.stall_ns);
    if (lookahead_) {
      s.lookahead_reads = lookahead_->issued();
      s.lookahead_used = lookahead_->used();
    }
    if (row_index_) {
      s.jpeg_index_jumps = row_index_->jumps();
      s.jpeg_index_crops = row_index_->crops();
      s.jpeg_index_bytes = static_cast<int64_t>(row_index_->bytes_used());
    }
    {
      std::lock_guard<std::mutex> lock(counters_->mu);
      s.errors_by_kind = c.errors_by_kind;
    }
    s.stages.push_back(c.fetch.Snapshot("fetch"));
    s.stages.push_back(c.decode.Snapshot("decode"));
    return s;
  }

 private:
  const LoaderOptions opt_;
  std::shared_ptr<storage::Storage> storage_;
  std::shared_ptr<const format::Dataset> dataset_;
  sampler::Sampler sampler_;
  std::shared_ptr<Counters> counters_;
  std::shared_ptr<BufferPool> pool_;
  DatasetInfo info_;
  int threads_ = 1;
  std::shared_ptr<Lookahead> lookahead_;  // null when options.lookahead is off
  int64_t lookahead_count_ = 0;
  std::shared_ptr<decode::JpegRowIndex> row_index_;  // null when jpeg_index is off
  int64_t BatchesFor(int64_t samples) const {
    return opt_.drop_last ? samples / opt_.batch_size
                          : (samples + opt_.batch_size - 1) / opt_.batch_size;
  }

  // True in a child forked after this loader was opened (see loader.h).
  bool Forked() const { return ::getpid() != pid_; }
  Status ForkedError() const {
    return InvalidArgument("this Loader was opened in process " + std::to_string(pid_) +
                           " and this process (" + std::to_string(::getpid()) +
                           ") is a fork of it: its threads do not exist here; open a new "
                           "Loader in this process");
  }
  std::shared_ptr<Run> CurrentRun() const {
    std::lock_guard<std::mutex> lock(run_mu_);
    return run_;
  }

  const pid_t pid_ = ::getpid();
  int64_t num_batches_ = 0;  // of a whole epoch
  int64_t epoch_ = 0;
  bool explicit_epoch_ = false;
  uint64_t resume_start_ = 0;    // global position the next pass starts at
  bool resume_pending_ = false;  // a loaded state waits for its pass
  // run_ and closed_ are guarded by run_mu_, so that Stop() and Close() may
  // come from any thread; the other calls come from the consumer's thread.
  mutable std::mutex run_mu_;
  std::shared_ptr<Run> run_;
  bool closed_ = false;
};

Status Validate(const LoaderOptions& o) {
  if (o.uri.empty()) return InvalidArgument("uri is empty");
  if (o.batch_size <= 0) return InvalidArgument("batch_size must be positive");
  if (o.transform.size <= 0) return InvalidArgument("transform size must be positive");
  if (o.threads < 0) return InvalidArgument("threads must be >= 0 (0 = one per core)");
  if (o.prefetch_batches < 1) return InvalidArgument("prefetch_batches must be >= 1");
  if (o.world_size < 1) return InvalidArgument("world_size must be >= 1");
  if (o.rank < 0 || o.rank >= o.world_size) {
    return InvalidArgument("rank " + std::to_string(o.rank) + " is outside [0, world_size=" +
                           std::to_string(o.world_size) + ")");
  }
  const auto& t = o.transform;
  if (!(t.scale[0] > 0 && t.scale[0] <= t.scale[1] && t.scale[1] <= 1))
    return InvalidArgument("transform scale must satisfy 0 < min <= max <= 1");
  if (!(t.ratio[0] > 0 && t.ratio[0] <= t.ratio[1]))
    return InvalidArgument("transform ratio must satisfy 0 < min <= max");
  if (!(t.center_fraction > 0 && t.center_fraction <= 1))
    return InvalidArgument("center_fraction must be in (0, 1]");
  for (float s : t.std)
    if (!(s > 0)) return InvalidArgument("normalisation std must be positive");
  const IoOptions& io = o.io;
  if (!(io.connect_timeout_s >= 0) || !(io.read_timeout_s >= 0))
    return InvalidArgument("connect_timeout and read_timeout must be >= 0 seconds (0: no limit)");
  if (!(io.io_timeout_s > 0)) return InvalidArgument("io_timeout must be > 0 seconds");
  if (io.max_attempts < 0) return InvalidArgument("max_attempts must be >= 1 (0 or None: default)");
  return Status::Ok();
}

}  // namespace
}  // namespace pipeline

Result<std::unique_ptr<Loader>> Loader::Open(const LoaderOptions& options) {
  STOKER_RETURN_IF_ERROR(pipeline::Validate(options));
  auto storage =
      storage::OpenStorage(options.uri, {.endpoint_url = options.endpoint_url, .io = options.io});
  if (!storage.ok()) return storage.status();
  auto dataset = format::OpenDataset(options.uri, **storage);
  if (!dataset.ok()) return dataset.status();
  auto ds = std::make_shared<const format::Dataset>(std::move(*dataset));
  return std::unique_ptr<Loader>(
      std::make_unique<pipeline::LoaderImpl>(options, std::move(*storage), std::move(ds)));
}

}  // namespace stoker
