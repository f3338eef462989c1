// Decoding less of a baseline JPEG than libjpeg would: only the MCUs a crop
// needs.
//
// libjpeg must Huffman-decode every row down to a crop's bottom, in full
// width, because a JPEG without restart markers has no entry point but its
// first bit: for RandomResizedCrop that is about a third of the decode
// spent on MCUs outside the crop. The bits never move, so where each MCU
// begins (a bit position and the DC predictors there) can be found once and
// reused in every later epoch (JpegRowIndex). Nothing in libjpeg starts a
// decode at a bit position, so stoker hands libjpeg a new stream instead:
//
// 1. With every MCU's start known (a "grid", walked once, on a file's
//    second decode), CropMcus writes a JPEG of just the crop's MCU rows and
//    columns: the file's header with the SOF size changed, then for each
//    row the bits of MCUs c0 .. c1 - 1 copied (eight bytes at a time where
//    no 0xFF needs stuffing), each component's first DC difference
//    re-encoded against the block that now precedes it. No coefficient is
//    decoded or re-encoded otherwise.
// 2. With only row starts known (a file's first decode, or once the memory
//    budget is spent), BuildJump makes a stream of: the file's header with
//    the SOF height lowered; one MCU row of our own encoding (EOB-only
//    blocks, the first block of each component carrying the DC predictor as
//    its difference, padded with a few AC coefficients so that the row ends
//    at the right bit of a byte); then the original bytes from the
//    remembered row on, the first one merged with the synthetic row's last
//    bits.
//
// Both keep one real pixel row and column around the crop: fancy
// upsampling reads its neighbours as context, and at the edge of the new
// image libjpeg would replicate instead. So the pixels are exactly those of
// decoding the whole file (decode_test.cc compares them for every sampling,
// scale, MCU column and row; decode_fuzz.cc for every input).
//
// Only single-scan Huffman JPEGs (baseline or extended sequential, 8-bit,
// no restart markers, all components in the one scan) are cut; every other
// file, and any file whose data does not walk cleanly, is decoded the usual
// way, which also reports its errors.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

namespace stoker::decode {

// What is known of each sample's JPEG, learned while decoding: on a file's
// first decode, the starts of the MCU rows walked to reach the crop; on its
// second, the start of every MCU (the grid, 12 bytes an MCU), from then on
// used to cut each decode to the crop. Thread-safe. Bounded by `max_bytes`:
// a grid that does not fit is not walked, row starts that do not fit are
// not kept, and decoding goes on as before. An entry is keyed by the file's
// size and a hash of its header, so a file rewritten between epochs is
// walked again rather than misread.
class JpegRowIndex {
 public:
  static constexpr size_t kDefaultMaxBytes = size_t{256} << 20;

  // grids: also keep every MCU's start (about 12 bytes an MCU: 6-12 KB for
  // an ImageNet-sized image), to cut decodes down to the crop's columns.
  explicit JpegRowIndex(size_t samples, size_t max_bytes = kDefaultMaxBytes, bool grids = true);
  ~JpegRowIndex();
  JpegRowIndex(const JpegRowIndex&) = delete;
  JpegRowIndex& operator=(const JpegRowIndex&) = delete;

  size_t samples() const { return slots_.size(); }
  size_t bytes_used() const { return used_.load(std::memory_order_relaxed); }
  // Decodes that started at a row below the top, and MCU rows they did not
  // entropy-decode.
  int64_t jumps() const { return jumps_.load(std::memory_order_relaxed); }
  int64_t rows_jumped() const { return rows_jumped_.load(std::memory_order_relaxed); }

  // The state of the entropy decoder at the start of an MCU row.
  struct RowStart {
    uint32_t bit = 0;     // bit position in the file (byte * 8 + bit, MSB first)
    int16_t dc[4] = {};   // DC predictor of each component of the scan
  };

  // Every MCU's start, row by row: (mcus_per_row + 1) entries a row, the
  // last one where the next row starts (for the last row, the scan's end).
  using Grid = std::vector<RowStart>;

  // Internal to the decoder. Lookup gives the remembered start of `row` if
  // known, else the furthest remembered row before it (row 0 if none) and
  // its number in *known.
  bool Lookup(size_t sample, uint64_t key, int row, RowStart* start, int* known) const;
  // Whether anything is remembered of the sample's file.
  bool Seen(size_t sample, uint64_t key) const {
    RowStart ignored;
    int row;
    return Lookup(sample, key, 0, &ignored, &row);
  }
  // Remembers the starts of rows first, first + 1, ... (given in order).
  void Remember(size_t sample, uint64_t key, int first, std::span<const RowStart> rows);
  void CountJump(int rows) {
    jumps_.fetch_add(1, std::memory_order_relaxed);
    rows_jumped_.fetch_add(rows, std::memory_order_relaxed);
  }
  // The sample's grid, if known (null otherwise).
  std::shared_ptr<const Grid> FindGrid(size_t sample, uint64_t key) const;
  // Whether a grid of `entries` would fit in what is left of the budget.
  bool Affords(size_t entries) const {
    return grids_ && used_.load(std::memory_order_relaxed) + sizeof(Entry) +
                             entries * sizeof(RowStart) <=
                         max_bytes_;
  }
  // Keeps `grid` for the sample (replacing its row starts); false when over
  // the budget.
  bool RememberGrid(size_t sample, uint64_t key, std::shared_ptr<const Grid> grid,
                    size_t row_len);
  void CountCrop() { crops_.fetch_add(1, std::memory_order_relaxed); }
  // Decodes that went to libjpeg cut down to the crop's MCU columns and rows.
  int64_t crops() const { return crops_.load(std::memory_order_relaxed); }

 private:
  struct Entry {
    uint64_t key = 0;
    std::vector<RowStart> rows;  // rows[i]: start of MCU row i
    std::shared_ptr<const Grid> grid;
    size_t grid_row_len = 0;  // mcus_per_row + 1
  };
  void Forget(std::unique_ptr<Entry>& slot);
  static constexpr size_t kStripes = 64;
  std::mutex& StripeFor(size_t sample) const { return stripes_[sample % kStripes]; }

  const size_t max_bytes_;
  const bool grids_;
  std::vector<std::unique_ptr<Entry>> slots_;
  mutable std::mutex stripes_[kStripes];
  std::atomic<size_t> used_{0};
  std::atomic<int64_t> jumps_{0};
  std::atomic<int64_t> rows_jumped_{0};
  std::atomic<int64_t> crops_{0};
};

// Which sample of which index a decode is for (index == nullptr: none).
struct RowIndexRef {
  JpegRowIndex* index = nullptr;
  size_t sample = 0;
};

namespace internal {

// A Huffman table from a DHT segment, for decoding and for encoding.
struct HuffTable {
  static constexpr int kFastBits = 11;
  bool defined = false;
  uint16_t fast[1 << kFastBits];  // (length << 8) | symbol for codes <= kFastBits; 0: longer
  // AC tables: as fast, with the length of the coefficient's bits added to
  // the code's, to skip both with one shift.
  uint16_t skip[1 << kFastBits];
  int32_t maxcode[18];            // largest code of each length (-1: none)
  int32_t valoffset[17];
  uint8_t vals[256];
  uint16_t code[256];  // encoding: the code of each symbol...
  uint8_t size[256];   // ...and its length, 0 when the symbol has no code
};

// What a jump needs to know of a file, from its header.
struct JpegLayout {
  int width = 0, height = 0;
  int comps = 0;  // in the frame, and in its one scan
  int mcu_w = 0, mcu_h = 0;  // source columns and rows of an MCU
  int mcus_per_row = 0, mcu_rows = 0;
  struct Comp {
    int blocks = 1;  // in an MCU
    int dc = 0, ac = 0;  // table numbers
  } comp[4];
  size_t sof_height_at = 0;  // offset of the SOF's 2-byte height
  size_t sos_at = 0;         // the SOS marker's first byte
  size_t data_start = 0;     // first byte of entropy-coded data
  uint64_t key = 0;          // file size and a hash of the header
  // DRI: MCUs between restart markers (0: none). Only files without
  // restart markers are walked (WalkRows, WalkGrid, CropMcus, BuildJump);
  // files with a marker after every MCU are cut by CropRestartMcus.
  int restart_interval = 0;
  // stoker's row table (an APP15 "STKR" segment, kRowTableId): where in the
  // file the table's first entry is, and how many rows it has (0: none).
  size_t row_table_at = 0;
  int row_table_rows = 0;
  HuffTable dc[4], ac[4];
};

// The identifier that opens the APP15 segment holding a row table, and the
// table's version. The segment's payload: the 5 identifier bytes, a version
// byte, a big-endian u16 row count, then for each MCU row the big-endian
// u32 offset of its first byte from the first byte of entropy-coded data.
// Written by RewriteWithRestarts (jpeg_restart.h); docs/shard-format.md.
inline constexpr char kRowTableId[5] = {'S', 'T', 'K', 'R', '\0'};
inline constexpr uint8_t kRowTableVersion = 1;

// Parses SOI .. SOS. False when the file is not one a jump handles (see the
// top of this file) or its header is malformed; libjpeg says which.
bool ParseJpegLayout(std::span<const uint8_t> bytes, JpegLayout* layout);

// The start of row 0.
JpegRowIndex::RowStart FirstRow(const JpegLayout& layout);

// Entropy-decodes MCU rows from `from` (the start of row from_row) and
// appends the starts of rows from_row + 1 .. to_row to *out. False when the
// data is invalid or ends first, or a DC predictor leaves what a baseline
// DC difference can carry.
bool WalkRows(std::span<const uint8_t> bytes, const JpegLayout& layout,
              const JpegRowIndex::RowStart& from, int from_row, int to_row,
              std::vector<JpegRowIndex::RowStart>* out);

// Entropy-decodes the whole scan and records where every MCU starts
// (JpegRowIndex::Grid). False as WalkRows.
bool WalkGrid(std::span<const uint8_t> bytes, const JpegLayout& layout, JpegRowIndex::Grid* grid);

// Writes to *out a baseline JPEG of MCU rows [r0, r1) and MCU columns
// [c0, c1) of the file, without decoding a coefficient: the header with the
// SOF size changed, then for each row the bits of its MCUs c0 .. c1 - 1
// copied from the file, the DC difference of each component's first block
// re-encoded against the new predecessor, then EOI. False when a DC table
// lacks a code that needs (the caller decodes the file instead).
bool CropMcus(std::span<const uint8_t> bytes, const JpegLayout& layout,
              const JpegRowIndex::Grid& grid, int r0, int r1, int c0, int c1,
              std::vector<uint8_t>* out, size_t* size);

// The size of the image of MCU rows [r0, r1) and columns [c0, c1) of a
// file (the last row or column keeps the file's partial MCU).
inline int CutWidth(const JpegLayout& L, int c0, int c1) {
  return c1 == L.mcus_per_row ? L.width - c0 * L.mcu_w : (c1 - c0) * L.mcu_w;
}
inline int CutHeight(const JpegLayout& L, int r0, int r1) {
  return r1 == L.mcu_rows ? L.height - r0 * L.mcu_h : (r1 - r0) * L.mcu_h;
}
// The file's header up to its entropy-coded data, with the SOF size that of
// that cut, written to `o`.
void WriteCutHeader(const uint8_t* bytes, const JpegLayout& L, int r0, int r1, int c0, int c1,
                    uint8_t* o);

// Writes to *out (its first *size bytes) a baseline JPEG of MCU rows
// [r0, r1) and MCU columns [c0, c1) of a file with a restart marker after
// every MCU (restart_interval 1), by copying bytes: the header with the SOF
// size changed, each MCU's bytes, restart markers numbered anew, EOI. The
// rows are found through the file's row table when it has a valid one, else
// by counting markers from the start of the scan; the MCUs of a row by
// their markers. Restart markers reset the DC predictors, so nothing is
// re-encoded. False when the markers are not where they should be (the
// caller decodes the file as it is, and libjpeg reports what is wrong).
bool CropRestartMcus(std::span<const uint8_t> bytes, const JpegLayout& layout, int r0, int r1,
                     int c0, int c1, std::vector<uint8_t>* out, size_t* size);

// Rewrites a file without restart markers (restart_interval 0) as
// RewriteWithRestarts does (jpeg_restart.h), by copying bits: a DRI segment
// of interval 1 and the row table before SOS, then each MCU's bits with
// each component's first DC difference re-encoded against 0 (what a
// restart resets the predictor to), padded with 1 bits to a byte, a restart
// marker after each but the last, EOI. The same Huffman tables; no other
// coefficient is decoded or encoded. Appends to *out; *scan_offset is where
// the entropy-coded data starts in it. False when the scan does not walk
// cleanly or a DC table lacks a category the absolute values need (the
// caller then transcodes with libjpeg).
bool AddRestarts(std::span<const uint8_t> bytes, const JpegLayout& layout,
                 std::vector<uint8_t>* out, size_t* scan_offset);

// The offset from the first byte of entropy-coded data of each MCU row's
// first byte, found by counting restart markers, in a file whose layout has
// restart_interval 1. False when the markers do not match the layout.
bool FindRestartRows(std::span<const uint8_t> bytes, const JpegLayout& layout,
                     std::vector<uint32_t>* rows);

// Builds the stream that starts at MCU row `row` (see the top of this file):
// the first *size bytes of *prefix, then bytes[*resume_at ..]. The new image is
// height - (row - 1) * mcu_h rows high; its row 0 is synthetic. False when
// the file's Huffman tables lack a code the synthetic row needs.
bool BuildJump(std::span<const uint8_t> bytes, const JpegLayout& layout,
               const JpegRowIndex::RowStart& at, int row, std::vector<uint8_t>* prefix,
               size_t* size, size_t* resume_at);

}  // namespace internal
}  // namespace stoker::decode
