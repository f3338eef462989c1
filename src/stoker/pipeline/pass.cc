#include "stoker/pipeline/pass.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <limits>

#include "stoker/base/logging.h"
#include "stoker/base/thread_name.h"
#include "stoker/pipeline/sample.h"

namespace stoker::pipeline {

LoaderMeters::LoaderMeters(std::shared_ptr<obs::Registry> reg)
    : registry(std::move(reg)),
      plan(registry->Stage("plan")),
      fetch(registry->Stage("fetch")),
      decode(registry->Stage("decode")),
      collate(registry->Stage("collate")),
      deliver(registry->Stage("deliver")),
      in_flight(registry->Queue("in_flight")),
      fetched(registry->Queue("fetched")),
      assembling(registry->Queue("assembling")),
      complete(registry->Queue("complete")),
      fetch_latency(registry->Latency("fetch.latency")),
      delivered(registry->Count("samples_delivered")),
      skipped(registry->Count("samples_skipped")),
      batches(registry->Count("batches_delivered")),
      stall_ns(registry->Seconds("stall_s")),
      wait_fetch_ns(registry->Seconds("wait.fetch_s")),
      wait_decode_ns(registry->Seconds("wait.decode_s")),
      wait_collate_ns(registry->Seconds("wait.collate_s")),
      wait_consumer_ns(registry->Seconds("wait.consumer_s")),
      consumer_ns(registry->Seconds("consumer_s")) {}

namespace {
constexpr size_t kMaxLoggedSkips = 100;
}  // namespace

Pass::Pass(Config c)
    : c_(std::move(c)),
      m_(*c_.meters),
      trace_(c_.trace.get()),
      sample_bytes_(SampleImageBytes(c_.options.transform)),
      max_in_flight_(c_.options.max_in_flight > 0
                         ? c_.options.max_in_flight
                         : std::numeric_limits<int64_t>::max()) {
  prefetch_ = std::max(1, c_.prefetch);
  // A shard dataset's fields come in the sample's record, with its image.
  for (size_t f = 0; f < c_.dataset->fields.size() && !c_.dataset->shards; ++f) {
    if (c_.dataset->fields[f].file) file_fields_.push_back(f);
  }
}

void Pass::Launch() {
  auto self = shared_from_this();
  std::lock_guard<std::mutex> join_lock(join_mu_);
  threads_.emplace_back([self] {
    SetThreadName("stoker-fetch");
    if (self->trace_) self->trace_->NameThread("stoker-fetch");
    self->Guard("fetch", [&] { self->FetchLoop(); });
  });
  std::lock_guard<std::mutex> lock(mu_);
  decode_target_ = std::max(1, c_.threads);
  m_.decode.SetParallelism(decode_target_);
  m_.fetch.SetParallelism(c_.options.max_in_flight > 0 ? static_cast<int>(c_.options.max_in_flight)
                                                       : 0);
  m_.in_flight.SetCapacity(c_.options.max_in_flight);
  SetQueueCapacitiesLocked();
  for (int i = 0; i < decode_target_; ++i) SpawnDecoderLocked(i);
  if (c_.options.batch_map) {
    threads_.emplace_back([self] {
      SetThreadName("stoker-map");
      if (self->trace_) self->trace_->NameThread("stoker-map");
      self->Guard("map", [&] { self->MapLoop(); });
    });
  }
}

// Under mu_ and join_mu_.
void Pass::SpawnDecoderLocked(int id) {
  if (static_cast<size_t>(id) >= decoder_running_.size()) decoder_running_.resize(id + 1, false);
  if (decoder_running_[id]) return;
  decoder_running_[id] = true;
  auto self = shared_from_this();
  threads_.emplace_back([self, id] {
    SetThreadName("stoker-decode");
    if (self->trace_) self->trace_->NameThread("stoker-decode-" + std::to_string(id));
    self->Guard("decode", [&] { self->DecodeLoop(id); });
  });
}

void Pass::SetDecodeThreads(int n) {
  n = std::max(1, n);
  std::lock_guard<std::mutex> join_lock(join_mu_);
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_) return;
  decode_target_ = n;
  m_.decode.SetParallelism(n);
  for (int i = 0; i < n; ++i) SpawnDecoderLocked(i);
  cv_decode_.notify_all();  // those above the target exit
}

void Pass::SetPrefetchBatches(int n) {
  n = std::max(1, n);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ || n == prefetch_) return;
    prefetch_ = n;
    SetQueueCapacitiesLocked();
  }
  cv_fetch_.notify_all();
}

// Under mu_: the queues' capacities, as the meters report them, from prefetch_.
void Pass::SetQueueCapacitiesLocked() {
  m_.fetched.SetCapacity(int64_t{prefetch_} * c_.options.batch_size);
  m_.assembling.SetCapacity(prefetch_);
  m_.complete.SetCapacity(prefetch_);
}

void Pass::Stop() {
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
  // Batches mapped and never delivered (with the one the map thread may
  // have finished after stop_ was set): what batch_map left in them may
  // hold them (a Python result holding the batch's arrays), so it is let
  // go here, once the map thread is joined, outside the lock (letting go
  // of a Python object takes the GIL).
  std::map<int64_t, Result<std::optional<Batch>>> undelivered;
  {
    std::lock_guard<std::mutex> lock(mu_);
    undelivered.swap(mapped_);
  }
  for (auto& [b, r] : undelivered) {
    if (r.ok() && r->has_value()) (*r)->set_user_data(nullptr);
  }
  undelivered.clear();
  // What the stopped pass still held leaves the queues' occupancy. Reads
  // that come back later find stop_ set and change nothing.
  std::lock_guard<std::mutex> lock(mu_);
  if (meters_settled_) return;
  meters_settled_ = true;
  int64_t assembling = 0, complete = 0;
  for (const auto& [b, slot] : slots_) (slot->remaining > 0 ? assembling : complete) += 1;
  const int64_t now = obs::NowNs();
  if (in_flight_) m_.in_flight.Change(-in_flight_, now);
  if (!fetched_.empty()) m_.fetched.Change(-static_cast<int64_t>(fetched_.size()), now);
  if (assembling) m_.assembling.Change(-assembling, now);
  if (complete) m_.complete.Change(-complete, now);
}

bool Pass::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return next_deliver_ >= c_.num_batches;
}

int64_t Pass::position() const {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t consumed = std::min(next_deliver_ * c_.options.batch_size, c_.total);
  return static_cast<int64_t>(c_.sampler.start() +
                              static_cast<uint64_t>(consumed) * c_.sampler.world_size());
}

// Under mu_: which stage the batch Next() waits for is waiting on.
Pass::Waited Pass::Blocking() const {
  auto it = slots_.find(next_deliver_);
  // Taken by the map thread: being collated and mapped.
  if (it == slots_.end() && c_.options.batch_map && next_map_ > next_deliver_) return Waited::kCollate;
  if (it == slots_.end() || it->second->unfetched > 0) return Waited::kFetch;
  if (it->second->remaining > 0) return Waited::kDecode;
  return Waited::kCollate;
}

bool Pass::WaitReadyLocked(std::unique_lock<std::mutex>& lock,
                           std::optional<std::chrono::steady_clock::time_point> deadline) {
  while (!NextReady()) {
    const Waited w = Blocking();
    const int64_t t0 = obs::NowNs();
    bool timed_out = false;
    if (deadline) {
      timed_out = cv_consumer_.wait_until(lock, *deadline) == std::cv_status::timeout;
    } else {
      cv_consumer_.wait(lock);
    }
    const int64_t dt = obs::NowNs() - t0;
    m_.stall_ns.Add(dt);
    (w == Waited::kFetch    ? m_.wait_fetch_ns
     : w == Waited::kDecode ? m_.wait_decode_ns
                            : m_.wait_collate_ns)
        .Add(dt);
    if (timed_out) return NextReady();
  }
  return true;
}

// The consumer's time away from the loader, between its calls: if the
// batch it comes back for is ready, the pipeline was waiting for it.
void Pass::ConsumerArrivedLocked(int64_t now) {
  const int64_t left = consumer_left_ns_.exchange(0, std::memory_order_relaxed);
  if (left == 0) return;
  m_.consumer_ns.Add(now - left);
  if (NextReady()) m_.wait_consumer_ns.Add(now - left);
}

bool Pass::Wait(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (next_deliver_ >= c_.num_batches || stop_) return true;
  ConsumerArrivedLocked(obs::NowNs());
  const bool ready = WaitReadyLocked(lock, std::chrono::steady_clock::now() + timeout);
  consumer_left_ns_.store(obs::NowNs(), std::memory_order_relaxed);
  return ready;
}

// A batch whose every sample was skipped is not handed out: an empty batch
// breaks a training step (BatchNorm, a mean over no samples), and nothing in
// it could be trained on. The next batch comes instead.
Result<std::optional<Batch>> Pass::Next() {
  while (true) {
    auto r = NextIncludingEmpty();
    if (!r.ok() || !r->has_value() || (*r)->size() > 0) return r;
  }
}

Result<std::optional<Batch>> Pass::NextIncludingEmpty() {
  std::unique_ptr<Slot> slot;
  const int64_t entered = obs::NowNs();
  {
    std::unique_lock<std::mutex> lock(mu_);
    // A pass that failed keeps saying why: a failure while the consumer was
    // away from Next() must not read as the end of the epoch.
    if (fatal_) return *fatal_;
    if (next_deliver_ >= c_.num_batches || stop_) return std::optional<Batch>();
    // The consumer was away since the last batch; if this one was ready
    // when it came back, the pipeline had been waiting for it.
    ConsumerArrivedLocked(entered);
    WaitReadyLocked(lock, std::nullopt);
    if (fatal_) return *fatal_;
    if (stop_ || next_deliver_ >= c_.num_batches) return std::optional<Batch>();
    if (c_.options.batch_map) {
      auto done = mapped_.find(next_deliver_);
      auto r = std::move(done->second);
      mapped_.erase(done);
      ++next_deliver_;
      m_.deliver.AddWaitInputNs(obs::NowNs() - entered);
      lock.unlock();
      cv_fetch_.notify_one();
      consumer_left_ns_.store(obs::NowNs(), std::memory_order_relaxed);
      return r;
    }
    auto it = slots_.find(next_deliver_);
    slot = std::move(it->second);
    slots_.erase(it);
    ++next_deliver_;
    m_.complete.Change(-1);
    m_.deliver.AddWaitInputNs(obs::NowNs() - entered);
  }
  cv_fetch_.notify_one();
  auto r = Collate(std::move(slot));
  consumer_left_ns_.store(obs::NowNs(), std::memory_order_relaxed);
  return r;
}

// Under mu_: the batch Next() waits for is complete, or the pass is over.
bool Pass::NextReady() const {
  if (stop_ || fatal_ || next_deliver_ >= c_.num_batches) return true;
  if (c_.options.batch_map) return mapped_.count(next_deliver_) > 0;
  auto it = slots_.find(next_deliver_);
  return it != slots_.end() && it->second->remaining == 0;
}

// Runs a worker loop; an unexpected exception stops the pass with an error
// instead of terminating the process.
template <typename F>
void Pass::Guard(const char* what, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    Fail(Internal(std::string(what) + " thread: " + e.what()));
  } catch (...) {
    Fail(Internal(std::string(what) + " thread: unknown exception"));
  }
}

void Pass::Fail(Status st) {
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

int64_t Pass::BatchCount(int64_t b) const {
  const int64_t bs = c_.options.batch_size;
  return std::min(bs, c_.total - b * bs);
}

void Pass::FetchLoop() {
  auto self = shared_from_this();
  const Planner planner(c_.sampler, c_.options.batch_size);
  fetch_tid_ = trace_ ? obs::TraceRecorder::ThreadId() : 0;
  for (int64_t k = 0; k < c_.total; ++k) {
    Planner::Work w;
    {
      obs::BusyTimer busy(m_.plan);
      w = planner.At(k);
      m_.plan.AddItems(1);
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Blocked on handing on: the batches ahead of delivery are all
      // started, or the requests allowed in flight are all out.
      if (!(stop_ || (w.batch < next_deliver_ + prefetch_ && in_flight_ < max_in_flight_))) {
        const int64_t t0 = obs::NowNs();
        cv_fetch_.wait(lock, [&] {
          return stop_ || (w.batch < next_deliver_ + prefetch_ && in_flight_ < max_in_flight_);
        });
        m_.fetch.AddWaitOutputNs(obs::NowNs() - t0);
      }
      if (stop_) return;
      auto& slot = slots_[w.batch];
      if (!slot) {
        slot = NewSlot(w.batch);
        m_.assembling.Change(1);
      }
      slot->buffers->indices[w.slot] = w.index;
      slot->buffers->labels[w.slot] = c_.dataset->label(static_cast<uint64_t>(w.index));
      ++in_flight_;
      m_.in_flight.Change(1);
    }
    obs::BusyTimer busy(m_.fetch);
    const int64_t t_issue = obs::NowNs();
    if (c_.decoded && c_.decoded->Contains(w.index)) {
      OnFetched(k, -1, storage::Bytes(), t_issue, /*decoded=*/true);
      continue;
    }
    if (const auto& shards = c_.dataset->shards) {
      // One range read of the sample's record: its image and its fields.
      storage::Storage::ReadCallback got = [self, k, t_issue](Result<storage::Bytes> r) {
        self->OnFetched(k, -1, std::move(r), t_issue);
      };
      if (c_.pages) {
        PrefetchPages(k, static_cast<uint64_t>(w.index));
        c_.pages->Read(static_cast<uint64_t>(w.index), std::move(got));
        continue;
      }
      const dataset::ShardEntry e = shards->entry(static_cast<uint64_t>(w.index));
      c_.storage->ReadRangeAsync(
          shards->shard_uris[e.shard],
          storage::ByteRange{static_cast<int64_t>(e.offset), static_cast<int64_t>(e.length)},
          std::move(got), stop_source_.get_token());
      continue;
    }
    const dataset::Sample& sample = c_.dataset->samples[w.index];
    // The field files this sample has; a missing one is reported when the
    // sample is decoded.
    std::vector<size_t> reads;
    for (size_t f : file_fields_) {
      if (sample.fields[f]) reads.push_back(f);
    }
    if (!file_fields_.empty()) {
      std::lock_guard<std::mutex> lock(mu_);
      Pending& p = pending_[k];
      p.left = 1 + static_cast<int>(reads.size());
      p.files.resize(c_.dataset->fields.size(), storage::Bytes());
      in_flight_ += static_cast<int64_t>(reads.size());
      if (!reads.empty()) m_.in_flight.Change(static_cast<int64_t>(reads.size()));
    }
    storage::Storage::ReadCallback done = [self, k, t_issue](Result<storage::Bytes> r) {
      self->OnFetched(k, -1, std::move(r), t_issue);
    };
    // The loader dropped any lookahead this pass may not use (StartLocked).
    if (!c_.lookahead || !c_.lookahead->Claim(c_.sampler.epoch(), k, w.index, done)) {
      c_.storage->ReadAsync(sample.uri, std::move(done), stop_source_.get_token());
    }
    for (size_t f : reads) {
      c_.storage->ReadAsync(
          *sample.fields[f],
          [self, k, f, t_issue](Result<storage::Bytes> r) {
            self->OnFetched(k, static_cast<int>(f), std::move(r), t_issue);
          },
          stop_source_.get_token());
    }
  }
  ReadAhead();
}

// Page reads ahead of the order (remote shards): in the chunk order, the
// pages of the next window as soon as the order enters a window (its own
// pages too, at the start of a pass); in storage order, the next pages.
void Pass::PrefetchPages(int64_t k, uint64_t index) {
  PageReader& pages = *c_.pages;
  if (const sampler::ChunkOrder* order = c_.sampler.chunk_order()) {
    const uint64_t g = c_.sampler.GlobalPosition(static_cast<uint64_t>(k)) % order->size();
    const uint64_t w = order->WindowAt(g);
    const uint64_t window = order->window();
    const uint64_t target = w + LeadWindows(static_cast<uint32_t>(window));
    const uint64_t from = k == 0 || prefetched_window_ == UINT64_MAX ? w : prefetched_window_ + 1;
    for (uint64_t j = from; j <= target && j < order->num_windows(); ++j) {
      for (uint64_t q = j * window; q < (j + 1) * window && q < order->num_pages(); ++q) {
        pages.Prefetch(order->PageAt(q));
      }
    }
    if (from <= target) prefetched_window_ = target;
    return;
  }
  const uint64_t page = pages.PageOf(index);
  for (uint64_t p = page + 1; p <= page + kPagesAhead; ++p) pages.Prefetch(p);
}

// Every read of this pass is issued: start the next epoch's first reads
// (remote samples only; local reads are fast enough when asked for).
void Pass::ReadAhead() {
  if (c_.pages && c_.options.lookahead) {
    // Remote shards: the pages the next epoch starts with (the pass over
    // it begins without a round trip, as loose files' lookahead does).
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
    }
    sampler::Sampler next = c_.sampler;
    next.SetEpoch(c_.sampler.epoch() + 1, 0);
    if (const sampler::ChunkOrder* order = next.chunk_order()) {
      // Its first window (held beside the one in use; the next pass asks
      // for the windows after it as it starts).
      for (uint64_t q = 0; q < order->window() && q < order->num_pages(); ++q) {
        c_.pages->Prefetch(order->PageAt(q));
      }
    } else if (next.per_rank() > 0) {
      const uint64_t first = c_.pages->PageOf(next.IndexAt(next.GlobalPosition(0)));
      for (uint64_t p = first; p < first + kPagesAhead; ++p) c_.pages->Prefetch(p);
    }
    return;
  }
  if (!c_.lookahead || c_.lookahead_count <= 0 || c_.dataset->shards) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
  }
  sampler::Sampler next = c_.sampler;
  next.SetEpoch(c_.sampler.epoch() + 1, 0);
  const Planner planner(next, c_.options.batch_size);
  const int64_t n = c_.lookahead_count;
  std::vector<int64_t> indices(static_cast<size_t>(n));
  std::vector<std::string> uris(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    const int64_t index = planner.At(k).index;
    const std::string& uri = c_.dataset->samples[index].uri;
    indices[k] = index;
    if (!storage::IsLocal(uri)) uris[k] = uri;
  }
  c_.lookahead->Begin(next.epoch(), std::move(indices), std::move(uris));
}

std::unique_ptr<Pass::Slot> Pass::NewSlot(int64_t b) {
  auto slot = std::make_unique<Slot>();
  const int64_t n = BatchCount(b);
  auto st = std::make_unique<Batch::Buffers>();
  st->pool = c_.pool;
  st->n = n;
  const auto shape = transform::ComposeOutputShape(c_.options.transform);  // Open validated it
  st->channels = shape->channels;
  st->height = shape->height;
  st->width = shape->width;
  st->dtype = shape->is_float ? DType::kFloat32 : DType::kUInt8;
  st->labels.assign(n, 0);
  st->indices.assign(n, 0);
  st->epoch = c_.sampler.epoch();
  st->batch_number = b;
  slot->buffers = std::move(st);
  slot->unfetched = n;
  slot->remaining = n;
  slot->errors.resize(n);
  slot->fields.assign(c_.dataset->fields.size(), std::vector<FieldValue>(static_cast<size_t>(n)));
  if (c_.options.map) slot->user.resize(static_cast<size_t>(n));
  return slot;
}

void Pass::OnFetched(int64_t k, int part, Result<storage::Bytes> bytes, int64_t t_issue,
                     bool decoded) {
  if (!bytes.ok() && bytes.status().code() == StatusCode::kUnavailable) {
    // The storage, not this sample, failed (no answer for io_timeout):
    // skipping would skip the rest of the dataset one deadline at a time.
    Fail(bytes.status());
    return;
  }
  const int64_t n_bytes = bytes.ok() ? static_cast<int64_t>(bytes->size()) : 0;
  const int64_t t_done = obs::NowNs();
  bool wake_consumer = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    --in_flight_;
    m_.in_flight.Change(-1, t_done);
    if (!decoded) m_.fetch_latency.AddNs(t_done - t_issue);
    // Items count samples; bytes count every file read.
    if (bytes.ok()) m_.fetch.AddItems(part < 0 ? 1 : 0, n_bytes);
    Item item{k, std::move(bytes), {}, decoded};
    if (!file_fields_.empty()) {
      auto p = pending_.find(k);
      if (part < 0) {
        p->second.image = std::move(item.bytes);
      } else {
        p->second.files[part] = std::move(item.bytes);
      }
      if (--p->second.left > 0) {
        cv_fetch_.notify_one();  // a request slot is free
        return;
      }
      item = Item{k, std::move(*p->second.image), std::move(p->second.files)};
      pending_.erase(p);
    }
    const int64_t b = k / c_.options.batch_size;
    auto it = slots_.find(b);
    // The batch the consumer waits for has all its bytes: its wait is now
    // for decoding.
    if (it != slots_.end() && --it->second->unfetched == 0 && b == next_deliver_) {
      wake_consumer = true;
    }
    fetched_.push_back(std::move(item));
    std::push_heap(fetched_.begin(), fetched_.end(), Later);
    m_.fetched.Change(1);
  }
  if (trace_) {
    trace_->Async("fetch", fetch_tid_, t_issue, t_done, c_.sampler.epoch(), k,
                  c_.sampler.IndexAt(c_.sampler.GlobalPosition(static_cast<uint64_t>(k))),
                  n_bytes);
  }
  cv_decode_.notify_one();
  cv_fetch_.notify_one();  // a request slot is free
  if (wake_consumer) cv_consumer_.notify_all();
}

void Pass::DecodeLoop(int id) {
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
      auto can_go = [&] {
        return stop_ || id >= decode_target_ || !fetched_.empty() || taken_ == c_.total;
      };
      if (!can_go()) {
        const int64_t t0 = obs::NowNs();
        cv_decode_.wait(lock, can_go);
        m_.decode.AddWaitInputNs(obs::NowNs() - t0);
      }
      if (stop_ || (fetched_.empty() && taken_ == c_.total)) return;
      if (id >= decode_target_) {
        decoder_running_[id] = false;
        return;
      }
      std::pop_heap(fetched_.begin(), fetched_.end(), Later);
      item.emplace(std::move(fetched_.back()));
      fetched_.pop_back();
      m_.fetched.Change(-1);
      last = ++taken_ == c_.total;
      slot = slots_.at(item->k / bs).get();  // erased only once this sample is done
      // The image buffer is taken when decoding reaches the batch, not when
      // fetching does: batches only fetched ahead hold no pixel memory.
      if (!slot->buffers->images) slot->buffers->images = c_.pool->Get();
    }
    if (last) cv_decode_.notify_all();  // let idle decoders exit
    const int64_t cpu0 = obs::kMetersOn ? obs::ThreadCpuNs() : 0;
    const int64_t wall0 = trace_ ? obs::NowNs() : 0;
    const int64_t j = item->k - (item->k / bs) * bs;
    const int64_t index = slot->buffers->indices[j];
    Status st;
    if (!item->bytes.ok()) {
      st = item->bytes.status();
    } else if (!slot->buffers->images) {
      st = ResourceExhausted("out of memory for a batch buffer of " +
                             std::to_string(c_.pool->buffer_bytes()) + " bytes");
    } else if (item->decoded) {
      // Kept entries are never evicted: the copy cannot miss.
      uint8_t* dst = slot->buffers->images.get() + static_cast<size_t>(j) * sample_bytes_;
      if (!c_.decoded->CopyTo(index, dst)) st = Internal("a decoded-cache entry went missing");
    } else if (!(st = CheckRecord(*item, index)).ok()) {
      st = st.WithContext(c_.dataset->SampleName(static_cast<uint64_t>(index)));
    } else {
      uint8_t* dst = slot->buffers->images.get() + static_cast<size_t>(j) * sample_bytes_;
      SourceInfo source;
      std::span<const uint8_t> image(item->bytes->data(), item->bytes->size());
      if (c_.dataset->shards) image = c_.dataset->shards->Image(image, static_cast<uint64_t>(index));
      try {
        st = ProcessSample(image, t, c_.options.seed, c_.sampler.epoch(),
                           c_.sampler.GlobalPosition(static_cast<uint64_t>(item->k)), decoder,
                           scratch, dst,
                           decode::RowIndexRef{c_.row_index.get(), static_cast<size_t>(index)},
                           &source);
      } catch (const std::exception& e) {
        st = Internal(std::string("while processing: ") + e.what());
      }
      if (st.ok() && !c_.dataset->fields.empty()) {
        try {
          st = DecodeFields(*item, index, *slot, j, source, decoder, scratch);
        } catch (const std::exception& e) {
          st = Internal(std::string("while decoding fields: ") + e.what());
        }
      }
      if (st.ok() && c_.options.map) st = MapSample(*slot, j, item->k, index, dst);
      if (st.ok() && c_.decoded) c_.decoded->Keep(index, dst);
      if (!st.ok()) st = st.WithContext(c_.dataset->SampleName(static_cast<uint64_t>(index)));
    }
    // Give the encoded bytes back before waiting again.
    if (item->bytes.ok() && !item->decoded) {
      if (c_.pages) {
        c_.pages->Recycle(std::move(item->bytes).value());
      } else {
        c_.storage->Recycle(std::move(item->bytes).value());
      }
    }
    for (auto& f : item->files) {
      if (f.ok() && f->capacity() > 0) c_.storage->Recycle(std::move(f).value());
    }
    if (obs::kMetersOn) m_.decode.AddBusyNs(obs::ThreadCpuNs() - cpu0);
    if (st.ok()) m_.decode.AddItems(1, static_cast<int64_t>(sample_bytes_));
    if (trace_) trace_->Complete("decode", wall0, obs::NowNs(), c_.sampler.epoch(), item->k, index);
    item.reset();
    bool complete;
    {
      std::lock_guard<std::mutex> lock(mu_);
      slot->errors[j] = std::move(st);
      complete = --slot->remaining == 0;
      if (complete) {
        m_.assembling.Change(-1);
        m_.complete.Change(1);
      }
    }
    if (complete) cv_consumer_.notify_all();
  }
}

// A shard record's length and checksum against its index entry (nothing to
// check for loose files).
Status Pass::CheckRecord(const Item& item, int64_t index) const {
  if (!c_.dataset->shards) return Status::Ok();
  return c_.dataset->shards->CheckRecord({item.bytes->data(), item.bytes->size()},
                                         static_cast<uint64_t>(index));
}

Status Pass::DecodeFields(const Item& item, int64_t index, Slot& slot, int64_t j,
                          const SourceInfo& source, decode::Decoder& decoder,
                          transform::Scratch& scratch) {
  const auto& shards = c_.dataset->shards;
  const dataset::Sample* sample = shards ? nullptr : &c_.dataset->samples[index];
  static const std::optional<std::string> kInRecord = std::string();
  static const std::optional<std::string> kNone;
  for (size_t f = 0; f < c_.dataset->fields.size(); ++f) {
    const dataset::Field& field = c_.dataset->fields[f];
    std::optional<dataset::FieldRange> range;
    if (shards) range = shards->field_range(static_cast<uint64_t>(index), shards->field_map[f]);
    const bool key = shards && shards->field_map[f] == dataset::Shards::kKeyField;
    std::optional<std::string> key_value;
    if (key) key_value = std::string(shards->key(static_cast<uint64_t>(index)));
    const std::optional<std::string>& value = key      ? key_value
                                              : shards ? (range ? kInRecord : kNone)
                                                       : sample->fields[f];
    const std::string what = "field '" + field.name + "'";
    if (!value) {
      return NotFound(what + " is missing" +
                      (shards       ? " (the converted sample has none)"
                       : field.file ? " (no file of that name beside the sample)"
                                    : " (no value on its manifest line)"));
    }
    std::span<const uint8_t> file;
    if (key) {
      // The key is the value itself (text), not bytes of the record.
    } else if (shards) {
      file = std::span<const uint8_t>(item.bytes->data() + range->offset, range->length);
    } else if (field.file) {
      const auto& bytes = item.files[f];
      if (!bytes.ok()) return Status(bytes.status().code(), what + ": " + bytes.status().message());
      file = std::span<const uint8_t>(bytes->data(), bytes->size());
    }
    FieldValue& out = slot.fields[f][static_cast<size_t>(j)];
    Status st;
    if (field.kind == FieldSpec::Kind::kMask) {
      // The image's geometry at this sample's (seed, epoch, position).
      const auto shape = transform::ComposeOutputShape(c_.options.transform);
      out.array.dtype = DType::kUInt8;
      out.array.shape = {1, shape->height, shape->width};
      out.array.data.resize(MaskBytes(c_.options.transform));
      st = ProcessMask(file, c_.options.transform, c_.options.seed, c_.sampler.epoch(),
                       c_.sampler.GlobalPosition(static_cast<uint64_t>(item.k)), source.width,
                       source.height, decoder, scratch, out.array.data.data());
    } else {
      st = DecodeField(field, *value, file, out);
    }
    if (!st.ok()) {
      return Status(st.code(), what + (field.file && !shards ? " (" + *value + ")" : std::string()) + ": " +
                                   st.message());
    }
  }
  return Status::Ok();
}

Status Pass::MapSample(Slot& slot, int64_t j, int64_t k, int64_t index, void* dst) {
  const auto& b = *slot.buffers;
  SampleView v;
  v.image = dst;
  v.dtype = b.dtype;
  v.channels = b.channels;
  v.height = b.height;
  v.width = b.width;
  v.label = b.labels[j];
  v.index = static_cast<int64_t>(c_.dataset->source(static_cast<uint64_t>(index)));
  v.epoch = c_.sampler.epoch();
  v.position = c_.sampler.GlobalPosition(static_cast<uint64_t>(k));
  for (size_t f = 0; f < c_.dataset->fields.size(); ++f) {
    const FieldValue& fv = slot.fields[f][static_cast<size_t>(j)];
    SampleField sf;
    sf.name = &c_.dataset->fields[f].name;
    sf.kind = c_.dataset->fields[f].kind;
    sf.int_value = fv.i;
    sf.float_value = fv.d;
    sf.bytes = fv.s;
    sf.array = &fv.array;
    v.fields.push_back(sf);
  }
  Status st;
  try {
    st = c_.options.map(v);
  } catch (const std::exception& e) {
    st = Internal(std::string("map: ") + e.what());
  }
  if (!st.ok()) return st;
  slot.buffers->labels[j] = v.label;
  slot.user[static_cast<size_t>(j)] = std::move(v.user);
  return Status::Ok();
}

void Pass::MapLoop() {
  while (true) {
    std::unique_ptr<Slot> slot;
    int64_t b = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto ready = [&] {
        if (stop_ || next_map_ >= c_.num_batches) return true;
        auto it = slots_.find(next_map_);
        return it != slots_.end() && it->second->remaining == 0;
      };
      if (!ready()) {
        const int64_t t0 = obs::NowNs();
        cv_consumer_.wait(lock, ready);
        m_.collate.AddWaitInputNs(obs::NowNs() - t0);
      }
      if (stop_ || next_map_ >= c_.num_batches) return;
      b = next_map_++;
      auto it = slots_.find(b);
      slot = std::move(it->second);
      slots_.erase(it);
      m_.complete.Change(-1);
    }
    auto r = Collate(std::move(slot));
    if (r.ok() && r->has_value() && (*r)->size() > 0) {
      const int64_t wall0 = trace_ ? obs::NowNs() : 0;
      Status st;
      try {
        st = c_.options.batch_map(**r);
      } catch (const std::exception& e) {
        st = Internal(std::string("batch_map: ") + e.what());
      }
      if (!st.ok()) {
        st = st.WithContext("batch " + std::to_string(b) + " of epoch " +
                            std::to_string(c_.sampler.epoch()));
        if (c_.options.on_error == OnError::kRaise) {
          r = st;
        } else {
          // Skipped like its samples would be: counted, logged, and an
          // empty batch in its place (Next() passes over it).
          const int64_t n = (*r)->size();
          m_.skipped.Add(n);
          m_.delivered.Add(-n);  // Collate counted them
          m_.batches.Add(-1);
          {
            std::lock_guard<std::mutex> lock(m_.mu);
            m_.errors_by_kind[StatusCodeName(st.code())] += n;
          }
          LogWarning("skipped " + st.message());
          r = std::optional<Batch>(Batch(std::make_shared<Batch::Buffers>()));
        }
      }
      if (trace_) trace_->Complete("batch_map", wall0, obs::NowNs(), c_.sampler.epoch(), b, -1);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      mapped_.emplace(b, std::move(r));  // even once stopped: Stop() clears it
    }
    cv_consumer_.notify_all();
  }
}

// Collate: drops (kSkip) or reports (kRaise) failed samples, then hands the
// batch out.
Result<std::optional<Batch>> Pass::Collate(std::unique_ptr<Slot> slot) {
  obs::BusyTimer busy(m_.collate);
  const int64_t wall0 = trace_ ? obs::NowNs() : 0;
  auto& st = *slot->buffers;
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
        for (auto& column : slot->fields) column[kept] = std::move(column[j]);
        if (!slot->user.empty()) slot->user[kept] = std::move(slot->user[j]);
      }
      ++kept;
      continue;
    }
    m_.skipped.Add(1);
    std::lock_guard<std::mutex> lock(m_.mu);
    ++m_.errors_by_kind[StatusCodeName(e.code())];
    if (!first_error) first_error = e;
    if (c_.options.on_error == OnError::kSkip && m_.logged.size() < kMaxLoggedSkips &&
        m_.logged.insert(st.indices[j]).second) {
      LogWarning("skipped " + e.message() +
                 (m_.logged.size() == kMaxLoggedSkips
                      ? " (further skipped samples are only counted in stats())"
                      : ""));
    }
  }
  if (trace_) {
    trace_->Complete("collate", wall0, obs::NowNs(), st.epoch, st.batch_number, -1);
  }
  if (first_error && c_.options.on_error == OnError::kRaise) return *first_error;
  st.n = kept;
  st.labels.resize(kept);
  st.indices.resize(kept);
  // batch["index"]: the position in the source's listing.
  if (c_.dataset->shards) {
    for (auto& i : st.indices) i = static_cast<int64_t>(c_.dataset->source(static_cast<uint64_t>(i)));
  }
  if (!slot->user.empty()) {
    slot->user.resize(static_cast<size_t>(kept));
    st.sample_user = std::move(slot->user);
  }
  st.fields.clear();
  for (size_t f = 0; f < slot->fields.size(); ++f) {
    slot->fields[f].resize(static_cast<size_t>(kept));
    st.fields.push_back(CollateField(c_.dataset->fields[f], slot->fields[f]));
  }
  m_.collate.AddItems(1, static_cast<int64_t>(kept * sample_bytes_));
  m_.delivered.Add(kept);
  m_.deliver.AddItems(kept > 0 ? 1 : 0);
  if (kept > 0) m_.batches.Add(1);
  return std::optional<Batch>(Batch(std::shared_ptr<Batch::Buffers>(std::move(slot->buffers))));
}

}  // namespace stoker::pipeline
