// The Loader: lists once, then runs one Pass (pass.h: plan -> fetch ->
// decode -> collate -> deliver) per iteration over an epoch, and keeps what
// outlives a pass: the epoch and resume position, the buffer pool, the
// lookahead, the JPEG index, and the metrics registry every stage records
// into.
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <stop_token>
#include <thread>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "stoker/base/thread_name.h"
#include "stoker/dataset/dataset.h"
#include "stoker/loader.h"
#include "stoker/obs/metrics.h"
#include "stoker/obs/trace.h"
#include "stoker/pipeline/autotune.h"
#include "stoker/pipeline/batch_storage.h"
#include "stoker/pipeline/decoded_cache.h"
#include "stoker/pipeline/lookahead.h"
#include "stoker/pipeline/memory_plan.h"
#include "stoker/pipeline/pass.h"
#include "stoker/pipeline/sample.h"
#include "stoker/profile.h"
#include "stoker/sampler/sampler.h"
#include "stoker/storage/cache/caching_storage.h"
#include "stoker/storage/storage.h"

namespace stoker {

// ---- Batch -----------------------------------------------------------------

Batch::Batch(std::shared_ptr<Buffers> buffers) : buffers_(std::move(buffers)) {}
int64_t Batch::size() const { return buffers_ ? buffers_->n : 0; }
DType Batch::dtype() const { return buffers_->dtype; }
std::vector<int64_t> Batch::image_shape() const {
  return {buffers_->n, buffers_->channels, buffers_->height, buffers_->width};
}
void* Batch::images_data() const { return buffers_->images.get(); }
const int64_t* Batch::labels_data() const { return buffers_->labels.data(); }
const int64_t* Batch::indices_data() const { return buffers_->indices.data(); }
int64_t Batch::epoch() const { return buffers_->epoch; }
int64_t Batch::batch_number() const { return buffers_->batch_number; }
const std::vector<std::shared_ptr<void>>& Batch::sample_user_data() const {
  static const std::vector<std::shared_ptr<void>> kNone;
  return buffers_ ? buffers_->sample_user : kNone;
}
std::shared_ptr<void> Batch::user_data() const { return buffers_ ? buffers_->user : nullptr; }
void Batch::set_user_data(std::shared_ptr<void> data) {
  if (buffers_) buffers_->user = std::move(data);
}
const std::vector<FieldColumn>& Batch::fields() const {
  static const std::vector<FieldColumn> kNone;
  return buffers_ ? buffers_->fields : kNone;
}
std::shared_ptr<void> Batch::keep_alive() const { return buffers_; }

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

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// The CPU packages' energy counters (RAPL), in joules summed over packages;
// -1 when none is readable (most VMs, or no permission).
double RaplJoules() {
  double total = -1;
  for (int pkg = 0; pkg < 16; ++pkg) {
    std::ifstream f("/sys/class/powercap/intel-rapl:" + std::to_string(pkg) + "/energy_uj");
    long long uj = 0;
    if (!(f >> uj)) {
      if (pkg == 0) return -1;
      break;
    }
    total = (total < 0 ? 0 : total) + static_cast<double>(uj) * 1e-6;
  }
  return total;
}

// The pages of a shard dataset for the chunk-aware order: runs of
// consecutive records of one shard, each at most page_bytes (a larger
// record is a page of its own).
std::shared_ptr<const std::vector<uint32_t>> ShardPages(const dataset::Shards& shards,
                                                        int64_t page_bytes) {
  auto pages = std::make_shared<std::vector<uint32_t>>();
  const uint64_t n = shards.size();
  uint32_t shard = 0, count = 0;
  uint64_t first = 0;  // the page's first byte in its shard
  for (uint64_t i = 0; i < n; ++i) {
    const dataset::ShardEntry e = shards.entry(i);
    // A page is records read together: consecutive ones (a filter's gaps
    // end one) of one shard, from the first one's offset to the last one's
    // end (a tar's records have headers and unread files between them).
    const bool gap = i > 0 && shards.entry_number(i) != shards.entry_number(i - 1) + 1;
    if (count > 0 &&
        (gap || e.shard != shard || e.offset + e.length - first > static_cast<uint64_t>(page_bytes))) {
      pages->push_back(count);
      count = 0;
    }
    if (count == 0) first = e.offset;
    shard = e.shard;
    ++count;
  }
  if (count > 0) pages->push_back(count);
  return pages;
}

sampler::SamplerOptions SamplerOptionsFor(const LoaderOptions& o, const dataset::Dataset& d) {
  sampler::SamplerOptions s{.num_samples = d.size(),
                            .shuffle = o.shuffle,
                            .seed = o.seed,
                            .drop_last = o.drop_last,
                            .rank = static_cast<uint64_t>(o.rank),
                            .world_size = static_cast<uint64_t>(o.world_size)};
  if (d.shards && o.shuffle && o.order != LoaderOptions::Order::kSample) {
    s.page_sizes = ShardPages(*d.shards, o.page_bytes);
    s.window_pages = static_cast<uint32_t>(std::max(0, o.window_pages));
  }
  return s;
}

class LoaderImpl final : public Loader {
 public:
  LoaderImpl(LoaderOptions options, std::shared_ptr<storage::Storage> storage,
             std::shared_ptr<const dataset::Dataset> dataset, MemoryPlan plan = {},
             TuneLimits tune = {.threads = false, .prefetch = false})
      : opt_(std::move(options)),
        tune_limits_(tune),
        storage_(std::move(storage)),
        dataset_(std::move(dataset)),
        sampler_(SamplerOptionsFor(opt_, *dataset_)),
        registry_(std::make_shared<obs::Registry>()),
        meters_(std::make_shared<LoaderMeters>(registry_)) {
    info_.num_samples = static_cast<int64_t>(dataset_->size());
    info_.classes = dataset_->classes;
    if (const auto& sh = dataset_->shards) {
      info_.shard_index_uri = sh->index_uri;
      info_.shard_index_bytes = static_cast<int64_t>(sh->index_bytes());
      info_.shard_format = sh->tar ? "webdataset" : "stoker";
      for (size_t k = 0; k < sh->shard_uris.size(); ++k) {
        info_.shards.push_back({sh->shard_uris[k], static_cast<int64_t>(sh->shard_table()[k].size),
                                static_cast<int64_t>(sh->shard_table()[k].samples)});
      }
      for (const auto& f : sh->all_fields()) {
        info_.shard_fields.emplace_back(f.name, dataset::FieldKindName(f.kind));
      }
      static constexpr const char* kFormats[] = {"none", "jpeg_restart", "jpeg", "png", "other"};
      for (uint64_t i = 0; i < sh->size(); ++i) {
        const auto f = static_cast<uint32_t>(sh->entry(i).image_format);
        ++info_.image_formats[kFormats[f < 5 ? f : 4]];
      }
    }
    threads_ = opt_.threads > 0 ? opt_.threads : std::max(1, tune_limits_.max_threads);
    prefetch_ = std::max(1, opt_.prefetch_batches);
    num_batches_ = BatchesFor(static_cast<int64_t>(sampler_.per_rank()));
    // (Lookahead reads whole objects: not for shard records.)
    if (opt_.lookahead && !dataset_->shards) {
      lookahead_ = std::make_shared<Lookahead>(storage_);
      // Enough to start the next pass's decoders while its own first reads
      // are in flight (one round trip); more would only be more reads wasted
      // after the last epoch. At most one pass from an epoch's start.
      lookahead_count_ = std::min<int64_t>(
          {int64_t{std::min(opt_.prefetch_batches, 2)} * opt_.batch_size,
           static_cast<int64_t>(sampler_.per_rank()), num_batches_ * opt_.batch_size});
    }
    // A remote shard dataset whose order reads pages in turn (the chunk
    // order, or no shuffle): one request a page. Held: the window in use and
    // those read ahead of it (Pass::PrefetchPages).
    if (dataset_->shards && !storage::IsLocal(opt_.uri) &&
        (!opt_.shuffle || sampler_.chunk_order() != nullptr)) {
      const uint32_t window = opt_.window_pages > 0 ? static_cast<uint32_t>(opt_.window_pages)
                                                    : sampler::kDefaultWindowPages;
      pages_ = std::make_shared<PageReader>(
          storage_, dataset_, ShardPages(*dataset_->shards, opt_.page_bytes),
          opt_.shuffle ? (1 + Pass::LeadWindows(window)) * size_t{window} : Pass::kPagesAhead + 2);
    }
    // Shard JPEGs carry their own row tables and restart markers.
    if (opt_.jpeg_index && !dataset_->shards) {
      row_index_ = std::make_shared<decode::JpegRowIndex>(
          dataset_->samples.size(),
          static_cast<size_t>(std::max<int64_t>(0, opt_.jpeg_index_max_bytes)));
    }
    if (opt_.cache.decoded_bytes > 0) {
      decoded_ = std::make_shared<DecodedCache>(SampleImageBytes(opt_.transform),
                                                opt_.cache.decoded_bytes);
    }
    pool_ = std::make_shared<BufferPool>(
        SampleImageBytes(opt_.transform) * static_cast<size_t>(opt_.batch_size),
        static_cast<size_t>(prefetch_.load()) + 2);
    if (opt_.trace) trace_ = std::make_shared<obs::TraceRecorder>();
    // Figures kept by the storage, the lookahead and the JPEG index.
    // Weak: a pass's pending reads keep the registry, and the storage must
    // not be kept by them through it.
    registry_->AddSource([weak = std::weak_ptr<storage::Storage>(storage_)](std::vector<Metric>& out) {
      const auto storage = weak.lock();
      const auto c = storage ? storage->counters() : storage::StorageCounters{};
      out.push_back({"bytes_read", static_cast<double>(c.bytes_read)});
      out.push_back({"requests", static_cast<double>(c.requests)});
      out.push_back({"retries", static_cast<double>(c.retries)});
      out.push_back({"timeouts", static_cast<double>(c.timeouts)});
      // Each request (remote: each attempt) from sending it to its outcome.
      out.push_back({"storage.in_flight", static_cast<double>(c.in_flight)});
      out.push_back({"storage.cancelled", static_cast<double>(c.cancelled)});
      out.push_back({"storage.latency_p50_s", static_cast<double>(c.latency_us.Percentile(0.5)) * 1e-6, false});
      out.push_back({"storage.latency_p90_s", static_cast<double>(c.latency_us.Percentile(0.9)) * 1e-6, false});
      out.push_back({"storage.latency_p99_s", static_cast<double>(c.latency_us.Percentile(0.99)) * 1e-6, false});
      out.push_back({"cache_hits", static_cast<double>(c.cache_hits)});
      out.push_back({"cache_misses", static_cast<double>(c.cache_misses)});
      out.push_back({"cache_memory_bytes", static_cast<double>(c.cache_memory_bytes)});
      out.push_back({"cache_disk_bytes", static_cast<double>(c.cache_disk_bytes)});
      out.push_back({"cache_corrupt", static_cast<double>(c.cache_corrupt)});
      out.push_back({"cache_not_kept", static_cast<double>(c.cache_not_kept)});
    });
    registry_->AddSource([d = decoded_](std::vector<Metric>& out) {
      out.push_back({"decoded_cache_hits", d ? static_cast<double>(d->hits()) : 0.0});
      out.push_back({"decoded_cache_samples", d ? static_cast<double>(d->samples()) : 0.0});
      out.push_back({"decoded_cache_bytes", d ? static_cast<double>(d->bytes()) : 0.0});
    });
    // The memory plan (docs/memory.md): what each pool may hold.
    registry_->AddSource([plan, pool = std::weak_ptr<BufferPool>(pool_)](std::vector<Metric>& out) {
      out.push_back({"memory.budget_bytes", static_cast<double>(plan.budget)});
      out.push_back({"memory.planned_bytes", static_cast<double>(plan.total())});
      out.push_back({"memory.batch_buffers", static_cast<double>(plan.batches)});
      out.push_back({"memory.reads_in_flight", static_cast<double>(plan.reads)});
      // The most bytes batch buffers held at once (prefetched, in assembly
      // or held by the consumer).
      const auto p = pool.lock();
      out.push_back({"memory.batch_buffers_peak_bytes",
                     p ? static_cast<double>(p->peak() * p->buffer_bytes()) : 0.0});
    });
    // What autotuning chose (docs/autotune.md); the settings in use either way.
    registry_->AddSource([this](std::vector<Metric>& out) {
      std::lock_guard<std::mutex> lock(tune_mu_);
      out.push_back({"autotune.threads", static_cast<double>(threads_.load())});
      out.push_back({"autotune.prefetch_batches", static_cast<double>(prefetch_.load())});
      out.push_back({"autotune.tuning_threads", tune_limits_.threads && !threads_fixed_ ? 1.0 : 0.0});
      out.push_back({"autotune.tuning_prefetch", tune_limits_.prefetch ? 1.0 : 0.0});
      out.push_back({"autotune.max_threads", static_cast<double>(tune_limits_.max_threads)});
      out.push_back({"autotune.max_prefetch_batches", static_cast<double>(tune_limits_.max_prefetch)});
      out.push_back({"autotune.predicted_images_per_s", tune_.predicted, false});
      out.push_back({"autotune.measured_images_per_s", tune_.measured, false});
      out.push_back({"autotune.decode_cpu_s_per_image", tune_.cpu_per_image, false});
      out.push_back({"autotune.windows", static_cast<double>(tune_.windows)});
      out.push_back({"autotune.changes", static_cast<double>(tune_.changes)});
      out.push_back({"autotune.reverted", static_cast<double>(tune_.reverted)});
      out.push_back({"autotune.stable_s", tune_.stable_s, false});
    });
    // Zero when off, so the figures are always there.
    registry_->AddSource([wla = std::weak_ptr<Lookahead>(lookahead_),
                          ri = row_index_, pages = pages_](std::vector<Metric>& out) {
      const auto la = wla.lock();
      out.push_back({"shard_pages_read", pages ? static_cast<double>(pages->pages_read()) : 0});
      out.push_back({"lookahead_reads", la ? static_cast<double>(la->issued()) : 0});
      out.push_back({"lookahead_used", la ? static_cast<double>(la->used()) : 0});
      out.push_back({"jpeg_index_jumps", ri ? static_cast<double>(ri->jumps()) : 0});
      out.push_back({"jpeg_index_crops", ri ? static_cast<double>(ri->crops()) : 0});
      out.push_back({"jpeg_index_bytes", ri ? static_cast<double>(ri->bytes_used()) : 0});
    });
  }

  ~LoaderImpl() override {
    if (Forked()) {
      // The pass's threads, and the storage's I/O thread, ran in the parent:
      // joining them here would wait forever, and their mutexes may be held
      // by threads that do not exist here. Leave them to the process's exit.
      LeakOnPurpose(new std::shared_ptr<Pass>(std::move(pass_)));
      LeakOnPurpose(new std::shared_ptr<storage::Storage>(std::move(storage_)));
      LeakOnPurpose(new std::shared_ptr<Lookahead>(std::move(lookahead_)));
      LeakOnPurpose(new std::jthread(std::move(tuner_)));
      return;
    }
    Close();
  }

  int64_t num_batches() const override { return num_batches_; }
  int64_t num_samples() const override { return info_.num_samples; }
  const DatasetInfo& info() const override { return info_; }
  std::string sample_uri(int64_t index) const override {
    if (index < 0 || static_cast<uint64_t>(index) >= dataset_->size()) {
      throw std::out_of_range("sample index " + std::to_string(index) + " out of range");
    }
    return dataset_->SampleName(static_cast<uint64_t>(index));
  }
  int64_t sample_label(int64_t index) const override {
    if (index < 0 || static_cast<uint64_t>(index) >= dataset_->size()) {
      throw std::out_of_range("sample index " + std::to_string(index) + " out of range");
    }
    return dataset_->label(static_cast<uint64_t>(index));
  }

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
    if (pass_) {
      // Without set_epoch(), each completed pass moves on to the next epoch,
      // as a shuffling DataLoader gives a fresh order each pass.
      if (pass_->finished() && !explicit_epoch_) ++epoch_;
      pass_->Stop();
    }
    if (window_start_wall_ < 0) {
      window_start_wall_ = static_cast<double>(obs::NowNs()) * 1e-9;
      window_start_cpu_ = ProcessCpuSeconds();
      window_start_rapl_ = RaplJoules();
    }
    explicit_epoch_ = false;
    sampler_.SetEpoch(epoch_, resume_start_);
    // What was read ahead serves only a pass over that epoch from its start.
    if (lookahead_ && (lookahead_->epoch() != epoch_ || sampler_.start() != 0)) lookahead_->Drop();
    resume_pending_ = false;
    resume_start_ = 0;
    const auto per_rank = static_cast<int64_t>(sampler_.per_rank());
    const int64_t batches = BatchesFor(per_rank);
    pass_ = std::make_shared<Pass>(Pass::Config{
        opt_, dataset_, sampler_, storage_, pool_, meters_, trace_, batches,
        std::min(per_rank, batches * opt_.batch_size), threads_.load(), prefetch_.load(),
        lookahead_, lookahead_count_, row_index_, pages_, decoded_});
    pass_->Launch();
    if ((tune_limits_.threads || tune_limits_.prefetch) && obs::kMetersOn) {
      std::lock_guard<std::mutex> lock(tuner_mu_);
      if (!tuner_.joinable()) tuner_ = std::jthread([this](std::stop_token st) { TuneLoop(st); });
    }
  }

  LoaderState state() const override {
    LoaderState st;
    st.seed = opt_.seed;
    st.shuffle = opt_.shuffle;
    st.num_samples = info_.num_samples;
    const auto run = CurrentPass();
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
      pass_.reset();
    }
    epoch_ = st.epoch;
    resume_start_ = static_cast<uint64_t>(st.position);
    resume_pending_ = true;
    explicit_epoch_ = true;
    return Status::Ok();
  }

  Result<std::optional<Batch>> Next() override {
    if (Forked()) return ForkedError();
    std::shared_ptr<Pass> run;
    {
      std::lock_guard<std::mutex> lock(run_mu_);
      if (closed_) return Cancelled("the loader was closed");
      if (!pass_) StartLocked();
      run = pass_;
    }
    // Waits without run_mu_, so Stop() from another thread can wake it.
    return run->Next();
  }

  bool WaitForNext(std::chrono::milliseconds timeout) override {
    if (Forked()) return true;
    std::shared_ptr<Pass> run;
    {
      std::lock_guard<std::mutex> lock(run_mu_);
      if (closed_) return true;
      if (!pass_) StartLocked();
      run = pass_;
    }
    return run->Wait(timeout);
  }

  void Stop() override {
    if (Forked()) return;
    StopTuner();
    if (auto run = CurrentPass()) run->Stop();
  }
  // The tuner runs while a pass does; its Autotuner outlives it.
  void StopTuner() {
    std::jthread t;
    {
      std::lock_guard<std::mutex> lock(tuner_mu_);
      t = std::move(tuner_);
    }
    // Joined without tuner_mu_: the tuner may be waiting for run_mu_,
    // held by a StartLocked() that waits for tuner_mu_.
    if (t.joinable()) {
      t.request_stop();
      t.join();
    }
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
    registry_->Snapshot(s);
    {
      std::lock_guard<std::mutex> lock(meters_->mu);
      s.errors_by_kind = meters_->errors_by_kind;
    }
    return s;
  }

  ProfileReport Profile() const override {
    ProfileInputs in;
    {
      std::lock_guard<std::mutex> lock(run_mu_);
      if (window_start_wall_ >= 0) {
        in.wall_s = static_cast<double>(obs::NowNs()) * 1e-9 - window_start_wall_;
        in.cpu_s = ProcessCpuSeconds() - window_start_cpu_;
        const double rapl = RaplJoules();
        if (window_start_rapl_ >= 0 && rapl >= window_start_rapl_) in.rapl_j = rapl - window_start_rapl_;
      }
    }
    in.cores = AvailableCores();
    in.batch_size = opt_.batch_size;
    in.max_in_flight = opt_.max_in_flight;
    ProfileReport r = MakeProfile(stats(), in);
    r.autotune = AutotuneSummary();
    return r;
  }

  std::string TraceJson() const override { return trace_ ? trace_->ToJson() : std::string(); }

  // An explicit count stops the tuning of threads; 0 hands them back to it.
  void SetThreads(int threads) override {
    if (Forked()) return;
    {
      std::lock_guard<std::mutex> lock(tune_mu_);
      threads_fixed_ = threads > 0;
      threads_ = threads > 0 ? threads : std::max(1, tune_limits_.max_threads);
    }
    if (auto run = CurrentPass()) run->SetDecodeThreads(threads_);
  }
  int threads() const override { return threads_; }

 private:
  // The tuner's figures, for stats() and the profile (under tune_mu_).
  struct TuneFigures {
    double predicted = 0, measured = 0, cpu_per_image = 0, stable_s = 0;
    int64_t windows = 0, changes = 0, reverted = 0;
    std::string reason;
  };
  // The loader's meters at one moment, for windows between two of them.
  struct TuneMark {
    int64_t t_ns = 0, images = 0, batches = 0, decoded = 0, latency_count = 0, latency_sum = 0;
    int64_t decode_busy_ns = 0, wait_fetch = 0, wait_decode = 0, wait_collate = 0,
            wait_consumer = 0, consumer = 0;
  };
  TuneMark Mark() const {
    TuneMark m;
    m.t_ns = obs::NowNs();
    m.images = meters_->delivered.value();
    m.batches = meters_->batches.value();
    const StageStats d = meters_->decode.Snapshot();
    m.decoded = d.items;
    m.decode_busy_ns = static_cast<int64_t>(d.busy_cpu_s * 1e9);
    const auto h = meters_->fetch_latency.Snapshot();
    m.latency_count = h.count;
    m.latency_sum = h.sum;
    m.wait_fetch = meters_->wait_fetch_ns.value();
    m.wait_decode = meters_->wait_decode_ns.value();
    m.wait_collate = meters_->wait_collate_ns.value();
    m.wait_consumer = meters_->wait_consumer_ns.value();
    m.consumer = meters_->consumer_ns.value();
    return m;
  }
  // Thread "stoker-tune": a window of the meters about every second (at
  // least kTuneMinBatches batches), fed to the Autotuner, whose settings
  // are applied to the pass in progress and kept for the next ones.
  static constexpr int64_t kTuneWindowNs = 1'000'000'000;
  static constexpr int64_t kTuneMaxWindowNs = 5'000'000'000;
  static constexpr int64_t kTuneMinBatches = 4;
  void TuneLoop(std::stop_token st) {
    SetThreadName("stoker-tune");
    // One tuner thread at a time uses the Autotuner (a stopped one may
    // still be finishing its last window when the next starts).
    std::lock_guard<std::mutex> tuner_lock(autotuner_mu_);
    if (!autotuner_) {
      autotuner_ = std::make_unique<Autotuner>(tune_limits_,
                                               TuneSettings{threads_.load(), prefetch_.load()});
    }
    Autotuner& tuner = *autotuner_;
    std::mutex sleep_mu;
    std::condition_variable_any sleep_cv;
    // Windows start at the first batch: filling the pipeline is not a rate.
    // A window goes on across passes that follow each other (the next
    // epoch), not across a pause (the consumer elsewhere).
    TuneMark& prev = tune_prev_;
    bool& started = tune_started_;
    if (obs::NowNs() - tune_stopped_ns_ > kTuneWindowNs / 2) started = false;
    while (!st.stop_requested()) {
      {
        std::unique_lock<std::mutex> lock(sleep_mu);
        sleep_cv.wait_for(lock, st, std::chrono::milliseconds(100), [] { return false; });
      }
      if (st.stop_requested()) break;
      const TuneMark cur = Mark();
      if (!started) {
        if (cur.batches > 0) {
          prev = cur;
          started = true;
        }
        continue;
      }
      const int64_t dt = cur.t_ns - prev.t_ns;
      const int64_t batches = cur.batches - prev.batches;
      if (dt < kTuneWindowNs || (batches < kTuneMinBatches && dt < kTuneMaxWindowNs)) continue;
      if (batches == 0) {  // the consumer is elsewhere (between epochs, evaluating)
        prev = cur;
        continue;
      }
      TuneWindow w;
      w.wall_s = static_cast<double>(dt) * 1e-9;
      w.images = cur.images - prev.images;
      w.batches = batches;
      w.decoded = cur.decoded - prev.decoded;
      w.decode_cpu_s = static_cast<double>(cur.decode_busy_ns - prev.decode_busy_ns) * 1e-9;
      w.wait_fetch_s = static_cast<double>(cur.wait_fetch - prev.wait_fetch) * 1e-9;
      w.wait_decode_s = static_cast<double>(cur.wait_decode - prev.wait_decode) * 1e-9;
      w.wait_collate_s = static_cast<double>(cur.wait_collate - prev.wait_collate) * 1e-9;
      w.wait_consumer_s = static_cast<double>(cur.wait_consumer - prev.wait_consumer) * 1e-9;
      w.consumer_s = static_cast<double>(cur.consumer - prev.consumer) * 1e-9;
      if (cur.latency_count > prev.latency_count) {
        w.fetch_latency_s = static_cast<double>(cur.latency_sum - prev.latency_sum) /
                            static_cast<double>(cur.latency_count - prev.latency_count) * 1e-9;
      }
      prev = cur;
      const TuneSettings before{threads_.load(), prefetch_.load()};
      {
        std::lock_guard<std::mutex> lock(tune_mu_);
        tuner.TuneThreads(tune_limits_.threads && !threads_fixed_);
      }
      tuner.Adopt(before);
      const TuneSettings next = tuner.Observe(w);
      bool set_threads = false;
      {
        std::lock_guard<std::mutex> lock(tune_mu_);
        tune_.predicted = tuner.predicted();
        tune_.measured = tuner.measured();
        tune_.cpu_per_image = tuner.cpu_per_image();
        tune_.windows = tuner.windows();
        tune_.changes = tuner.changes();
        tune_.reverted = tuner.reverted();
        if (!(next == before)) {
          tune_.reason = tuner.reason();
          stable_since_ns_ = cur.t_ns;
        }
        tune_.stable_s = static_cast<double>(cur.t_ns - stable_since_ns_) * 1e-9;
        // A count the user set meanwhile wins.
        set_threads = tune_limits_.threads && !threads_fixed_ && next.threads != before.threads;
        if (set_threads) threads_ = next.threads;
      }
      const bool set_prefetch = tune_limits_.prefetch && next.prefetch != before.prefetch;
      if (set_prefetch) {
        prefetch_ = next.prefetch;
        pool_->SetMaxBuffers(static_cast<size_t>(next.prefetch) + 2);
      }
      if (auto run = CurrentPass()) {
        if (set_threads) run->SetDecodeThreads(next.threads);
        if (set_prefetch) run->SetPrefetchBatches(next.prefetch);
      }
    }
    tune_stopped_ns_ = obs::NowNs();
  }
  std::string AutotuneSummary() const {
    if (!tune_limits_.threads && !tune_limits_.prefetch) return "";
    std::lock_guard<std::mutex> lock(tune_mu_);
    char buf[512];
    std::snprintf(buf, sizeof(buf),
                  "%d decode thread%s (%s, budget %d), %d batch%s ahead (%s, up to %d); "
                  "predicted %.0f images/s, measured %.0f; %lld change%s, %lld reverted",
                  threads_.load(), threads_.load() == 1 ? "" : "s",
                  tune_limits_.threads && !threads_fixed_ ? "tuned" : "given",
                  tune_limits_.max_threads, prefetch_.load(), prefetch_.load() == 1 ? "" : "es",
                  tune_limits_.prefetch ? "tuned" : "given", tune_limits_.max_prefetch,
                  tune_.predicted, tune_.measured, static_cast<long long>(tune_.changes),
                  tune_.changes == 1 ? "" : "s", static_cast<long long>(tune_.reverted));
    std::string s = buf;
    if (!tune_.reason.empty()) s += "; last change: " + tune_.reason;
    return s;
  }

  const LoaderOptions opt_;
  const TuneLimits tune_limits_;
  std::shared_ptr<storage::Storage> storage_;
  std::shared_ptr<const dataset::Dataset> dataset_;
  sampler::Sampler sampler_;
  std::shared_ptr<obs::Registry> registry_;
  std::shared_ptr<LoaderMeters> meters_;
  std::shared_ptr<obs::TraceRecorder> trace_;  // null unless options.trace
  // The profile's window: from the first pass's start.
  double window_start_wall_ = -1, window_start_cpu_ = 0, window_start_rapl_ = -1;
  std::shared_ptr<BufferPool> pool_;
  DatasetInfo info_;
  std::atomic<int> threads_{1};
  std::atomic<int> prefetch_{2};
  mutable std::mutex tune_mu_;
  bool threads_fixed_ = false;  // set_threads(n) since: not tuned (under tune_mu_)
  TuneFigures tune_;            // under tune_mu_
  int64_t stable_since_ns_ = obs::NowNs();
  std::mutex tuner_mu_;
  std::jthread tuner_;  // "stoker-tune" while a pass runs and anything is tuned
  std::mutex autotuner_mu_;
  std::unique_ptr<Autotuner> autotuner_;  // under autotuner_mu_, from the first pass
  TuneMark tune_prev_;                    // the window's start, under autotuner_mu_
  bool tune_started_ = false;             // under autotuner_mu_
  int64_t tune_stopped_ns_ = 0;           // under autotuner_mu_
  std::shared_ptr<Lookahead> lookahead_;  // null when options.lookahead is off
  int64_t lookahead_count_ = 0;
  std::shared_ptr<decode::JpegRowIndex> row_index_;  // null when jpeg_index is off
  std::shared_ptr<PageReader> pages_;  // remote shards read a page at a time; else null
  std::shared_ptr<DecodedCache> decoded_;  // null unless cache.decoded_bytes
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
  std::shared_ptr<Pass> CurrentPass() const {
    std::lock_guard<std::mutex> lock(run_mu_);
    return pass_;
  }

  const pid_t pid_ = ::getpid();
  int64_t num_batches_ = 0;  // of a whole epoch
  int64_t epoch_ = 0;
  bool explicit_epoch_ = false;
  uint64_t resume_start_ = 0;    // global position the next pass starts at
  bool resume_pending_ = false;  // a loaded state waits for its pass
  // pass_ and closed_ are guarded by run_mu_, so that Stop() and Close() may
  // come from any thread; the other calls come from the consumer's thread.
  mutable std::mutex run_mu_;
  std::shared_ptr<Pass> pass_;
  bool closed_ = false;
};

Status Validate(const LoaderOptions& o) {
  if (o.uri.empty()) return InvalidArgument("uri is empty");
  if (o.batch_size <= 0) return InvalidArgument("batch_size must be positive");
  if (o.transform.size <= 0) return InvalidArgument("transform size must be positive");
  if (o.threads < 0) return InvalidArgument("threads must be >= 0 (0: autotuned)");
  if (o.prefetch_batches < 0) return InvalidArgument("prefetch_batches must be >= 0 (0: autotuned)");
  if (o.cpu_budget < 0) return InvalidArgument("cpu_budget must be >= 0 (0: every core)");
  if (o.memory_budget < LoaderOptions::kNoMemoryBudget) {
    return InvalidArgument("memory_budget must be > 0 bytes, 0 (the default share) or none");
  }
  if (o.max_in_flight < 0) return InvalidArgument("max_in_flight must be >= 0 (0: no cap)");
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
  if (auto shape = transform::ComposeOutputShape(t); !shape.ok()) return shape.status();
  for (float s : t.std)
    if (!(s > 0)) return InvalidArgument("normalisation std must be positive");
  for (size_t f = 0; f < o.fields.size(); ++f) {
    const std::string& name = o.fields[f].name;
    if (name.empty()) return InvalidArgument("a field has an empty name");
    if (name == "image" || name == "label" || name == "index") {
      return InvalidArgument("field '" + name + "': every batch has it already; fields= names the "
                             "others (manifest columns, sibling files)");
    }
    for (size_t g = 0; g < f; ++g) {
      if (o.fields[g].name == name) return InvalidArgument("field '" + name + "' is named twice");
    }
  }
  const IoOptions& io = o.io;
  if (!(io.connect_timeout_s >= 0) || !(io.read_timeout_s >= 0))
    return InvalidArgument("connect_timeout and read_timeout must be >= 0 seconds (0: no limit)");
  if (!(io.io_timeout_s > 0)) return InvalidArgument("io_timeout must be > 0 seconds");
  if (io.max_attempts < 0) return InvalidArgument("max_attempts must be >= 1 (0 or None: default)");
  if (o.page_bytes <= 0) return InvalidArgument("page_bytes must be positive");
  if (o.window_pages < 0) return InvalidArgument("window_pages must be >= 0 (0: default)");
  if (o.cache.decoded_bytes < 0) return InvalidArgument("cache_decoded must be >= 0 bytes");
  if (o.cache.decoded_bytes > 0) {
    // Only what every epoch decodes the same way can be kept decoded.
    if (const std::string op = RandomTransformOp(o.transform); !op.empty()) {
      return InvalidArgument("cache_decoded keeps samples as the transform left them, so the "
                             "transform must be the same every epoch; " + op +
                             " is random (use it for validation: imagenet_val, Resize, "
                             "CenterCrop, Normalize)");
    }
    if (!o.fields.empty() || o.map) {
      return InvalidArgument("cache_decoded keeps images only: not with fields= or map=");
    }
  }
  return Status::Ok();
}

}  // namespace
}  // namespace pipeline

Result<std::unique_ptr<Loader>> Loader::Open(const LoaderOptions& options) {
  STOKER_RETURN_IF_ERROR(pipeline::Validate(options));
  auto storage =
      storage::OpenStorage(options.uri, {.endpoint_url = options.endpoint_url, .io = options.io});
  if (!storage.ok()) return storage.status();
  auto dataset = dataset::OpenDataset(options.uri, **storage, options.fields, options.where,
                                      options.label_field);
  if (!dataset.ok()) return dataset.status();
  if (options.order == LoaderOptions::Order::kChunk && !dataset->shards) {
    return InvalidArgument(options.uri + " is not a shard dataset: order='chunk' needs pages "
                           "(stoker convert writes them); loose files are shuffled per sample");
  }
  LoaderOptions o = options;
  // Autotuned settings (0) get their ranges: threads up to the CPU budget,
  // batches ahead up to what the memory plan holds (planned at the most,
  // lowered to fit the budget), starting at 2.
  const int cpu_budget = o.cpu_budget > 0 ? o.cpu_budget : pipeline::AvailableCores();
  const int threads = o.threads > 0 ? o.threads : cpu_budget;
  pipeline::TuneLimits tune{.threads = o.threads == 0,
                            .prefetch = o.prefetch_batches == 0,
                            .max_threads = cpu_budget,
                            .min_prefetch = 1,
                            .max_prefetch = 0,
                            .batch_size = o.batch_size};
  if (tune.prefetch) o.prefetch_batches = LoaderOptions::kMaxAutoPrefetch;
  const bool remote_pages = dataset->shards && !storage::IsLocal(o.uri) &&
                            (!o.shuffle || o.order != LoaderOptions::Order::kSample);
  auto plan = pipeline::PlanMemory(o, *dataset, threads, remote_pages);
  if (!plan.ok()) return plan.status();
  tune.max_prefetch = o.prefetch_batches;
  if (tune.prefetch) o.prefetch_batches = std::min(2, o.prefetch_batches);
  std::shared_ptr<storage::Storage> store = std::move(*storage);
  if (o.cache.memory_bytes > 0 || o.cache.disk_bytes > 0) {
    // After opening: only samples' reads are kept, not listings or indexes.
    auto cached = storage::cache::CachingStorage::Open(std::move(store), o.cache);
    if (!cached.ok()) return cached.status();
    store = std::move(*cached);
  }
  auto ds = std::make_shared<const dataset::Dataset>(std::move(*dataset));
  return std::unique_ptr<Loader>(
      std::make_unique<pipeline::LoaderImpl>(o, std::move(store), std::move(ds), *plan, tune));
}

}  // namespace stoker
