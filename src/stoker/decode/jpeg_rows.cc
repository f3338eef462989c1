#include "stoker/decode/jpeg_rows.h"

#include <cstring>

namespace stoker::decode {

JpegRowIndex::JpegRowIndex(size_t samples, size_t max_bytes, bool grids)
    : max_bytes_(max_bytes), grids_(grids), slots_(samples) {
  used_.store(samples * sizeof(slots_[0]), std::memory_order_relaxed);
}

JpegRowIndex::~JpegRowIndex() = default;

void JpegRowIndex::Remember(size_t sample, uint64_t key, int first,
                            std::span<const RowStart> rows) {
  if (sample >= slots_.size() || first < 0 || rows.empty()) return;
  std::lock_guard<std::mutex> lock(StripeFor(sample));
  std::unique_ptr<Entry>& slot = slots_[sample];
  if (slot != nullptr && slot->key != key) Forget(slot);  // the file changed
  if (slot != nullptr && slot->grid != nullptr) return;  // knows more already
  const size_t have = slot != nullptr ? slot->rows.size() : 0;
  const size_t f = static_cast<size_t>(first);
  if (f > have || f + rows.size() <= have) return;  // a gap, or nothing new
  rows = rows.subspan(have - f);                    // another decode may have gone further
  const size_t old_cap = slot != nullptr ? slot->rows.capacity() : 0;
  const size_t new_cap = have + rows.size() > old_cap ? have + rows.size() : old_cap;
  const size_t add = (new_cap - old_cap) * sizeof(RowStart) + (slot == nullptr ? sizeof(Entry) : 0);
  if (used_.load(std::memory_order_relaxed) + add > max_bytes_) return;
  used_.fetch_add(add, std::memory_order_relaxed);
  if (slot == nullptr) {
    slot = std::make_unique<Entry>();
    slot->key = key;
  }
  slot->rows.reserve(new_cap);
  slot->rows.insert(slot->rows.end(), rows.begin(), rows.end());
}

void JpegRowIndex::Forget(std::unique_ptr<Entry>& slot) {
  size_t bytes = sizeof(Entry) + slot->rows.capacity() * sizeof(RowStart);
  if (slot->grid != nullptr) bytes += slot->grid->size() * sizeof(RowStart);
  used_.fetch_sub(bytes, std::memory_order_relaxed);
  slot.reset();
}

std::shared_ptr<const JpegRowIndex::Grid> JpegRowIndex::FindGrid(size_t sample,
                                                                 uint64_t key) const {
  if (sample >= slots_.size()) return nullptr;
  std::lock_guard<std::mutex> lock(StripeFor(sample));
  const Entry* e = slots_[sample].get();
  if (e == nullptr || e->key != key) return nullptr;
  return e->grid;
}

bool JpegRowIndex::RememberGrid(size_t sample, uint64_t key, std::shared_ptr<const Grid> grid,
                                size_t row_len) {
  if (sample >= slots_.size() || grid == nullptr || row_len == 0 || grid->empty() ||
      grid->size() % row_len != 0) {
    return false;
  }
  std::lock_guard<std::mutex> lock(StripeFor(sample));
  std::unique_ptr<Entry>& slot = slots_[sample];
  if (slot != nullptr && (slot->key != key || slot->grid != nullptr)) Forget(slot);
  // The grid holds every row start too: the rows vector goes.
  const size_t freed = slot != nullptr ? slot->rows.capacity() * sizeof(RowStart) : 0;
  const size_t add = grid->size() * sizeof(RowStart) + (slot == nullptr ? sizeof(Entry) : 0);
  if (used_.load(std::memory_order_relaxed) + add > max_bytes_ + freed) return false;
  if (slot == nullptr) {
    slot = std::make_unique<Entry>();
    slot->key = key;
  }
  std::vector<RowStart>().swap(slot->rows);
  slot->grid = std::move(grid);
  slot->grid_row_len = row_len;
  used_.fetch_add(add, std::memory_order_relaxed);
  used_.fetch_sub(freed, std::memory_order_relaxed);
  return true;
}

bool JpegRowIndex::Lookup(size_t sample, uint64_t key, int row, RowStart* start,
                          int* known) const {
  if (sample >= slots_.size() || row < 0) return false;
  std::lock_guard<std::mutex> lock(StripeFor(sample));
  const Entry* e = slots_[sample].get();
  if (e == nullptr || e->key != key) return false;
  if (e->grid != nullptr) {
    const size_t rows = e->grid->size() / e->grid_row_len;
    const size_t r = static_cast<size_t>(row) < rows ? static_cast<size_t>(row) : rows - 1;
    *start = (*e->grid)[r * e->grid_row_len];
    *known = static_cast<int>(r);
    return true;
  }
  if (e->rows.empty()) return false;
  const size_t i = static_cast<size_t>(row) < e->rows.size() ? static_cast<size_t>(row)
                                                             : e->rows.size() - 1;
  *start = e->rows[i];
  *known = static_cast<int>(i);
  return true;
}

namespace internal {
namespace {

using RowStart = JpegRowIndex::RowStart;

// Builds decoding and encoding tables from a DHT's counts and symbols (JPEG
// Annex C and F.2.2.3). False for a table no code assignment fits.
bool BuildTable(const uint8_t counts[16], const uint8_t* vals, int total, bool dc,
                HuffTable* t) {
  std::memset(t->fast, 0, sizeof t->fast);
  std::memset(t->skip, 0, sizeof t->skip);
  std::memset(t->size, 0, sizeof t->size);
  std::memcpy(t->vals, vals, static_cast<size_t>(total));
  int32_t code = 0;
  int k = 0;
  for (int len = 1; len <= 16; ++len) {
    const int n = counts[len - 1];
    t->valoffset[len] = k - code;
    t->maxcode[len] = n > 0 ? code + n - 1 : -1;
    for (int i = 0; i < n; ++i, ++k, ++code) {
      if (code >= (1 << len)) return false;  // over-subscribed, as libjpeg says
      const uint8_t sym = vals[k];
      if (dc && sym > 15) return false;  // libjpeg refuses these too
      if (t->size[sym] == 0) {
        t->size[sym] = static_cast<uint8_t>(len);
        t->code[sym] = static_cast<uint16_t>(code);
      }
      if (len <= HuffTable::kFastBits) {
        const int shift = HuffTable::kFastBits - len;
        const int base = code << shift;
        for (int j = 0; j < (1 << shift); ++j) {
          t->fast[base + j] = static_cast<uint16_t>((len << 8) | sym);
          t->skip[base + j] = static_cast<uint16_t>(((len + (sym & 15)) << 8) | sym);
        }
      }
    }
    code <<= 1;
  }
  t->maxcode[17] = 0x7FFFFFFF;
  t->defined = true;
  return true;
}

uint64_t Fnv1a(const uint8_t* p, size_t n, uint64_t h = 0xcbf29ce484222325ull) {
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

// MSB-first reader of entropy-coded data. Past a marker or the end it feeds
// zero bits and counts them, so a walk that uses them can be refused.
class BitReader {
 public:
  BitReader(std::span<const uint8_t> bytes, size_t data_start, uint32_t bit)
      : d_(bytes.data()), n_(bytes.size()), data_start_(data_start), pos_(bit >> 3) {
    Refill();
    Consume(static_cast<int>(bit & 7));
  }

  void Refill() {
    if (!stopped_ && pos_ + 8 <= n_ && nbits_ < 56) {  // whole bytes, none 0xFF
      uint64_t v;
      std::memcpy(&v, d_ + pos_, 8);
      v = __builtin_bswap64(v);
      const uint64_t x = ~v;
      if (((x - 0x0101010101010101ull) & ~x & 0x8080808080808080ull) == 0) {
        const int nb = (63 - nbits_) >> 3;  // 1..7
        buf_ |= (v >> (64 - 8 * nb)) << (64 - nbits_ - 8 * nb);
        nbits_ += 8 * nb;
        pos_ += static_cast<size_t>(nb);
        return;
      }
    }
    while (nbits_ <= 56) {
      uint64_t byte = 0;
      bool real = false;
      if (!stopped_ && pos_ < n_) {
        byte = d_[pos_];
        if (byte != 0xFF) {
          ++pos_;
          real = true;
        } else if (pos_ + 1 < n_ && d_[pos_ + 1] == 0) {
          pos_ += 2;  // a stuffed 0xFF
          real = true;
        }
      }
      if (!real) {
        stopped_ = true;
        byte = 0;
        fake_ += 8;
      }
      buf_ |= byte << (56 - nbits_);
      nbits_ += 8;
    }
  }

  void Consume(int n) {
    buf_ <<= n;
    nbits_ -= n;
  }

  // The next n (1..31) bits; Refill first.
  uint32_t Take(int n) {
    const uint32_t v = static_cast<uint32_t>(buf_ >> (64 - n));
    Consume(n);
    return v;
  }

  // Decodes a Huffman symbol; -1 for a code the table lacks. Needs 16 bits.
  int Decode(const HuffTable& t) {
    const uint16_t e = t.fast[buf_ >> (64 - HuffTable::kFastBits)];
    if (e != 0) {
      Consume(e >> 8);
      return e & 0xFF;
    }
    const int32_t c16 = static_cast<int32_t>(buf_ >> 48);
    for (int len = HuffTable::kFastBits + 1; len <= 16; ++len) {
      const int32_t c = c16 >> (16 - len);
      if (c <= t.maxcode[len]) {
        Consume(len);
        return t.vals[t.valoffset[len] + c];
      }
    }
    return -1;
  }

  // Decodes an AC symbol and skips its coefficient's bits; returns the
  // symbol (run << 4 | size), or -1 for a bad code. Needs 31 bits.
  int SkipAc(const HuffTable& t) {
    const uint16_t e = t.skip[buf_ >> (64 - HuffTable::kFastBits)];
    if (e != 0) {
      Consume(e >> 8);
      return e & 0xFF;
    }
    const int rs = Decode(t);
    if (rs > 0) Consume(rs & 15);
    return rs;
  }

  int nbits() const { return nbits_; }
  bool overrun() const { return nbits_ < fake_; }

  // The file position of the next unread bit.
  uint32_t Position() const {
    const int real = nbits_ - fake_;  // >= 0 unless overrun()
    int bytes = (real + 7) / 8;
    size_t i = pos_;
    while (bytes > 0) {
      --i;
      if (d_[i] == 0 && i > data_start_ && d_[i - 1] == 0xFF) continue;  // stuffing
      --bytes;
    }
    return static_cast<uint32_t>(i * 8 + static_cast<size_t>((8 - real % 8) % 8));
  }

 private:
  const uint8_t* d_;
  size_t n_;
  size_t data_start_;
  size_t pos_;
  uint64_t buf_ = 0;
  int nbits_ = 0;
  int fake_ = 0;
  bool stopped_ = false;
};

// Skips a block's AC coefficients, as libjpeg's decode_mcu consumes them
// (a run past the 63rd coefficient ends the block there, as in libjpeg).
// False on a bad code.
[[gnu::always_inline]] inline bool SkipAcs(BitReader& br, const HuffTable& ac) {
  for (int k = 1; k < 64; ++k) {
    if (br.nbits() < 32) br.Refill();
    const int rs = br.SkipAc(ac);
    if (rs < 0) return false;
    if ((rs & 15) != 0) {
      k += rs >> 4;
    } else {
      if (rs != 0xF0) break;  // EOB
      k += 15;                // ZRL
    }
  }
  return true;
}

// Decodes a block's DC difference into *diff. False on a bad code.
[[gnu::always_inline]] inline bool DecodeDc(BitReader& br, const HuffTable& dc, int32_t* diff) {
  if (br.nbits() < 32) br.Refill();
  const int s = br.Decode(dc);
  if (s < 0) return false;
  *diff = 0;
  if (s != 0) {
    const int32_t v = static_cast<int32_t>(br.Take(s));
    *diff = v < (1 << (s - 1)) ? v - (1 << s) + 1 : v;  // JPEG's EXTEND
  }
  return true;
}

// Decodes one block's DC difference (into *diff) and skips its AC
// coefficients. False on a bad code.
[[gnu::always_inline]] inline bool SkipBlock(BitReader& br, const HuffTable& dc,
                                             const HuffTable& ac, int32_t* diff) {
  if (!DecodeDc(br, dc, diff)) return false;
  return SkipAcs(br, ac);
}

// Writes MSB-first into a buffer the caller sized, stuffing a 0 after each
// 0xFF; copies runs of whole bytes without 0xFF eight at a time.
class SpanWriter {
 public:
  explicit SpanWriter(uint8_t* p) : p_(p) {}

  void Put(uint32_t bits, int n) {  // n <= 24
    acc_ = (acc_ << n) | (bits & ((1u << n) - 1));
    nacc_ += n;
    while (nacc_ >= 8) {
      Emit(static_cast<uint8_t>(acc_ >> (nacc_ - 8)));
      nacc_ -= 8;
    }
  }

  // Appends the data bits [from, to) of the entropy-coded bytes `d` (file
  // bit positions of data bytes; stuffing skipped).
  void Copy(const uint8_t* d, uint32_t from, uint32_t to) {
    size_t byte = from >> 3;
    const int k = static_cast<int>(from & 7);
    const size_t end = to >> 3;
    const int ke = static_cast<int>(to & 7);
    if (byte == end) {
      if (ke > k) Put((d[byte] >> (8 - ke)) & ((1u << (ke - k)) - 1), ke - k);
      return;
    }
    if (k != 0) {
      Put(d[byte] & ((1u << (8 - k)) - 1), 8 - k);
      byte += d[byte] == 0xFF ? 2 : 1;
    }
    while (byte < end) {
      if (byte + 8 <= end) {
        uint64_t v;
        std::memcpy(&v, d + byte, 8);
        v = __builtin_bswap64(v);
        if (!HasFF(v)) {
          Put64(v);
          byte += 8;
          continue;
        }
      }
      const uint8_t b = d[byte];
      Put(b, 8);
      byte += b == 0xFF ? 2 : 1;
    }
    if (ke != 0) Put(static_cast<uint32_t>(d[end] >> (8 - ke)), ke);
  }

  // Pads the last byte with 1 bits, as encoders do.
  void Flush() {
    if (nacc_ > 0) Put((1u << (8 - nacc_)) - 1, 8 - nacc_);
  }
  void Emit(uint8_t b) {
    *p_++ = b;
    if (b == 0xFF) *p_++ = 0;
  }
  uint8_t* end() const { return p_; }
  int pending() const { return nacc_; }  // bits not yet in a byte
  uint32_t pending_bits() const { return static_cast<uint32_t>(acc_ & ((1u << nacc_) - 1)); }

 private:
  static bool HasFF(uint64_t v) {
    const uint64_t x = ~v;
    return ((x - 0x0101010101010101ull) & ~x & 0x8080808080808080ull) != 0;
  }
  void Put64(uint64_t v) {
    const uint64_t out = nacc_ == 0 ? v : (acc_ << (64 - nacc_)) | (v >> nacc_);
    acc_ = v;  // its low nacc_ bits are what is pending now
    if (HasFF(out)) {
      for (int i = 56; i >= 0; i -= 8) Emit(static_cast<uint8_t>(out >> i));
    } else {
      const uint64_t be = __builtin_bswap64(out);
      std::memcpy(p_, &be, 8);
      p_ += 8;
    }
  }

  uint8_t* p_;
  uint64_t acc_ = 0;
  int nacc_ = 0;
};

int Category(int v) {
  int a = v < 0 ? -v : v, s = 0;
  while (a > 0) a >>= 1, ++s;
  return s;
}

}  // namespace

bool ParseJpegLayout(std::span<const uint8_t> b, JpegLayout* L) {
  const size_t n = b.size();
  if (n < 4 || n >= (size_t{1} << 28) || b[0] != 0xFF || b[1] != 0xD8) return false;
  for (int i = 0; i < 4; ++i) L->dc[i].defined = L->ac[i].defined = false;
  L->restart_interval = 0;
  L->row_table_at = 0;
  L->row_table_rows = 0;
  struct FrameComp {
    int id, h, v;
  } fc[4];
  int nf = 0, hmax = 1, vmax = 1;
  size_t p = 2;
  for (;;) {
    if (p >= n || b[p] != 0xFF) return false;
    while (p < n && b[p] == 0xFF) ++p;
    if (p + 2 >= n) return false;
    const uint8_t m = b[p++];
    const size_t len = static_cast<size_t>(b[p]) << 8 | b[p + 1];
    if (len < 2 || p + len > n) return false;
    const uint8_t* seg = &b[p + 2];
    const size_t seglen = len - 2;
    if (m == 0xC0 || m == 0xC1) {  // baseline or extended sequential, Huffman
      if (nf != 0 || seglen < 6 || seg[0] != 8) return false;
      L->height = seg[1] << 8 | seg[2];
      L->width = seg[3] << 8 | seg[4];
      nf = seg[5];
      if (L->height == 0 || L->width == 0 || nf < 1 || nf > 4 ||
          seglen != 6 + 3 * static_cast<size_t>(nf)) {
        return false;
      }
      for (int i = 0; i < nf; ++i) {
        fc[i].id = seg[6 + 3 * i];
        fc[i].h = seg[7 + 3 * i] >> 4;
        fc[i].v = seg[7 + 3 * i] & 15;
        if (fc[i].h < 1 || fc[i].h > 4 || fc[i].v < 1 || fc[i].v > 4) return false;
        hmax = fc[i].h > hmax ? fc[i].h : hmax;
        vmax = fc[i].v > vmax ? fc[i].v : vmax;
      }
      L->sof_height_at = p + 3;
    } else if (m != 0xC4 && m != 0xDB && m != 0xDD && m != 0xDA && m != 0xFE &&
               !(m >= 0xE0 && m <= 0xEF)) {
      // Another coding process, DNL, a marker out of place, or one libjpeg
      // does not know (it refuses the file): nothing to cut.
      return false;
    } else if (m == 0xC4) {  // DHT
      size_t i = 0;
      while (i < seglen) {
        if (i + 17 > seglen) return false;
        const int tc = seg[i] >> 4, th = seg[i] & 15;
        if (tc > 1 || th > 3) return false;
        int total = 0;
        for (int k = 0; k < 16; ++k) total += seg[i + 1 + k];
        if (total > 256 || i + 17 + static_cast<size_t>(total) > seglen) return false;
        HuffTable* t = tc == 0 ? &L->dc[th] : &L->ac[th];
        if (!BuildTable(&seg[i + 1], &seg[i + 17], total, tc == 0, t)) return false;
        i += 17 + static_cast<size_t>(total);
      }
    } else if (m == 0xDD) {  // DRI
      if (seglen < 2) return false;
      L->restart_interval = seg[0] << 8 | seg[1];
    } else if (m == 0xEF) {  // APP15: stoker's row table, or someone else's
      if (seglen >= 8 && std::memcmp(seg, kRowTableId, sizeof kRowTableId) == 0 &&
          seg[5] == kRowTableVersion) {
        const int rows = seg[6] << 8 | seg[7];
        if (seglen == 8 + 4 * static_cast<size_t>(rows)) {
          L->row_table_at = p + 2 + 8;
          L->row_table_rows = rows;
        }
      }
    } else if (m == 0xDA) {  // SOS
      if (nf == 0 || seglen < 1 || seg[0] != nf || seglen != 4 + 2 * static_cast<size_t>(nf)) {
        return false;
      }
      const int ns = seg[0];
      int blocks = 0;
      for (int i = 0; i < ns; ++i) {
        const int id = seg[1 + 2 * i];
        int f = 0;
        while (f < nf && fc[f].id != id) ++f;
        if (f == nf || f != i) return false;  // scan order must be frame order
        const int td = seg[2 + 2 * i] >> 4, ta = seg[2 + 2 * i] & 15;
        if (td > 3 || ta > 3 || !L->dc[td].defined || !L->ac[ta].defined) return false;
        L->comp[i].dc = td;
        L->comp[i].ac = ta;
        L->comp[i].blocks = ns == 1 ? 1 : fc[f].h * fc[f].v;
        blocks += L->comp[i].blocks;
      }
      const uint8_t* tail = &seg[1 + 2 * ns];
      if (tail[0] != 0 || tail[1] != 63 || tail[2] != 0 || blocks > 10) return false;
      L->comps = ns;
      const int mcu_w = ns == 1 ? 8 : 8 * hmax;
      L->mcu_w = mcu_w;
      L->mcu_h = ns == 1 ? 8 : 8 * vmax;
      L->mcus_per_row = (L->width + mcu_w - 1) / mcu_w;
      L->mcu_rows = (L->height + L->mcu_h - 1) / L->mcu_h;
      L->sos_at = p - 2;
      L->data_start = p + len;
      L->key = Fnv1a(b.data(), L->data_start) ^ (static_cast<uint64_t>(n) * 0x9E3779B97F4A7C15ull);
      return true;
    }
    p += len;
  }
}

RowStart FirstRow(const JpegLayout& L) {
  RowStart r;
  r.bit = static_cast<uint32_t>(L.data_start * 8);
  return r;
}

namespace {

// Entropy-decodes one MCU, updating the DC predictors. False on a bad code,
// a predictor outside int16 (a RowStart could not hold it), or data that
// ran into a marker or the end of the file.
// (The predictors are summed in a local: written through the pointer, the
// compiler must assume they alias the reader's int members and reloads
// those after every block, a third slower.)
[[gnu::always_inline]] inline bool SkipMcu(BitReader& br, const JpegLayout& L, int32_t* pred) {
  for (int c = 0; c < L.comps; ++c) {
    const HuffTable& dc = L.dc[L.comp[c].dc];
    const HuffTable& ac = L.ac[L.comp[c].ac];
    int32_t p = pred[c];
    for (int blk = 0; blk < L.comp[c].blocks; ++blk) {
      int32_t diff;
      if (!SkipBlock(br, dc, ac, &diff)) return false;
      p += diff;
      if (p > 32767 || p < -32767) return false;
    }
    pred[c] = p;
  }
  return !br.overrun();
}

}  // namespace

bool WalkRows(std::span<const uint8_t> bytes, const JpegLayout& L, const RowStart& from,
              int from_row, int to_row, std::vector<RowStart>* out) {
  if (from_row < 0 || to_row >= L.mcu_rows || from.bit / 8 < L.data_start ||
      from.bit / 8 >= bytes.size()) {
    return false;
  }
  BitReader br(bytes, L.data_start, from.bit);
  int32_t pred[4] = {from.dc[0], from.dc[1], from.dc[2], from.dc[3]};
  for (int row = from_row; row < to_row; ++row) {
    for (int m = 0; m < L.mcus_per_row; ++m) {
      if (!SkipMcu(br, L, pred)) return false;
    }
    RowStart next;
    next.bit = br.Position();
    for (int c = 0; c < L.comps; ++c) next.dc[c] = static_cast<int16_t>(pred[c]);
    out->push_back(next);
  }
  return true;
}

bool WalkGrid(std::span<const uint8_t> bytes, const JpegLayout& L, JpegRowIndex::Grid* grid) {
  const size_t row_len = static_cast<size_t>(L.mcus_per_row) + 1;
  grid->clear();
  grid->reserve(row_len * static_cast<size_t>(L.mcu_rows));
  BitReader br(bytes, L.data_start, static_cast<uint32_t>(L.data_start * 8));
  int32_t pred[4] = {0, 0, 0, 0};
  RowStart here;
  auto record = [&] {
    here.bit = br.Position();
    for (int c = 0; c < L.comps; ++c) here.dc[c] = static_cast<int16_t>(pred[c]);
    grid->push_back(here);
  };
  for (int row = 0; row < L.mcu_rows; ++row) {
    for (int m = 0; m < L.mcus_per_row; ++m) {
      record();
      if (!SkipMcu(br, L, pred)) return false;
    }
    record();  // where the row ends
  }
  return true;
}

void WriteCutHeader(const uint8_t* bytes, const JpegLayout& L, int r0, int r1, int c0, int c1,
                    uint8_t* o) {
  std::memcpy(o, bytes, L.data_start);
  const int new_w = CutWidth(L, c0, c1);
  const int new_h = CutHeight(L, r0, r1);
  o[L.sof_height_at] = static_cast<uint8_t>(new_h >> 8);
  o[L.sof_height_at + 1] = static_cast<uint8_t>(new_h & 0xFF);
  o[L.sof_height_at + 2] = static_cast<uint8_t>(new_w >> 8);
  o[L.sof_height_at + 3] = static_cast<uint8_t>(new_w & 0xFF);
}

bool CropMcus(std::span<const uint8_t> bytes, const JpegLayout& L, const JpegRowIndex::Grid& grid,
              int r0, int r1, int c0, int c1, std::vector<uint8_t>* out, size_t* size) {
  const size_t row_len = static_cast<size_t>(L.mcus_per_row) + 1;
  if (r0 < 0 || r1 > L.mcu_rows || r0 >= r1 || c0 < 0 || c1 > L.mcus_per_row || c0 >= c1 ||
      grid.size() != row_len * static_cast<size_t>(L.mcu_rows)) {
    return false;
  }
  // Output bound: the header, each copied data byte possibly stuffed, the
  // re-encoded DC codes, EOI, and 8 bytes of slack for whole-word stores.
  const size_t first = grid[static_cast<size_t>(r0) * row_len + static_cast<size_t>(c0)].bit / 8;
  const size_t last =
      grid[static_cast<size_t>(r1 - 1) * row_len + static_cast<size_t>(c1)].bit / 8 + 1;
  const size_t bound = L.data_start + 2 * (last - first) +
                       static_cast<size_t>(r1 - r0) * static_cast<size_t>(L.comps) * 8 + 32;
  if (out->size() < bound) out->resize(bound);
  uint8_t* o = out->data();
  WriteCutHeader(bytes.data(), L, r0, r1, c0, c1, o);

  SpanWriter w(o + L.data_start);
  int32_t pred[4] = {0, 0, 0, 0};  // the new stream's DC predictors
  for (int row = r0; row < r1; ++row) {
    const RowStart& s0 = grid[static_cast<size_t>(row) * row_len + static_cast<size_t>(c0)];
    const RowStart& s1 = grid[static_cast<size_t>(row) * row_len + static_cast<size_t>(c1)];
    BitReader br(bytes, L.data_start, s0.bit);
    for (int c = 0; c < L.comps; ++c) {
      const HuffTable& dc = L.dc[L.comp[c].dc];
      const HuffTable& ac = L.ac[L.comp[c].ac];
      // The component's first block: its DC difference, against the DC of
      // the block before it in the new stream.
      int32_t diff;
      if (!DecodeDc(br, dc, &diff)) return false;
      const uint32_t after_dc = br.Position();
      const int32_t nd = s0.dc[c] + diff - pred[c];
      const int ns = Category(nd);
      if (ns > 15 || dc.size[ns] == 0) return false;
      w.Put(dc.code[ns], dc.size[ns]);
      if (ns != 0) w.Put(static_cast<uint32_t>(nd >= 0 ? nd : nd - 1), ns);
      // Then everything up to the next component's first block (for the
      // last component: to the end of MCU c1 - 1) as it is.
      uint32_t span_end = s1.bit;
      if (c + 1 < L.comps) {
        int32_t ignored;
        if (!SkipAcs(br, ac)) return false;  // the rest of the first block
        for (int blk = 1; blk < L.comp[c].blocks; ++blk) {
          if (!SkipBlock(br, dc, ac, &ignored)) return false;
        }
        if (br.overrun()) return false;
        span_end = br.Position();
      }
      if (span_end < after_dc) return false;
      w.Copy(bytes.data(), after_dc, span_end);
    }
    for (int c = 0; c < L.comps; ++c) pred[c] = s1.dc[c];
  }
  w.Flush();
  uint8_t* e = w.end();
  *e++ = 0xFF;
  *e++ = 0xD9;
  *size = static_cast<size_t>(e - o);
  return true;
}

bool BuildJump(std::span<const uint8_t> bytes, const JpegLayout& L, const RowStart& at, int row,
               std::vector<uint8_t>* prefix, size_t* size, size_t* resume_at) {
  const size_t byte = at.bit >> 3;
  const int k = static_cast<int>(at.bit & 7);
  if (row < 1 || row >= L.mcu_rows || byte < L.data_start || byte >= bytes.size()) return false;

  // The synthetic row's length with no padding, and the codes it needs.
  int64_t length = 0;
  for (int c = 0; c < L.comps; ++c) {
    const HuffTable& dc = L.dc[L.comp[c].dc];
    const HuffTable& ac = L.ac[L.comp[c].ac];
    const int s = Category(at.dc[c]);
    if (dc.size[s] == 0 || dc.size[0] == 0 || ac.size[0x00] == 0) return false;
    const int64_t blocks = int64_t{L.mcus_per_row} * L.comp[c].blocks;
    length += dc.size[s] + s + (blocks - 1) * dc.size[0] + blocks * ac.size[0x00];
  }
  // Padding: AC coefficients of magnitude 2^(size-1) at the start of a
  // component's first block, as few as reach k bits past a byte boundary.
  // Any residue reachable at all is reachable with at most 7 (Z/8).
  struct Unit {
    int comp, sym, bits;
  };
  std::vector<Unit> units;
  for (int c = 0; c < L.comps; ++c) {
    const HuffTable& ac = L.ac[L.comp[c].ac];
    for (int sym = 1; sym <= 10; ++sym) {
      if (ac.size[sym] != 0) units.push_back({c, sym, ac.size[sym] + sym});
    }
  }
  const int need = static_cast<int>(((k - length) % 8 + 8) % 8);
  int from_res[8], via[8];
  bool seen[8] = {true, false, false, false, false, false, false, false};
  int frontier[8] = {0}, nf = 1;
  for (int step = 0; step < 7 && !seen[need]; ++step) {
    int next[8], nn = 0;
    for (int i = 0; i < nf; ++i) {
      for (size_t u = 0; u < units.size(); ++u) {
        const int r = (frontier[i] + units[u].bits) % 8;
        if (!seen[r]) {
          seen[r] = true;
          from_res[r] = frontier[i];
          via[r] = static_cast<int>(u);
          next[nn++] = r;
        }
      }
    }
    std::memcpy(frontier, next, sizeof(int) * static_cast<size_t>(nn));
    nf = nn;
  }
  if (!seen[need]) return false;
  std::vector<int> pad[4];
  for (int r = need; r != 0; r = from_res[r]) {
    pad[units[static_cast<size_t>(via[r])].comp].push_back(units[static_cast<size_t>(via[r])].sym);
  }

  // Output bound: the header, then per block at most a DC code and value
  // (27 bits), an EOB (16) and the padding (7 x 26 in all), each byte
  // possibly stuffed, and the merged byte.
  size_t blocks = 0;
  for (int c = 0; c < L.comps; ++c) blocks += static_cast<size_t>(L.comp[c].blocks);
  const size_t bound =
      L.data_start + 2 * (blocks * static_cast<size_t>(L.mcus_per_row) * 6 + 24) + 4;
  if (prefix->size() < bound) prefix->resize(bound);
  uint8_t* o = prefix->data();
  std::memcpy(o, bytes.data(), L.data_start);
  const int new_height = L.height - (row - 1) * L.mcu_h;
  o[L.sof_height_at] = static_cast<uint8_t>(new_height >> 8);
  o[L.sof_height_at + 1] = static_cast<uint8_t>(new_height & 0xFF);

  SpanWriter w(o + L.data_start);
  for (int m = 0; m < L.mcus_per_row; ++m) {
    for (int c = 0; c < L.comps; ++c) {
      const HuffTable& dc = L.dc[L.comp[c].dc];
      const HuffTable& ac = L.ac[L.comp[c].ac];
      for (int blk = 0; blk < L.comp[c].blocks; ++blk) {
        const bool first = m == 0 && blk == 0;
        const int diff = first ? at.dc[c] : 0;
        const int s = Category(diff);
        w.Put(dc.code[s], dc.size[s]);
        w.Put(static_cast<uint32_t>(diff >= 0 ? diff : diff - 1), s);
        if (first) {
          for (int sym : pad[c]) {
            w.Put(ac.code[sym], ac.size[sym]);
            w.Put(1u << (sym - 1), sym);
          }
        }
        w.Put(ac.code[0x00], ac.size[0x00]);  // EOB
      }
    }
  }
  if (w.pending() != k) return false;  // cannot happen: the padding was chosen for it
  if (k == 0) {
    *resume_at = byte;
  } else {
    const uint8_t orig = bytes[byte];
    const uint32_t low = orig & ((1u << (8 - k)) - 1);
    w.Emit(static_cast<uint8_t>((w.pending_bits() << (8 - k)) | low));
    *resume_at = byte + 1 + (orig == 0xFF ? 1 : 0);  // past its stuffing
  }
  *size = static_cast<size_t>(w.end() - o);
  return true;
}

namespace {

// The next marker at or after `p` in entropy-coded data (0xFF followed by a
// byte other than 0x00, the stuffing of a data 0xFF): its position, or
// `end` when there is none. Fill bytes (0xFF 0xFF) before a marker are not
// skipped: the encoders that write restart markers do not emit them, and
// CropRestartMcus then declines the file.
size_t NextMarker(const uint8_t* b, size_t p, size_t end) {
  while (p + 1 < end) {
    const void* hit = std::memchr(b + p, 0xFF, end - 1 - p);
    if (hit == nullptr) return end;
    p = static_cast<size_t>(static_cast<const uint8_t*>(hit) - b);
    if (b[p + 1] != 0x00) return p;
    p += 2;
  }
  return end;
}

bool IsRst(const uint8_t* b, size_t at) { return b[at] == 0xFF && (b[at + 1] & 0xF8) == 0xD0; }

uint32_t LoadBe32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

}  // namespace

bool AddRestarts(std::span<const uint8_t> bytes, const JpegLayout& L, std::vector<uint8_t>* out,
                 size_t* scan_offset) {
  if (L.restart_interval != 0 || L.data_start >= bytes.size() || L.sos_at >= L.data_start) {
    return false;
  }
  const size_t rows = static_cast<size_t>(L.mcu_rows);
  const size_t mcus = rows * static_cast<size_t>(L.mcus_per_row);
  const size_t table = sizeof kRowTableId + 3 + 4 * rows;  // the APP15 payload
  if (table + 2 > 0xFFFF) return false;
  // The header with DRI and the table before SOS; then the data: each data
  // byte possibly stuffed, per MCU a marker, padding and the re-encoded DC
  // codes (at most 27 bits a component, stuffed), EOI, and slack for
  // SpanWriter's whole-word stores.
  const size_t head = L.data_start + 6 + 4 + table;
  const size_t bound = head + 2 * (bytes.size() - L.data_start) +
                       mcus * (3 + 8 * static_cast<size_t>(L.comps)) + 16;
  out->resize(bound);
  uint8_t* o = out->data();
  std::memcpy(o, bytes.data(), L.sos_at);
  size_t w = L.sos_at;
  const uint8_t dri[6] = {0xFF, 0xDD, 0x00, 0x04, 0x00, 0x01};
  std::memcpy(o + w, dri, sizeof dri);
  w += sizeof dri;
  o[w++] = 0xFF;
  o[w++] = 0xEF;
  o[w++] = static_cast<uint8_t>((table + 2) >> 8);
  o[w++] = static_cast<uint8_t>((table + 2) & 0xFF);
  std::memcpy(o + w, kRowTableId, sizeof kRowTableId);
  w += sizeof kRowTableId;
  o[w++] = kRowTableVersion;
  o[w++] = static_cast<uint8_t>(rows >> 8);
  o[w++] = static_cast<uint8_t>(rows & 0xFF);
  const size_t table_at = w;
  w += 4 * rows;
  std::memcpy(o + w, bytes.data() + L.sos_at, L.data_start - L.sos_at);
  w += L.data_start - L.sos_at;
  const size_t data = w;

  BitReader br(bytes, L.data_start, static_cast<uint32_t>(L.data_start * 8));
  SpanWriter sw(o + data);
  int32_t pred[4] = {0, 0, 0, 0};  // the source's DC predictors
  for (size_t k = 0; k < mcus; ++k) {
    if (k % static_cast<size_t>(L.mcus_per_row) == 0) {
      const size_t at = static_cast<size_t>(sw.end() - (o + data));
      uint8_t* e = o + table_at + 4 * (k / static_cast<size_t>(L.mcus_per_row));
      e[0] = static_cast<uint8_t>(at >> 24), e[1] = static_cast<uint8_t>(at >> 16);
      e[2] = static_cast<uint8_t>(at >> 8), e[3] = static_cast<uint8_t>(at);
    }
    for (int c = 0; c < L.comps; ++c) {
      const HuffTable& dc = L.dc[L.comp[c].dc];
      const HuffTable& ac = L.ac[L.comp[c].ac];
      int32_t diff;
      if (!DecodeDc(br, dc, &diff)) return false;
      pred[c] += diff;
      if (pred[c] > 32767 || pred[c] < -32767) return false;
      const uint32_t after_dc = br.Position();
      const int ns = Category(pred[c]);  // against 0, after the restart
      if (ns > 11 || dc.size[ns] == 0) return false;
      sw.Put(dc.code[ns], dc.size[ns]);
      if (ns != 0) sw.Put(static_cast<uint32_t>(pred[c] >= 0 ? pred[c] : pred[c] - 1), ns);
      if (!SkipAcs(br, ac)) return false;
      for (int blk = 1; blk < L.comp[c].blocks; ++blk) {
        if (!SkipBlock(br, dc, ac, &diff)) return false;
        pred[c] += diff;
        if (pred[c] > 32767 || pred[c] < -32767) return false;
      }
      if (br.overrun()) return false;
      const uint32_t span_end = br.Position();
      if (span_end < after_dc) return false;
      sw.Copy(bytes.data(), after_dc, span_end);
    }
    sw.Flush();
    if (k + 1 < mcus) {
      uint8_t* e = sw.end();  // a marker is not data: written past the writer
      e[0] = 0xFF;
      e[1] = static_cast<uint8_t>(0xD0 + (k & 7));
      sw = SpanWriter(e + 2);
    }
  }
  uint8_t* e = sw.end();
  *e++ = 0xFF;
  *e++ = 0xD9;
  out->resize(static_cast<size_t>(e - o));
  *scan_offset = data;
  return true;
}

bool FindRestartRows(std::span<const uint8_t> bytes, const JpegLayout& L,
                     std::vector<uint32_t>* rows) {
  rows->clear();
  if (L.restart_interval != 1 || L.data_start >= bytes.size()) return false;
  const uint8_t* b = bytes.data();
  const size_t n = bytes.size();
  rows->reserve(static_cast<size_t>(L.mcu_rows));
  size_t p = L.data_start;
  const int64_t mcus = int64_t{L.mcus_per_row} * L.mcu_rows;
  for (int64_t k = 0; k < mcus; ++k) {
    if (k % L.mcus_per_row == 0) rows->push_back(static_cast<uint32_t>(p - L.data_start));
    const size_t m = NextMarker(b, p, n);
    if (m + 1 >= n) return false;
    if (k + 1 == mcus) return b[m + 1] == 0xD9;  // EOI after the last MCU
    if (!IsRst(b, m) || (b[m + 1] & 7) != (k & 7)) return false;
    p = m + 2;
  }
  return false;
}

bool CropRestartMcus(std::span<const uint8_t> bytes, const JpegLayout& L, int r0, int r1, int c0,
                     int c1, std::vector<uint8_t>* out, size_t* size) {
  if (L.restart_interval != 1 || r0 < 0 || r1 > L.mcu_rows || r0 >= r1 || c0 < 0 ||
      c1 > L.mcus_per_row || c0 >= c1 || L.data_start >= bytes.size()) {
    return false;
  }
  const uint8_t* b = bytes.data();
  const size_t n = bytes.size();
  // Where row r0 starts: from the row table when it is there and points
  // just past a restart marker, else by counting markers.
  const bool table =
      L.row_table_rows == L.mcu_rows && L.row_table_at + 4 * size_t(L.mcu_rows) <= n;
  // Row r's first byte per the table (0: not a place a row can start).
  auto table_row = [&](int r) -> size_t {
    const size_t at = L.data_start + LoadBe32(b + L.row_table_at + 4 * static_cast<size_t>(r));
    if (at >= n || (r == 0 ? at != L.data_start : at < L.data_start + 2 || !IsRst(b, at - 2))) {
      return 0;
    }
    return at;
  };
  size_t row_at = 0;
  if (table) {
    if ((row_at = table_row(r0)) == 0) return false;
  } else {
    row_at = L.data_start;
    for (int64_t k = 0, skip = int64_t{r0} * L.mcus_per_row; k < skip; ++k) {
      const size_t m = NextMarker(b, row_at, n);
      if (m + 1 >= n || !IsRst(b, m)) return false;
      row_at = m + 2;
    }
  }
  // The header, the MCUs' bytes (no longer than the rest of the file), a
  // marker after each, EOI.
  const size_t mcus = static_cast<size_t>(r1 - r0) * static_cast<size_t>(c1 - c0);
  const size_t bound = L.data_start + (n - row_at) + 2 * mcus + 2;
  if (out->size() < bound) out->resize(bound);
  uint8_t* o = out->data();
  WriteCutHeader(b, L, r0, r1, c0, c1, o);
  size_t w = L.data_start;
  size_t copied = 0;
  size_t p = row_at;
  for (int row = r0; row < r1; ++row) {
    for (int c = 0; c < L.mcus_per_row; ++c) {
      const size_t m = NextMarker(b, p, n);
      if (m + 1 >= n) return false;
      const bool last_of_image = row + 1 == L.mcu_rows && c + 1 == L.mcus_per_row;
      if (last_of_image ? b[m + 1] != 0xD9 : !IsRst(b, m)) return false;
      if (c >= c0 && c < c1) {
        std::memcpy(o + w, b + p, m - p);
        w += m - p;
        if (++copied < mcus) {
          o[w++] = 0xFF;
          o[w++] = static_cast<uint8_t>(0xD0 + ((copied - 1) & 7));
        }
      }
      p = m + 2;
      if (c + 1 == c1) {  // the rest of the row is not needed
        if (row + 1 == r1) break;
        if (table) {
          if ((p = table_row(row + 1)) == 0) return false;
          break;
        }
      }
    }
  }
  o[w++] = 0xFF;
  o[w++] = 0xD9;
  *size = w;
  return true;
}

}  // namespace internal
}  // namespace stoker::decode
