// Configuration of a Loader. Plain structs: fill them in, pass them to
// Loader::Open, which validates them.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "stoker/status.h"

namespace stoker {

// One step of a TransformOptions::Kind::kCompose pipeline: torchvision.transforms.v2's
// op of the same name with its arguments (docs/transforms.md). Only the fields
// an op names are read. Sizes are (height, width), as torchvision's.
struct TransformOp {
  enum class Type {
    kRandomResizedCrop,     // size, scale, ratio
    kResize,                // size: (h, w), or (s, 0): shorter side s
    kCenterCrop,            // size (pads with 0 where the image is smaller)
    kRandomCrop,            // size, padding, pad_if_needed, fill, padding_mode
    kPad,                   // padding, fill, padding_mode
    kRandomHorizontalFlip,  // p
    kRandomVerticalFlip,    // p
    kColorJitter,           // brightness, contrast, saturation, hue (ranges)
    kRandomGrayscale,       // p
    kGrayscale,             // num_output_channels
    kGaussianBlur,          // kernel_size, sigma (range)
    kNormalize,             // mean, std (one per channel)
    kToDtype,               // float32, scale
  };
  enum class PaddingMode { kConstant, kEdge, kReflect, kSymmetric };
  Type type = Type::kResize;
  std::array<int, 2> size = {0, 0};  // (h, w)
  std::array<double, 2> scale = {0.08, 1.0};
  std::array<double, 2> ratio = {3.0 / 4.0, 4.0 / 3.0};
  std::array<int, 4> padding = {0, 0, 0, 0};  // left, top, right, bottom
  bool pad_if_needed = false;
  std::array<int, 3> fill = {0, 0, 0};
  PaddingMode padding_mode = PaddingMode::kConstant;
  double p = 0.5;
  // ColorJitter's factor ranges, as torchvision stores them: brightness,
  // contrast and saturation [lo, hi] around 1, hue [lo, hi] in [-0.5, 0.5].
  // {1, 1} (hue {0, 0}) is torchvision's None: no draw, no change.
  std::array<double, 2> brightness = {1, 1};
  std::array<double, 2> contrast = {1, 1};
  std::array<double, 2> saturation = {1, 1};
  std::array<double, 2> hue = {0, 0};
  int num_output_channels = 1;
  std::array<int, 2> kernel_size = {0, 0};  // (kx, ky) as torchvision's: odd, > 0
  std::array<double, 2> sigma = {0.1, 2.0};
  std::vector<float> mean;
  std::vector<float> std;
  bool scale_values = true;  // ToDtype(float32, scale=...)
};

// What happens to each decoded sample before it is collated.
struct TransformOptions {
  enum class Kind {
    // RandomResizedCrop(size, scale, ratio) + random horizontal flip, with
    // torchvision's parameter sampling. Randomness depends only on
    // (seed, epoch, position in the global order).
    kTrain,
    // Resize the shorter side to round(size / center_fraction), then take the
    // centre size x size crop (torchvision's Resize + CenterCrop).
    kVal,
    // `ops` in order (torchvision.transforms.v2.Compose). The leading crops,
    // one resize and flips are fused into decoding; the rest run on the
    // decoded crop. `size`, `normalize`, `mean`, `std` and the kTrain/kVal
    // fields are not read (the ops say it all).
    kCompose,
  };
  Kind kind = Kind::kVal;
  int size = 224;
  // false: uint8 NCHW in [0, 255]. true: float32 NCHW, (x / 255 - mean) / std.
  bool normalize = false;
  std::array<double, 2> scale = {0.08, 1.0};         // kTrain: area fraction
  std::array<double, 2> ratio = {3.0 / 4.0, 4.0 / 3.0};  // kTrain: aspect ratio
  double flip_probability = 0.5;                     // kTrain
  double center_fraction = 0.875;                    // kVal: 224 / 256
  // Decode JPEG crops with libjpeg's fast integer IDCT (as FFCV does): ~7%
  // less CPU per sample, 46 dB PSNR against Pillow's decode instead of 55 dB.
  // Python's imagenet_train turns it on.
  bool fast_decode = false;
  std::array<float, 3> mean = {0.485f, 0.456f, 0.406f};
  std::array<float, 3> std = {0.229f, 0.224f, 0.225f};
  std::vector<TransformOp> ops;  // kCompose
};

enum class OnError {
  kSkip,   // count the sample in stats, log its URI once per kind, go on
  kRaise,  // Next() returns the error, naming the URI and the reason
};

// How requests to remote storage (s3://, http(s)://) are timed out and
// retried. Local files ignore these.
struct IoOptions {
  // One attempt's TCP (and TLS) connect.
  double connect_timeout_s = 10;
  // Longest silence once connected: waiting for the reply's first byte or
  // between bytes of its body (botocore's read_timeout; S3's advice for small
  // GETs is to retry after ~2 s without a first byte). A stalled attempt is
  // aborted, counted in LoaderStats::timeouts, and retried. A reply that
  // keeps sending is not cut by this, however slowly it comes (only by
  // min_rate_bytes_per_s, when set, and io_timeout_s). 0: no limit.
  double read_timeout_s = 5;
  // The slowest reply accepted, in bytes per second over each window of
  // max(min_rate_window_s, read_timeout_s) (rounded up to whole seconds)
  // once connected: a reply that
  // trickles in below it (never silent long enough for read_timeout_s) is
  // aborted, counted in LoaderStats::timeouts, and retried. 0 (the default,
  // as botocore): no minimum rate.
  double min_rate_bytes_per_s = 0;
  double min_rate_window_s = 15;
  // Deadline of one storage request (a sample's GET or a listing page),
  // retries and backoff included, from its first attempt. When it passes the
  // request fails with the endpoint, the last reason and the attempts made.
  // If the server gave no request a final answer (success, or a definite
  // error such as 404) since this one first failed, the code is
  // StatusCode::kUnavailable, which ends the epoch whatever `on_error` says;
  // otherwise (one object failing while others arrive) it is kIOError.
  double io_timeout_s = 120;
  // Attempts per request, the first included. 0: AWS_MAX_ATTEMPTS, else the
  // AWS profile's max_attempts (s3:// only), else no cap: retried until
  // io_timeout_s.
  int max_attempts = 0;
  // A PEM file of the certificate authorities that https:// servers'
  // certificates must chain to, instead of the system's (a private CA in
  // front of MinIO, Ceph, a corporate proxy). Empty: for s3://,
  // AWS_CA_BUNDLE, else the AWS profile's ca_bundle, else the system store;
  // for http(s):// samples, the system store.
  std::string ca_bundle;
  // false: https:// servers' certificates and host names are not checked.
  // Never the default; each endpoint read this way is named in a warning.
  bool verify_tls = true;
};

// A field of each sample besides its image, label and index
// (docs/fields.md). Where its value comes from depends on the dataset:
//   - a manifest: the column (CSV) or key (JSON Lines) of that name. Its
//     value is the field (a number, a text, JSON) or, for kBytes, kNpy and
//     kMask, the path of a file holding it (relative to the manifest).
//   - a folder: the file beside the sample's image with the same name up to
//     the first dot and this field's name after it (WebDataset's
//     convention): for cat/x.jpg, field "txt" is cat/x.txt, "seg.png" is
//     cat/x.seg.png. Files of such a group are one sample, not several.
// A field not asked for is never read. A sample whose field is missing or
// bad is skipped (or raised, by `on_error`) with the file and the field
// named.
struct FieldSpec {
  enum class Kind {
    // Manifest: kInt if every value is an integer, else kFloat if every
    // value is a number, else kText (JSON Lines: arrays, objects and
    // booleans as kJson). Folder: by the name's last extension: txt and text
    // kText, json kJson, npy kNpy, cls and idx kInt, png (beside an image
    // that is not one) kMask, anything else kBytes.
    kAuto,
    kInt,    // int64 per sample (a file: its text, as WebDataset's .cls)
    kFloat,  // float64 per sample
    kText,   // str per sample; a file's bytes must be UTF-8
    kJson,   // str per sample holding one JSON value, checked
    kBytes,  // the file's bytes
    // A NumPy .npy file (format 1.0-3.0, C order): one array per sample,
    // stacked into one N x ... array when the batch's arrays share dtype
    // and shape.
    kNpy,
    // An 8-bit grayscale or palette PNG of the image's size (class indices):
    // cropped, resized, flipped and padded with the image's parameters,
    // nearest-neighbour, no colour ops: uint8 N x 1 x H x W.
    kMask,
  };
  std::string name;
  Kind kind = Kind::kAuto;
};

class Batch;        // stoker/loader.h
struct SampleView;  // stoker/loader.h

// User code run on the loader's threads (the Python binding's map= and
// batch_map=). A hook's error is the sample's error (skipped and counted,
// or raised, by on_error) for `map`, the batch's for `batch_map`.
//   map: on each sample once its image is transformed and its fields
//     decoded, on the decode thread; may change the image in place and the
//     label, and leave an object for the batch (SampleView::user).
//   batch_map: on each batch once it is collated, in order, on the loader's
//     map thread, while the consumer works on earlier batches; may leave an
//     object for the consumer (Batch::user_data).
using SampleHook = std::function<Status(SampleView&)>;
using BatchHook = std::function<Status(Batch&)>;

// A shard dataset's index as columns, one value per sample in storage
// order, for `LoaderOptions::where`: what can be filtered on without reading
// a sample. image_format: 0 none, 1 JPEG with a row table, 2 other JPEG,
// 3 PNG, 4 other.
struct ShardColumns {
  std::vector<int64_t> label, source, shard, bytes, width, height, image_format;
};
// Returns one flag per sample (non-zero: keep it), or an error.
using ShardFilter = std::function<Result<std::vector<uint8_t>>(const ShardColumns&)>;

// A cache of the encoded bytes read from storage, kept in memory and/or in
// a local directory (docs/cache-format.md): what is kept is read from there
// in later epochs instead of from storage. Kept while a budget has room,
// never evicted. Off by default.
struct CacheOptions {
  int64_t memory_bytes = 0;  // 0: nothing in memory
  int64_t disk_bytes = 0;    // 0: nothing on disk
  // Samples as the transform left them, in memory, by dataset index
  // (docs/cache-format.md "Decoded"): a kept sample is copied into its batch
  // instead of being read and decoded. Only for a transform without
  // randomness (imagenet_val; Resize, CenterCrop, Pad, Grayscale, Normalize,
  // ToDtype), and without fields or map; 0: off.
  int64_t decoded_bytes = 0;
  // The directory for disk_bytes, private to the user (mode 0700) and
  // shareable by the processes of one node; empty: $XDG_CACHE_HOME/stoker,
  // else ~/.cache/stoker. Entries are keyed by URI and byte range: clear
  // the directory when a dataset's objects change under the same names.
  std::string dir;
};

struct LoaderOptions {
  // A local folder (ImageFolder layout), `file://` URI, or a manifest file
  // (.csv with header `path,label`, or .jsonl with keys `path`, `label`);
  // a folder written by stoker convert, or its index.stoker; WebDataset
  // tars: one .tar, a brace pattern ("train-{000..099}.tar") or a folder
  // of .tar files. Local, s3:// or http(s)://.
  std::string uri;
  // A cache in front of the dataset's storage (CacheOptions); off by default.
  CacheOptions cache;
  // Bytes the loader's memory may grow by (docs/memory.md). 0: a quarter of
  // the memory available when the loader opens (MemAvailable, or what the
  // cgroup's limit leaves, whichever is less), and never less than three
  // batch buffers; kNoMemoryBudget: none. prefetch_batches, max_in_flight,
  // jpeg_index_max_bytes, window_pages, page_bytes and cache.memory_bytes
  // are lowered to fit it; a budget given that cannot hold three batch
  // buffers and the threads' scratch is an error.
  static constexpr int64_t kNoMemoryBudget = -1;
  int64_t memory_budget = 0;
  // Cores the decode threads may use when they are autotuned (threads = 0);
  // 0: every core available to the process.
  int cpu_budget = 0;
  // WebDataset: the extension of the file that holds each sample's label
  // (an integer in text, as WebDataset's .cls); a sample without one has
  // label -1. Other datasets take their labels from their layout.
  std::string label_field = "cls";
  // S3 endpoint override (else AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the
  // AWS config profile, or AWS itself).
  std::string endpoint_url;
  // Timeouts and retries of remote storage requests.
  IoOptions io;
  int64_t batch_size = 64;
  TransformOptions transform;
  // Fields to read besides image, label and index (FieldSpec).
  std::vector<FieldSpec> fields;
  // A shard dataset: only the samples this keeps, chosen from the index
  // when the dataset opens (no sample is read for it). batch["index"] stays
  // each sample's source position; num_samples() counts those kept.
  ShardFilter where;
  // Hooks (SampleHook, BatchHook); empty: none.
  SampleHook map;
  BatchHook batch_map;
  bool shuffle = false;
  uint64_t seed = 0;
  // How a shard dataset is shuffled (docs/order.md). kChunk, the default
  // for shards: a keyed order of pages (runs of up to page_bytes of
  // consecutive records in one shard), window_pages of them open at a time,
  // their samples shuffled together, so each page is read about once per
  // epoch. kSample: a permutation of all samples (each page read about once
  // per sample). Loose files are always shuffled per sample.
  enum class Order { kAuto, kSample, kChunk };
  Order order = Order::kAuto;
  int64_t page_bytes = int64_t{8} << 20;
  int window_pages = 0;  // 0: 16
  // true: drop the last incomplete batch.
  bool drop_last = false;
  // Decode threads; 0: autotuned (docs/autotune.md), from cpu_budget down
  // to the fewest that keep up with the consumer.
  int threads = 0;
  OnError on_error = OnError::kSkip;
  // Batches prepared ahead of the consumer (each holds batch_size decoded
  // images: 38.5 MB at 64 x 3 x 224 x 224 float32); 0: autotuned, from 2 up
  // to kMaxAutoPrefetch or what memory_budget holds, as storage latency needs.
  static constexpr int kMaxAutoPrefetch = 32;
  int prefetch_batches = 0;
  // Storage requests in flight at once; 0: no cap but prefetch_batches (all
  // of those batches' samples may be requested at once).
  int64_t max_in_flight = 0;
  // Record a span per sample per stage for Loader::TraceJson() (Chrome
  // trace-event JSON, for Perfetto or chrome://tracing); `stoker profile
  // --trace FILE` turns it on. Off: no cost.
  bool trace = false;
  // Remote samples (s3://, http(s)://): once a pass has asked for all of its
  // samples, read the first min(prefetch_batches, 2) batches of the next
  // epoch (epoch + 1, from its start) while this one drains, so the next
  // pass does not begin with a round trip and idle decoders. Costs that many
  // extra reads after the last epoch, or when set_epoch picks another one.
  bool lookahead = true;
  // Crops of baseline JPEGs: remember where each MCU starts in each file's
  // entropy-coded data (found by walking the file once, on its second
  // decode) and from then on hand libjpeg a JPEG of just the crop's MCU rows
  // and columns, made by copying their bits, instead of the whole file:
  // libjpeg must otherwise Huffman-decode every row down to the crop's
  // bottom, in full width. The pixels are the same. About 12 bytes an MCU
  // (6-12 KB for an ImageNet-sized image), up to jpeg_index_max_bytes; past
  // that, only where MCU rows start (12 bytes a row) is kept, then nothing.
  bool jpeg_index = true;
  int64_t jpeg_index_max_bytes = int64_t{128} << 20;
  // Images with more pixels than this are refused before any allocation
  // (decompression bombs). 0 disables the check.
  int64_t max_pixels = 178956970;  // Pillow's limit, 2x its warning threshold
  // Distributed slice of the global order: rank r of W takes positions
  // r, r + W, r + 2W, ... of each epoch's order.
  int64_t rank = 0;
  int64_t world_size = 1;
};

}  // namespace stoker
