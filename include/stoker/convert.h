// stoker convert: any dataset stoker reads -> a shard dataset
// (docs/shard-format.md), which opens by reading one index object and
// decodes a crop's JPEG rows and columns only.
//
//   stoker::ConvertOptions opt;
//   opt.src = "/data/imagenet/train";      // folder, manifest or shards; local or s3://
//   opt.dst = "/data/imagenet-shards";     // a local folder or s3://bucket/prefix/
//   auto summary = stoker::Convert(opt, [](const stoker::ConvertProgress& p) { ... });
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "stoker/options.h"
#include "stoker/status.h"

namespace stoker {

struct ConvertOptions {
  std::string src;
  // A local folder (created if missing) or an s3:// prefix (its bucket must
  // exist), with the same endpoint_url, credentials and io options as an
  // s3:// source. What it held of an earlier conversion (index.stoker,
  // shard-*.stoker, temporaries) is removed first, the index before the
  // rest; nothing else there is touched. Not the source's own folder or
  // prefix when the source is a shard dataset.
  std::string dst;
  // A shard is closed once the next record would take it past this many
  // bytes (a record larger than this gets a shard of its own).
  uint64_t shard_size = uint64_t{256} << 20;
  // Samples written in a keyed random order of this seed (else in the
  // source's order). Each keeps its source position (batch["index"]).
  std::optional<uint64_t> shuffle_seed;
  // Extra fields to carry (LoaderOptions::fields); empty: image and label.
  std::vector<FieldSpec> fields;
  // A WebDataset source: the file holding each label (LoaderOptions::label_field).
  std::string label_field = "cls";
  int threads = 0;  // transcoding threads; 0: one per core
  OnError on_error = OnError::kSkip;
  std::string endpoint_url;  // for an s3:// source or destination
  IoOptions io;
  // s3:// destination: a shard is uploaded in parts of this many bytes
  // (multipart, each part sent as soon as it is full, a few at once; at
  // least 5 MiB, S3's smallest part), so a shard is never held whole.
  int64_t part_size = int64_t{16} << 20;
  int64_t max_pixels = 178956970;  // larger images are bad samples
  // Optimal Huffman tables per JPEG (smaller shards, about twice the
  // conversion CPU); else the standard tables.
  bool optimize_huffman = false;
  // > 0: lossy. An image whose longer side is over max_size pixels is
  // resized (bilinear, antialiased, as Pillow) so that it is max_size, and
  // stored as a JPEG of `quality` (with restart markers and a row table),
  // as FFCV's max_resolution; smaller ones are stored losslessly as usual.
  // Mask fields would no longer match their image: refused with them.
  int max_size = 0;
  int quality = 90;
};

struct ConvertProgress {
  int64_t samples_total = 0;  // in the source
  int64_t samples_done = 0;   // read and written or skipped
  int64_t samples_skipped = 0;
  int64_t jpegs_indexed = 0;  // JPEGs rewritten with restart markers and a row table
  int64_t jpegs_kept = 0;     // JPEGs stored as they were (a variant that cannot be rewritten losslessly)
  int64_t images_shrunk = 0;  // max_size: images resized and encoded anew
  int64_t bytes_in = 0;       // read from the source
  int64_t bytes_out = 0;      // written: shards and index
  int64_t shards = 0;
  double seconds = 0;
  // The first few skipped samples: "URI: reason".
  std::vector<std::string> skipped_examples;
};

// Converts; calls `progress` (if set) from the calling thread after every
// few hundred samples and once at the end; when it returns false the
// conversion stops (kCancelled) without writing an index. Each shard
// appears whole once written (locally a temporary file synced and renamed;
// on S3 a multipart upload completed); the index is written last,
// atomically (a rename, or one PUT), after every shard, so an interrupted
// or failed conversion leaves no dataset that opens (the shard being
// written is removed: its temporary file, or its multipart upload
// aborted), and running it again starts over. Errors: the source cannot be
// opened, the destination cannot be written (naming the object and the
// reason: errno, or S3's HTTP status and error code), or (OnError::kRaise)
// the first bad sample, naming it and the reason.
using ConvertProgressFn = std::function<bool(const ConvertProgress&)>;
Result<ConvertProgress> Convert(const ConvertOptions& options,
                                const ConvertProgressFn& progress = {});

}  // namespace stoker
