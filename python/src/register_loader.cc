#include <nanobind/ndarray.h>
#include <nanobind/stl/array.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <type_traits>
#include <vector>

#include "arrays.h"
#include "errors.h"
#include "register_transforms.h"
#include "stoker/convert.h"
#include "stoker/loader.h"

namespace nb = nanobind;

namespace stoker::python {
namespace {

// Hands `batch`'s buffers to Python without a copy: each array's owner
// capsule keeps the whole batch alive.
nb::capsule Owner(const Batch& batch) {
  return nb::capsule(new std::shared_ptr<void>(batch.keep_alive()), [](void* p) noexcept {
    delete static_cast<std::shared_ptr<void>*>(p);
  });
}

nb::dlpack::dtype ToDlpack(DType t) {
  using C = nb::dlpack::dtype_code;
  auto d = [](C code, int bits) {
    nb::dlpack::dtype r;
    r.code = static_cast<uint8_t>(code);
    r.bits = static_cast<uint8_t>(bits);
    r.lanes = 1;
    return r;
  };
  switch (t) {
    case DType::kUInt8: return d(C::UInt, 8);
    case DType::kInt8: return d(C::Int, 8);
    case DType::kBool: return d(C::Bool, 8);
    case DType::kInt16: return d(C::Int, 16);
    case DType::kUInt16: return d(C::UInt, 16);
    case DType::kFloat16: return d(C::Float, 16);
    case DType::kInt32: return d(C::Int, 32);
    case DType::kUInt32: return d(C::UInt, 32);
    case DType::kFloat32: return d(C::Float, 32);
    case DType::kInt64: return d(C::Int, 64);
    case DType::kUInt64: return d(C::UInt, 64);
    case DType::kFloat64: return d(C::Float, 64);
  }
  return d(C::UInt, 8);
}

// A field's array, sharing the batch's memory.
template <typename Framework>
nb::object ArrayToPython(const Array& a, const Batch& batch) {
  std::vector<size_t> shape(a.shape.begin(), a.shape.end());
  // A zero-sized array still needs a non-null, aligned pointer.
  alignas(16) static std::byte kEmpty[16];
  void* data = a.data.empty() ? static_cast<void*>(kEmpty) : const_cast<std::byte*>(a.data.data());
  return nb::cast(nb::ndarray<Framework>(data, shape.size(), shape.data(), Owner(batch), nullptr,
                                         ToDlpack(a.dtype)));
}

// The batch's fields (LoaderOptions::fields) by name: arrays (stacked, or
// one per sample), str (text, JSON) or bytes.
template <typename Framework>
nb::dict FieldsToPython(const Batch& batch) {
  nb::dict d;
  for (const FieldColumn& col : batch.fields()) {
    nb::object value;
    if (col.stacked) {
      value = ArrayToPython<Framework>(*col.stacked, batch);
    } else if (col.kind == FieldSpec::Kind::kNpy || col.kind == FieldSpec::Kind::kMask) {
      nb::list l;
      for (const Array& a : col.arrays) l.append(ArrayToPython<Framework>(a, batch));
      value = l;
    } else {
      nb::list l;
      for (const std::string& s : col.strings) {
        if (col.kind == FieldSpec::Kind::kBytes) {
          l.append(nb::bytes(s.data(), s.size()));
        } else {
          l.append(nb::str(s.data(), s.size()));
        }
      }
      value = l;
    }
    d[nb::str(col.name.data(), col.name.size())] = value;
  }
  return d;
}

FieldSpec::Kind ParseFieldKind(const std::string& name, const std::string& kind) {
  using K = FieldSpec::Kind;
  static const std::pair<const char*, K> kKinds[] = {
      {"auto", K::kAuto}, {"int", K::kInt},     {"float", K::kFloat}, {"text", K::kText},
      {"json", K::kJson}, {"bytes", K::kBytes}, {"npy", K::kNpy},     {"mask", K::kMask}};
  for (const auto& [n, k] : kKinds) {
    if (kind == n) return k;
  }
  throw nb::value_error(("field '" + name + "': kind must be one of auto, int, float, text, "
                         "json, bytes, npy, mask; got '" + kind + "'")
                            .c_str());
}

template <typename Framework>
nb::tuple BatchToArrays(const Batch& batch) {
  auto shape = batch.image_shape();
  size_t ishape[4] = {static_cast<size_t>(shape[0]), static_cast<size_t>(shape[1]),
                      static_cast<size_t>(shape[2]), static_cast<size_t>(shape[3])};
  size_t n[1] = {static_cast<size_t>(batch.size())};
  nb::object images;
  if (batch.dtype() == DType::kFloat32) {
    images = nb::cast(nb::ndarray<Framework, float>(static_cast<float*>(batch.images_data()), 4,
                                                    ishape, Owner(batch)));
  } else {
    images = nb::cast(nb::ndarray<Framework, uint8_t>(static_cast<uint8_t*>(batch.images_data()),
                                                      4, ishape, Owner(batch)));
  }
  auto labels = nb::cast(nb::ndarray<Framework, int64_t>(
      const_cast<int64_t*>(batch.labels_data()), 1, n, Owner(batch)));
  auto indices = nb::cast(nb::ndarray<Framework, int64_t>(
      const_cast<int64_t*>(batch.indices_data()), 1, n, Owner(batch)));
  // What map= left per sample (dicts), or None.
  nb::object extras = nb::none();
  if (!batch.sample_user_data().empty()) {
    nb::list l;
    for (const auto& u : batch.sample_user_data()) {
      l.append(u ? *static_cast<nb::object*>(u.get()) : nb::none());
    }
    extras = l;
  }
  return nb::make_tuple(images, labels, indices, FieldsToPython<Framework>(batch), extras);
}

// Every figure of the loader's metrics registry, by name; stages and queues
// as lists of dicts and also by name. Nothing here lists the figures: a
// meter added to the registry appears in Python as it is.
nb::dict StatsToDict(const LoaderStats& s) {
  nb::dict d;
  for (const auto& m : s.metrics) {
    if (m.integral) {
      d[nb::str(m.name.c_str())] = static_cast<int64_t>(m.value);
    } else {
      d[nb::str(m.name.c_str())] = m.value;
    }
  }
  nb::dict errors;
  for (const auto& [k, v] : s.errors_by_kind) errors[nb::str(k.c_str())] = v;
  d["errors_by_kind"] = errors;
  nb::list stages;
  for (const auto& st : s.stages) {
    nb::dict sd;
    sd["name"] = st.name;
    sd["items"] = st.items;
    sd["bytes"] = st.bytes;
    sd["busy_cpu_s"] = st.busy_cpu_s;
    sd["wait_input_s"] = st.wait_input_s;
    sd["wait_output_s"] = st.wait_output_s;
    sd["parallelism"] = st.parallelism;
    stages.append(sd);
    d[nb::str(st.name.c_str())] = sd;
  }
  d["stages"] = stages;
  nb::list queues;
  for (const auto& q : s.queues) {
    nb::dict qd;
    qd["name"] = q.name;
    qd["capacity"] = q.capacity;
    qd["puts"] = q.puts;
    qd["gets"] = q.gets;
    qd["mean_occupancy"] = q.mean_occupancy;
    qd["empty_fraction"] = q.empty_fraction;
    queues.append(qd);
  }
  d["queues"] = queues;
  return d;
}

nb::dict ProfileToDict(const ProfileReport& r) {
  nb::dict d;
  d["wall_s"] = r.wall_s;
  d["images"] = r.images;
  d["batches"] = r.batches;
  d["images_per_s"] = r.images_per_s;
  d["cores"] = r.cores;
  d["decode_threads"] = r.decode_threads;
  d["max_in_flight"] = r.max_in_flight;
  d["autotune"] = r.autotune;
  nb::list stages;
  for (const auto& p : r.stages) {
    nb::dict sd;
    sd["name"] = p.name;
    sd["items"] = p.items;
    sd["busy_cpu_s"] = p.busy_cpu_s;
    sd["rate_per_core"] = p.rate_per_core;
    sd["utilisation"] = p.utilisation;
    sd["parallelism"] = p.parallelism;
    sd["wait_share"] = p.wait_share;
    stages.append(sd);
  }
  d["stages"] = stages;
  d["bottleneck"] = r.bottleneck;
  d["summary"] = r.summary;
  nb::dict whatif;
  whatif["one_more_decode_thread_images_per_s"] = r.whatif_one_more_decode_thread_images_per_s;
  whatif["no_stall_step_ms"] = r.no_stall_step_ms;
  d["whatif"] = whatif;
  nb::dict io;
  io["requests"] = r.io_requests;
  io["retries"] = r.io_retries;
  io["timeouts"] = r.io_timeouts;
  io["latency_p50_ms"] = r.io_latency_p50_ms;
  io["latency_p90_ms"] = r.io_latency_p90_ms;
  io["latency_p99_ms"] = r.io_latency_p99_ms;
  io["mean_in_flight"] = r.io_mean_in_flight;
  io["bytes_per_request"] = r.io_bytes_per_request;
  d["io"] = io;
  d["cpu_s"] = r.cpu_s;
  d["cpu_s_per_image"] = r.cpu_s_per_image;
  d["energy_j"] = r.energy_j;
  d["energy_j_per_image"] = r.energy_j_per_image;
  d["energy_source"] = r.energy_source;
  d["watts_per_core"] = r.watts_per_core;
  return d;
}

OnError ParseOnError(const std::string& s) {
  if (s == "skip") return OnError::kSkip;
  if (s == "raise") return OnError::kRaise;
  throw nb::value_error(("on_error must be 'skip' or 'raise', got '" + s + "'").c_str());
}

}  // namespace

// Shutdown, signals and fork (README: "Shutdown, signals and fork").
//
// - next() waits in slices of kSignalPoll with the GIL released and, between
//   slices, runs Python's signal handlers: Ctrl-C raises KeyboardInterrupt
//   within a slice even while the pipeline is stalled; the loader is stopped
//   (threads joined) first, and the next iteration starts the epoch afresh.
// - At interpreter exit an atexit hook (_shutdown, registered by the stoker
//   package) closes every live loader, so no stoker thread runs while the
//   interpreter and the C++ statics are torn down. A daemon thread that is
//   inside a stoker call then never takes the GIL again (it parks until the
//   process ends): re-taking it during finalisation would make CPython end
//   the thread with pthread_exit from inside a C++ destructor, which aborts.
// - A loader inherited through fork() (the child of a process that had one)
//   raises a clear error on use; stop()/close() do nothing and deleting it
//   frees nothing the parent's threads were using.
constexpr auto kSignalPoll = std::chrono::milliseconds(100);

std::atomic<bool> g_exiting{false};
std::thread::id g_exit_thread;  // the thread running the exit; set before g_exiting
// Threads that found the interpreter not exiting and are taking the GIL back
// (guarded by g_exit_mu, which g_exiting is also set under). _shutdown waits,
// with the GIL free, until none is left: a thread still waiting for the GIL
// once finalisation begins would be ended by CPython with pthread_exit from
// inside gil_scoped_release's destructor, which aborts the process
// ("terminate called without an active exception", seen once in CI under
// ASan with a daemon thread iterating epochs).
std::mutex g_exit_mu;
std::condition_variable g_exit_cv;
int g_returning = 0;

struct PyLoader;
std::set<PyLoader*> g_live;  // guarded by the GIL

// The Python-side object: owns the C++ Loader.
struct PyLoader {
  explicit PyLoader(std::unique_ptr<Loader> l) : impl(std::move(l)) { g_live.insert(this); }
  ~PyLoader() {
    g_live.erase(this);
    if (!impl) return;
    if (g_exiting.load()) {
      impl.reset();  // closed by _shutdown: nothing left to join
      return;
    }
    nb::gil_scoped_release release;  // joining the threads may take a moment
    impl.reset();
  }
  PyLoader(const PyLoader&) = delete;
  PyLoader& operator=(const PyLoader&) = delete;

  std::unique_ptr<Loader> impl;
  const pid_t pid = ::getpid();
};

// True in a thread other than the one running the interpreter's exit, once
// that exit has begun: such a thread must not take the GIL again.
bool MustNotReturnToPython() {
  return g_exiting.load() && std::this_thread::get_id() != g_exit_thread;
}

// Runs f with the GIL released. If the interpreter began to exit meanwhile,
// a thread other than the exiting one (a daemon thread) waits for the
// process to end instead of taking the GIL back.
template <typename F>
auto WithoutGil(F&& f) {
  // Decides, under g_exit_mu, between parking (the exit has begun) and
  // taking the GIL back; a thread that takes it back is counted until it has.
  struct Returned {
    bool counted = false;
    ~Returned() {  // runs after `release` has taken the GIL back
      if (!counted) return;
      std::lock_guard<std::mutex> lock(g_exit_mu);
      --g_returning;
      g_exit_cv.notify_all();
    }
  };
  Returned returned;
  nb::gil_scoped_release release;
  auto park_or_count = [&returned] {
    std::unique_lock<std::mutex> lock(g_exit_mu);
    while (MustNotReturnToPython()) {
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::hours(1));
      lock.lock();
    }
    ++g_returning;
    returned.counted = true;
  };
  if constexpr (std::is_void_v<decltype(f())>) {
    f();
    park_or_count();
  } else {
    auto r = f();
    park_or_count();
    return r;
  }
}

void RequireOwnProcess(const PyLoader& l) {
  if (l.pid == ::getpid()) return;
  throw Error("this stoker.Loader was created in process " + std::to_string(l.pid) +
              ", and this process (" + std::to_string(::getpid()) +
              ") is a fork of it: its threads do not exist here. Create a new stoker.Loader "
              "in this process");
}


// A Python object kept by C++ (a hook, what a hook returned): released
// with the GIL taken, on whatever thread drops the last reference; left
// alone once the interpreter is exiting (see WithoutGil).
std::shared_ptr<void> HoldPython(nb::object o) {
  return std::shared_ptr<void>(new nb::object(std::move(o)), [](void* p) {
    auto* obj = static_cast<nb::object*>(p);
    if (MustNotReturnToPython() || !Py_IsInitialized()) {
      (void)obj->release();  // the process is ending: no decref without the GIL
      delete obj;
      return;
    }
    nb::gil_scoped_acquire gil;
    delete obj;
  });
}

// Runs f with the GIL on a loader thread; a Python exception becomes the
// error of the sample or batch: "<what> raised <type>: <message>".
template <typename F>
Status CallPython(const char* what, F&& f) {
  if (g_exiting.load()) return Cancelled("the interpreter is exiting");
  nb::gil_scoped_acquire gil;
  try {
    return f();
  } catch (nb::python_error& e) {
    std::string type = "exception";
    try {
      type = nb::cast<std::string>(e.type().attr("__name__"));
    } catch (...) {
    }
    std::string message;
    try {
      message = nb::cast<std::string>(nb::str(e.value()));
    } catch (...) {
    }
    return InvalidArgument(std::string(what) + " raised " + type +
                           (message.empty() ? "" : ": " + message));
  } catch (const std::exception& e) {
    return InvalidArgument(std::string(what) + " failed: " + e.what());
  }
}

// A copy of `bytes` bytes at `data` as a (torch or NumPy) array of `shape`.
// `copy`, when given, receives where the copy's bytes are.
nb::object CopyToPython(const void* data, DType dtype, std::vector<size_t> shape, bool torch,
                        const std::byte** copy = nullptr) {
  size_t bytes = DTypeSize(dtype);
  for (size_t d : shape) bytes *= d;
  auto* buf = new std::vector<std::byte>(std::max<size_t>(bytes, 1));
  if (bytes) std::memcpy(buf->data(), data, bytes);
  if (copy) *copy = buf->data();
  nb::capsule owner(buf, [](void* p) noexcept { delete static_cast<std::vector<std::byte>*>(p); });
  if (torch) {
    return nb::cast(nb::ndarray<nb::pytorch>(buf->data(), shape.size(), shape.data(), owner,
                                             nullptr, ToDlpack(dtype)));
  }
  return nb::cast(nb::ndarray<nb::numpy>(buf->data(), shape.size(), shape.data(), owner, nullptr,
                                         ToDlpack(dtype)));
}

nb::object SampleFieldToPython(const SampleField& f, bool torch) {
  using K = FieldSpec::Kind;
  switch (f.kind) {
    case K::kInt: return nb::int_(f.int_value);
    case K::kFloat: return nb::float_(f.float_value);
    case K::kText:
    case K::kJson: return nb::str(f.bytes.data(), f.bytes.size());
    case K::kBytes: return nb::bytes(f.bytes.data(), f.bytes.size());
    case K::kNpy:
    case K::kMask: {
      std::vector<size_t> shape(f.array->shape.begin(), f.array->shape.end());
      return CopyToPython(f.array->data.data(), f.array->dtype, shape, torch);
    }
    case K::kAuto: break;
  }
  return nb::none();
}

// map=: calls the Python wrapper (stoker._loader) as fn(image, label, index,
// where=: fn(dict of the index's columns as NumPy int64 arrays) -> bytes of
// one flag per sample (the Python wrapper, _loader._where, makes them).
ShardFilter MakeShardFilter(nb::object fn) {
  auto held = HoldPython(std::move(fn));
  return [held](const ShardColumns& c) -> Result<std::vector<uint8_t>> {
    std::vector<uint8_t> keep;
    Status st = CallPython("where", [&]() -> Status {
      const nb::object& call = *static_cast<nb::object*>(held.get());
      nb::dict d;
      const std::pair<const char*, const std::vector<int64_t>*> cols[] = {
          {"label", &c.label}, {"source", &c.source}, {"shard", &c.shard},
          {"bytes", &c.bytes}, {"width", &c.width}, {"height", &c.height},
          {"image_format", &c.image_format}};
      for (const auto& [name, v] : cols) {
        d[name] = nb::cast(OwnedArray(std::vector<int64_t>(*v), {v->size()}));
      }
      nb::bytes flags = nb::cast<nb::bytes>(call(d));
      const auto span = Span(flags);
      keep.assign(span.begin(), span.end());
      return Status::Ok();
    });
    if (!st.ok()) return st;
    return keep;
  };
}

// fields) -> dict; copies the dict's image back into the batch, takes its
// label, and keeps the whole dict for the batch (its other keys).
SampleHook MakeSampleHook(nb::object fn, bool torch) {
  auto held = HoldPython(std::move(fn));
  return [held, torch](SampleView& v) -> Status {
    return CallPython("map", [&]() -> Status {
      const nb::object& call = *static_cast<nb::object*>(held.get());
      const std::vector<size_t> shape = {static_cast<size_t>(v.channels),
                                         static_cast<size_t>(v.height),
                                         static_cast<size_t>(v.width)};
      const std::byte* copy = nullptr;
      nb::object image = CopyToPython(v.image, v.dtype, shape, torch, &copy);
      nb::dict fields;
      for (const auto& f : v.fields) fields[nb::str(f.name->c_str())] = SampleFieldToPython(f, torch);
      nb::object out = call(image, v.label, v.index, fields);
      nb::dict d = nb::cast<nb::dict>(out);  // the wrapper checked it is one
      nb::object img = d.contains("image") ? nb::object(d["image"]) : image;
      const size_t item = DTypeSize(v.dtype);
      const size_t bytes = shape[0] * shape[1] * shape[2] * item;
      auto* dst = static_cast<std::byte*>(v.image);
      if (img.is(image)) {
        // The copy handed out, changed in place or not: no array import.
        std::memcpy(dst, copy, bytes);
      } else {
        nb::ndarray<nb::device::cpu> arr;
        if (!nb::try_cast(img, arr)) {
          return InvalidArgument("map returned an image that is not an array (a tensor or NumPy "
                                 "array on the CPU)");
        }
        const bool same_shape = arr.ndim() == 3 && arr.shape(0) == shape[0] &&
                                arr.shape(1) == shape[1] && arr.shape(2) == shape[2];
        if (!same_shape || arr.dtype() != ToDlpack(v.dtype)) {
          std::string got;
          for (size_t i = 0; i < arr.ndim(); ++i) got += (i ? " x " : "") + std::to_string(arr.shape(i));
          return InvalidArgument("map returned an image of shape " + got + " (" +
                                 std::to_string(arr.itemsize() * 8) + "-bit); the batch holds " +
                                 std::to_string(shape[0]) + " x " + std::to_string(shape[1]) +
                                 " x " + std::to_string(shape[2]) + " images of " +
                                 (v.dtype == DType::kFloat32 ? "float32" : "uint8"));
        }
        const auto* src = static_cast<const std::byte*>(arr.data());
        const int64_t h = static_cast<int64_t>(shape[1]), w = static_cast<int64_t>(shape[2]);
        if (arr.stride(2) == 1 && arr.stride(1) == w && arr.stride(0) == h * w) {
          std::memcpy(dst, src, bytes);  // C-contiguous
        } else {
          // Any strides (a transposed or sliced tensor): element by element.
          for (size_t c = 0; c < shape[0]; ++c) {
            for (size_t y = 0; y < shape[1]; ++y) {
              for (size_t x = 0; x < shape[2]; ++x) {
                const int64_t off = static_cast<int64_t>(c) * arr.stride(0) +
                                    static_cast<int64_t>(y) * arr.stride(1) +
                                    static_cast<int64_t>(x) * arr.stride(2);
                std::memcpy(dst + ((c * shape[1] + y) * shape[2] + x) * item,
                            src + off * static_cast<int64_t>(item), item);
              }
            }
          }
        }
      }
      if (d.contains("label")) v.label = nb::cast<int64_t>(d["label"]);
      // The rest is for the batch (the image's copy need not live as long;
      // the function's own dict is left as it is).
      nb::dict rest;
      for (auto [key, value] : d) {
        if (!(key.equal(nb::str("image")) || key.equal(nb::str("label")) ||
              key.equal(nb::str("index")))) {
          rest[key] = value;
        }
      }
      v.user = HoldPython(rest);
      return Status::Ok();
    });
  };
}

// batch_map=: calls the Python wrapper with the batch's arrays (what next()
// returns) and keeps what it returns as the batch for the consumer.
BatchHook MakeBatchHook(nb::object fn, bool torch) {
  auto held = HoldPython(std::move(fn));
  return [held, torch](Batch& batch) -> Status {
    return CallPython("batch_map", [&]() -> Status {
      const nb::object& call = *static_cast<nb::object*>(held.get());
      nb::object arrays = torch ? nb::object(BatchToArrays<nb::pytorch>(batch))
                                : nb::object(BatchToArrays<nb::numpy>(batch));
      batch.set_user_data(HoldPython(call(arrays)));
      return Status::Ok();
    });
  };
}

nb::object NextBatch(PyLoader& l, bool torch) {
  RequireOwnProcess(l);
  Result<std::optional<Batch>> r = Internal("no batch");
  while (true) {
    const bool ready = WithoutGil([&] {
      if (!l.impl->WaitForNext(kSignalPoll)) return false;
      r = l.impl->Next();
      return true;
    });
    if (ready) break;
    if (PyErr_CheckSignals() != 0) {
      // A KeyboardInterrupt (or whatever the handler raised): leave no
      // thread working for a batch nobody will take.
      WithoutGil([&] { l.impl->Stop(); });
      throw nb::python_error();
    }
  }
  std::optional<Batch> b = ValueOrThrow(std::move(r));
  if (!b) return nb::none();
  // What batch_map= returned stands for the batch. It is taken out of the
  // batch: it may hold the batch's own arrays, whose owners hold the batch,
  // and a batch that kept it would never be freed.
  if (auto user = b->user_data()) {
    b->set_user_data(nullptr);
    return nb::make_tuple(*static_cast<nb::object*>(user.get()));
  }
  return torch ? BatchToArrays<nb::pytorch>(*b) : BatchToArrays<nb::numpy>(*b);
}

void register_loader(nb::module_& m) {
  nb::class_<PyLoader>(m, "Loader")
      .def(
          "__init__",
          [](PyLoader* self, nb::bytes uri, int64_t batch_size, nb::handle transform,
             bool shuffle, uint64_t seed,
             bool drop_last, int threads,
             const std::string& on_error, int prefetch_batches, int64_t max_pixels, int64_t rank,
             int64_t world_size, const std::string& endpoint_url, double connect_timeout,
             double read_timeout, double io_timeout, int max_attempts, bool lookahead,
             bool jpeg_index, int64_t jpeg_index_mb, int64_t max_in_flight, bool trace,
             const std::string& ca_bundle, bool verify_tls, double min_rate,
             double min_rate_window,
             const std::vector<std::pair<std::string, std::string>>& fields, nb::object map,
             nb::object batch_map, bool torch, const std::string& order, int64_t page_bytes,
             int window_pages, nb::object where, const std::string& label_field,
             int64_t cache_memory, int64_t cache_disk, const std::string& cache_dir,
             int64_t memory_budget, int cpu_budget, int64_t cache_decoded) {
            LoaderOptions o;
            o.uri.assign(uri.c_str(), uri.size());  // os.fsencode()d: any bytes
            o.endpoint_url = endpoint_url;
            o.io.connect_timeout_s = connect_timeout;
            o.io.read_timeout_s = read_timeout;
            o.io.io_timeout_s = io_timeout;
            o.io.max_attempts = max_attempts;
            o.io.ca_bundle = ca_bundle;
            o.io.verify_tls = verify_tls;
            o.io.min_rate_bytes_per_s = min_rate;
            o.io.min_rate_window_s = min_rate_window;
            o.batch_size = batch_size;
            o.transform = TransformFromPython(transform);
            o.shuffle = shuffle;
            o.seed = seed;
            o.drop_last = drop_last;
            o.threads = threads;
            o.on_error = ParseOnError(on_error);
            o.prefetch_batches = prefetch_batches;
            o.lookahead = lookahead;
            o.jpeg_index = jpeg_index;
            o.jpeg_index_max_bytes = jpeg_index_mb << 20;
            o.max_pixels = max_pixels;
            o.rank = rank;
            o.world_size = world_size;
            o.max_in_flight = max_in_flight;
            o.trace = trace;
            for (const auto& [name, kind] : fields) {
              o.fields.push_back({name, ParseFieldKind(name, kind)});
            }
            o.page_bytes = page_bytes;
            o.window_pages = window_pages;
            o.label_field = label_field;
            o.cache.memory_bytes = cache_memory;
            o.cache.disk_bytes = cache_disk;
            o.cache.dir = cache_dir;
            o.memory_budget = memory_budget;
            o.cpu_budget = cpu_budget;
            o.cache.decoded_bytes = cache_decoded;
            if (!where.is_none()) o.where = MakeShardFilter(where);
            if (order == "auto") {
              o.order = LoaderOptions::Order::kAuto;
            } else if (order == "sample") {
              o.order = LoaderOptions::Order::kSample;
            } else if (order == "chunk") {
              o.order = LoaderOptions::Order::kChunk;
            } else {
              throw nb::value_error(
                  ("order must be 'auto', 'sample' or 'chunk', got '" + order + "'").c_str());
            }
            if (!map.is_none()) o.map = MakeSampleHook(map, torch);
            if (!batch_map.is_none()) o.batch_map = MakeBatchHook(batch_map, torch);
            Result<std::unique_ptr<Loader>> r =
                WithoutGil([&] { return Loader::Open(o); });
            new (self) PyLoader(ValueOrThrow(std::move(r)));
          },
          nb::arg("uri"), nb::arg("batch_size"), nb::arg("transform"), nb::arg("shuffle"),
          nb::arg("seed"), nb::arg("drop_last"), nb::arg("threads"), nb::arg("on_error"),
          nb::arg("prefetch_batches"), nb::arg("max_pixels"), nb::arg("rank"),
          nb::arg("world_size"), nb::arg("endpoint_url") = "",
          nb::arg("connect_timeout") = IoOptions{}.connect_timeout_s,
          nb::arg("read_timeout") = IoOptions{}.read_timeout_s,
          nb::arg("io_timeout") = IoOptions{}.io_timeout_s, nb::arg("max_attempts") = 0,
          nb::arg("lookahead") = true, nb::arg("jpeg_index") = true,
          nb::arg("jpeg_index_mb") = 128, nb::arg("max_in_flight") = 0,
          nb::arg("trace") = false, nb::arg("ca_bundle") = "",
          nb::arg("verify_tls") = true,
          nb::arg("min_rate") = IoOptions{}.min_rate_bytes_per_s,
          nb::arg("min_rate_window") = IoOptions{}.min_rate_window_s,
          nb::arg("fields") = std::vector<std::pair<std::string, std::string>>(),
          nb::arg("map") = nb::none(), nb::arg("batch_map") = nb::none(),
          nb::arg("torch") = true, nb::arg("order") = "auto",
          nb::arg("page_bytes") = LoaderOptions{}.page_bytes, nb::arg("window_pages") = 0,
          nb::arg("where") = nb::none(), nb::arg("label_field") = LoaderOptions{}.label_field,
          nb::arg("cache_memory") = 0, nb::arg("cache_disk") = 0, nb::arg("cache_dir") = "",
          nb::arg("memory_budget") = 0, nb::arg("cpu_budget") = 0, nb::arg("cache_decoded") = 0)
      .def("__len__", [](const PyLoader& l) { return l.impl->num_batches(); })
      .def_prop_ro("num_samples", [](const PyLoader& l) { return l.impl->num_samples(); })
      .def_prop_ro("shard_info",
                   [](const PyLoader& l) -> nb::object {
                     const DatasetInfo& i = l.impl->info();
                     if (i.shard_index_uri.empty()) return nb::none();
                     nb::dict d;
                     d["format"] = nb::str(i.shard_format.c_str());
                     d["index"] = DecodePath(i.shard_index_uri);
                     d["index_bytes"] = i.shard_index_bytes;
                     nb::list shards;
                     for (const auto& s : i.shards) {
                       nb::dict e;
                       e["uri"] = DecodePath(s.uri);
                       e["bytes"] = s.bytes;
                       e["samples"] = s.samples;
                       shards.append(e);
                     }
                     d["shards"] = shards;
                     nb::dict fields;
                     for (const auto& [name, kind] : i.shard_fields) {
                       fields[nb::str(name.c_str())] = nb::str(kind.c_str());
                     }
                     d["fields"] = fields;
                     nb::dict formats;
                     for (const auto& [k, n] : i.image_formats) formats[nb::str(k.c_str())] = n;
                     d["image_formats"] = formats;
                     return d;
                   })
      .def_prop_ro("classes",
                   [](const PyLoader& l) {
                     nb::list out;
                     for (const auto& c : l.impl->info().classes) out.append(DecodePath(c));
                     return out;
                   })
      .def("sample_uri",
           [](const PyLoader& l, int64_t i) {
             if (i < 0 || i >= l.impl->num_samples()) {
               throw nb::index_error(("sample index " + std::to_string(i) + " is outside [0, " +
                                      std::to_string(l.impl->num_samples()) + ")")
                                         .c_str());
             }
             return DecodePath(l.impl->sample_uri(i));
           })
      .def("sample_label", [](const PyLoader& l, int64_t i) { return l.impl->sample_label(i); })
      .def("set_epoch",
           [](PyLoader& l, int64_t e) {
             RequireOwnProcess(l);
             WithoutGil([&] { l.impl->SetEpoch(e); });
           })
      .def_prop_ro("epoch", [](const PyLoader& l) { return l.impl->epoch(); })
      .def("start",
           [](PyLoader& l) {
             RequireOwnProcess(l);
             WithoutGil([&] { l.impl->Start(); });
           })
      // Stops and joins the threads; a no-op in a forked child (nothing of
      // this loader runs there), so cleanup code never fails after a fork.
      .def("stop", [](PyLoader& l) { WithoutGil([&] { l.impl->Stop(); }); })
      // Stop(), for good: iterating afterwards raises. Also a no-op in a
      // forked child.
      .def("close", [](PyLoader& l) { WithoutGil([&] { l.impl->Close(); }); })
      .def("next", &NextBatch, nb::arg("torch"),
           "Next batch as (images, labels, indices, fields), or None at the end of the epoch.")
      .def("stats",
           [](const PyLoader& l) {
             RequireOwnProcess(l);
             // Without the GIL: a loader thread may need it to let go of a
             // hook's object while holding a lock these calls take.
             return StatsToDict(WithoutGil([&] { return l.impl->stats(); }));
           })
      .def("profile",
           [](const PyLoader& l) {
             RequireOwnProcess(l);
             return ProfileToDict(WithoutGil([&] { return l.impl->Profile(); }));
           })
      .def("trace_json",
           [](const PyLoader& l) {
             RequireOwnProcess(l);
             return l.impl->TraceJson();
           })
      .def("set_threads",
           [](PyLoader& l, int n) {
             RequireOwnProcess(l);
             WithoutGil([&] { l.impl->SetThreads(n); });
           })
      .def_prop_ro("threads", [](const PyLoader& l) { return l.impl->threads(); })
      .def("state_dict",
           [](const PyLoader& l) {
             RequireOwnProcess(l);
             LoaderState st = WithoutGil([&] { return l.impl->state(); });
             nb::dict d;
             d["version"] = st.version;
             d["seed"] = st.seed;
             d["shuffle"] = st.shuffle;
             d["num_samples"] = st.num_samples;
             d["epoch"] = st.epoch;
             d["position"] = st.position;
             return d;
           })
      .def("load_state_dict", [](PyLoader& l, nb::dict d) {
        RequireOwnProcess(l);
        LoaderState st;
        try {
          st.version = nb::cast<int64_t>(d["version"]);
          st.seed = nb::cast<uint64_t>(d["seed"]);
          st.shuffle = nb::cast<bool>(d["shuffle"]);
          st.num_samples = nb::cast<int64_t>(d["num_samples"]);
          st.epoch = nb::cast<int64_t>(d["epoch"]);
          st.position = nb::cast<int64_t>(d["position"]);
        } catch (const std::exception& e) {
          throw nb::value_error(
              (std::string("not a stoker state_dict (keys version, seed, shuffle, num_samples, "
                           "epoch, position): ") + e.what()).c_str());
        }
        ThrowIfError(WithoutGil([&] { return l.impl->LoadState(st); }));
      });

  // stoker convert: the C++ converter with the GIL released, `progress`
  // called with it (a KeyboardInterrupt there stops the conversion).
  m.def(
      "convert",
      [](nb::bytes src, nb::bytes dst, uint64_t shard_size, std::optional<uint64_t> shuffle_seed,
         int threads, const std::string& on_error, const std::string& endpoint_url,
         const std::vector<std::pair<std::string, std::string>>& fields, bool optimize_huffman,
         int64_t max_pixels, int max_size, int quality, int64_t part_size, nb::object progress,
         const std::string& label_field) {
        ConvertOptions o;
        o.src.assign(src.c_str(), src.size());
        o.dst.assign(dst.c_str(), dst.size());
        o.shard_size = shard_size;
        o.shuffle_seed = shuffle_seed;
        o.threads = threads;
        o.on_error = ParseOnError(on_error);
        o.endpoint_url = endpoint_url;
        for (const auto& [name, kind] : fields) o.fields.push_back({name, ParseFieldKind(name, kind)});
        o.optimize_huffman = optimize_huffman;
        o.max_pixels = max_pixels;
        o.max_size = max_size;
        o.quality = quality;
        o.part_size = part_size;
        o.label_field = label_field;
        std::exception_ptr raised;
        auto to_dict = [](const ConvertProgress& p) {
          nb::dict d;
          d["samples_total"] = p.samples_total;
          d["samples_done"] = p.samples_done;
          d["samples_skipped"] = p.samples_skipped;
          d["jpegs_indexed"] = p.jpegs_indexed;
          d["jpegs_kept"] = p.jpegs_kept;
          d["images_shrunk"] = p.images_shrunk;
          d["bytes_in"] = p.bytes_in;
          d["bytes_out"] = p.bytes_out;
          d["shards"] = p.shards;
          d["seconds"] = p.seconds;
          nb::list skipped;
          for (const auto& e : p.skipped_examples) skipped.append(nb::str(e.c_str()));
          d["skipped_examples"] = skipped;
          return d;
        };
        ConvertProgressFn fn;
        if (!progress.is_none()) {
          fn = [&](const ConvertProgress& p) {
            nb::gil_scoped_acquire gil;
            try {
              progress(to_dict(p));
              return true;
            } catch (...) {
              raised = std::current_exception();
              return false;
            }
          };
        }
        Result<ConvertProgress> r = WithoutGil([&] { return Convert(o, fn); });
        if (raised) std::rethrow_exception(raised);
        return to_dict(ValueOrThrow(std::move(r)));
      },
      nb::arg("src"), nb::arg("dst"), nb::arg("shard_size"), nb::arg("shuffle_seed").none(),
      nb::arg("threads"), nb::arg("on_error"), nb::arg("endpoint_url"), nb::arg("fields"),
      nb::arg("optimize_huffman"), nb::arg("max_pixels"), nb::arg("max_size"), nb::arg("quality"),
      nb::arg("part_size"), nb::arg("progress").none(),
      nb::arg("label_field") = ConvertOptions{}.label_field);

  // Registered with atexit by the stoker package: closes every live loader
  // (threads joined) before the interpreter is torn down.
  m.def("_shutdown", [] {
    g_exit_thread = std::this_thread::get_id();
    {
      std::lock_guard<std::mutex> lock(g_exit_mu);
      g_exiting.store(true);
    }
    std::vector<nb::object> live;
    for (PyLoader* p : g_live) {
      if (nb::object o = nb::find(*p); o.is_valid()) live.push_back(std::move(o));
    }
    // A loader still alive here may be held by a daemon thread's frame,
    // which CPython never frees: nanobind would then list it (and every
    // binding) as leaked on stderr at exit. Closed, it holds nothing that
    // matters, so those warnings are turned off in that case only.
    if (!live.empty()) nb::set_leak_warnings(false);
    std::vector<PyLoader*> to_close;
    for (auto& o : live) {
      PyLoader* p = nb::inst_ptr<PyLoader>(o);
      if (p->pid == ::getpid()) to_close.push_back(p);
    }
    nb::gil_scoped_release release;
    for (PyLoader* p : to_close) p->impl->Close();
    // Let the threads already taking the GIL back have it (bounded: they
    // only wait for the GIL, which is free now).
    std::unique_lock<std::mutex> lock(g_exit_mu);
    g_exit_cv.wait_for(lock, std::chrono::seconds(5), [] { return g_returning == 0; });
  });
}

}  // namespace stoker::python
