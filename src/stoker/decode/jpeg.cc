// JPEG decoding with libjpeg-turbo (2.1.x API): full decodes that match
// Pillow pixel for pixel, and region decodes that touch only the rows and
// iMCU columns a crop needs, at a DCT scale of 1, 1/2, 1/4 or 1/8.
//
// Error handling. libjpeg reports fatal errors through error_exit, which we
// turn into a longjmp back to the function that called libjpeg, and from
// there into a Status. Every function that calls setjmp keeps only
// trivially destructible locals, and all C++ work that may allocate or call
// user code (the crop function) happens between those functions, never while
// a longjmp could cross it. Warnings that mean pixels are missing (data ends
// early, bad entropy codes) are errors too: a truncated file must not come
// back as a picture with grey rows.
//
// EXIF orientation is ignored, as Pillow's Image.open and torchvision do.

#include <csetjmp>
#include <cstdio>
#include <cstring>

// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>
#include <jerror.h>

#include <cmath>
#include <cstdlib>
#include <iterator>
#include <string>

#include "stoker/decode/decode_internal.h"
#include "stoker/decode/jpeg_restart.h"

namespace stoker::decode::internal {
namespace {

// A progressive JPEG can declare any number of scans, each of which walks
// the whole coefficient buffer; TurboJPEG caps them at 500, so do we.
constexpr int kMaxScans = 500;

struct ErrorMgr {
  jpeg_error_mgr pub;  // first: libjpeg casts cinfo->err to this
  jmp_buf jmp;
  StatusCode code = StatusCode::kCorrupt;
  char message[JMSG_LENGTH_MAX + 64];
  // Premature end of data seen while reading the scanlines of a single-scan
  // image. Harmless unless the decoder then actually runs out of bits (that
  // raises JWRN_HIT_MARKER): it also happens when only the EOI is missing.
  bool lenient_eof = false;
  bool eof_seen = false;
};

StatusCode CodeForError(int msg_code) {
  switch (msg_code) {
    case JERR_OUT_OF_MEMORY:
    case JERR_NO_BACKING_STORE:
    case JERR_IMAGE_TOO_BIG:
    case JERR_WIDTH_OVERFLOW:
      return StatusCode::kResourceExhausted;
    case JERR_SOF_UNSUPPORTED:
    case JERR_BAD_PRECISION:
    case JERR_NOT_COMPILED:
    case JERR_ARITH_NOTIMPL:
    case JERR_CONVERSION_NOTIMPL:
      return StatusCode::kUnsupported;
    case JERR_BAD_CROP_SPEC:
    case JERR_BAD_STATE:
    case JERR_BAD_STRUCT_SIZE:
    case JERR_BAD_LIB_VERSION:
      return StatusCode::kInternal;  // stoker misused libjpeg: a bug here
    default:
      return StatusCode::kCorrupt;
  }
}

[[noreturn]] void Fail(j_common_ptr cinfo, StatusCode code, const char* message) {
  auto* err = reinterpret_cast<ErrorMgr*>(cinfo->err);
  err->code = code;
  if (message != nullptr) {
    std::snprintf(err->message, sizeof err->message, "%s", message);
  } else {
    // libjpeg's own text ("Unsupported marker type 0xf1") does not say
    // that it is about a JPEG, nor what is wrong with it: say both.
    char buf[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, buf);
    const char* what = code == StatusCode::kCorrupt       ? "invalid JPEG data"
                       : code == StatusCode::kUnsupported ? "unsupported JPEG variant"
                                                          : "JPEG";
    std::snprintf(err->message, sizeof err->message, "%s: %s", what, buf);
  }
  std::longjmp(err->jmp, 1);
}

void ErrorExit(j_common_ptr cinfo) { Fail(cinfo, CodeForError(cinfo->err->msg_code), nullptr); }

void EmitMessage(j_common_ptr cinfo, int msg_level) {
  if (msg_level >= 0) return;  // trace messages
  auto* err = reinterpret_cast<ErrorMgr*>(cinfo->err);
  err->pub.num_warnings++;
  switch (err->pub.msg_code) {
    case JWRN_JPEG_EOF:
      if (err->lenient_eof) {
        err->eof_seen = true;
        return;
      }
      Fail(cinfo, StatusCode::kCorrupt, "truncated JPEG data");
    case JWRN_HIT_MARKER:  // the entropy decoder needed bits that are not there
      Fail(cinfo, StatusCode::kCorrupt,
           err->eof_seen ? "truncated JPEG data"
                         : "truncated JPEG data (premature end of data segment)");
    case JWRN_HUFF_BAD_CODE:
    case JWRN_ARITH_BAD_CODE:
    case JWRN_MUST_RESYNC:
      Fail(cinfo, StatusCode::kCorrupt, nullptr);
    default:
      // Benign: extraneous bytes before a marker (common in ImageNet), odd
      // progression or SOS parameters, unknown Adobe transform, bad ICC
      // marker, JFIF revision. Pillow decodes these silently; so do we.
      return;
  }
}

void OutputMessage(j_common_ptr) {}  // never print

void ProgressMonitor(j_common_ptr cinfo) {
  if (!cinfo->is_decompressor) return;
  auto* dinfo = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (dinfo->input_scan_number > kMaxScans) {
    char msg[96];
    std::snprintf(msg, sizeof msg, "JPEG has more than %d scans", kMaxScans);
    Fail(cinfo, StatusCode::kCorrupt, msg);
  }
}

// Pillow's CMYK -> RGB (Convert.c cmyk2rgb) applied to libjpeg's raw CMYK,
// which Pillow first inverts ("CMYK;I": it assumes Adobe's inverted CMYK for
// every 4-component JPEG). With c, k the raw values: Pillow sees C' = 255-c,
// K' = 255-k, and computes nk = 255-K' = k, R = nk - MULDIV255(C', nk).
inline uint8_t MulDiv255(int a, int b) {
  int t = a * b + 128;
  return static_cast<uint8_t>(((t >> 8) + t) >> 8);
}

void CmykRowToRgb(const uint8_t* in, uint8_t* out, size_t width) {
  for (size_t x = 0; x < width; ++x, in += 4, out += 3) {
    const int k = in[3];
    out[0] = static_cast<uint8_t>(k - MulDiv255(255 - in[0], k));
    out[1] = static_cast<uint8_t>(k - MulDiv255(255 - in[1], k));
    out[2] = static_cast<uint8_t>(k - MulDiv255(255 - in[2], k));
  }
}

// What to decode, in source pixels, and at which scale.
struct Plan {
  Rect crop;      // in source pixels
  int denom = 1;  // 1, 2, 4 or 8
  bool cmyk = false;
  bool fast = false;
};

// The decoded area, in scaled pixels.
struct Decoded {
  uint8_t* data = nullptr;  // first pixel of the view
  int width = 0, height = 0;
  size_t stride = 0;
  int x0 = 0, y0 = 0;  // view origin in the scaled image
};

// The whole pixels of a w x h image scaled by 1/denom that cover `crop`
// (in source pixels): columns [x0, x1), rows [y0, y1), never empty.
struct Cover {
  int x0, x1, y0, y1;
};
Cover CoverCrop(const Rect& crop, int denom, int w, int h) {
  const double d = denom;
  Cover c;
  c.x0 = static_cast<int>(std::floor(crop.x / d));
  c.x1 = static_cast<int>(std::ceil((crop.x + crop.w) / d));
  c.y0 = static_cast<int>(std::floor(crop.y / d));
  c.y1 = static_cast<int>(std::ceil((crop.y + crop.h) / d));
  c.x0 = c.x0 < 0 ? 0 : (c.x0 > w - 1 ? w - 1 : c.x0);
  c.y0 = c.y0 < 0 ? 0 : (c.y0 > h - 1 ? h - 1 : c.y0);
  c.x1 = c.x1 > w ? w : (c.x1 <= c.x0 ? c.x0 + 1 : c.x1);
  c.y1 = c.y1 > h ? h : (c.y1 <= c.y0 ? c.y0 + 1 : c.y1);
  return c;
}

// Largest denominator in {8, 4, 2} at which the crop still covers the
// output; else 1.
int ChooseDenom(const Rect& crop, int out_w, int out_h) {
  for (int d : {8, 4, 2}) {
    if (crop.w / d >= out_w && crop.h / d >= out_h) return d;
  }
  return 1;
}

// A source of two byte ranges, one after the other (a jump's synthetic
// prefix, then the rest of the file), otherwise as jpeg_mem_src: past the
// end it warns and feeds EOI markers.
struct TwoPartSource {
  jpeg_source_mgr pub;  // first: libjpeg casts cinfo->src to this
  const uint8_t* second = nullptr;
  size_t second_len = 0;
  bool second_given = false;
};

const JOCTET kFakeEoi[2] = {0xFF, JPEG_EOI};

void InitTwoPart(j_decompress_ptr) {}
void TermTwoPart(j_decompress_ptr) {}

boolean FillTwoPart(j_decompress_ptr cinfo) {
  auto* src = reinterpret_cast<TwoPartSource*>(cinfo->src);
  if (!src->second_given && src->second_len > 0) {
    src->second_given = true;
    src->pub.next_input_byte = src->second;
    src->pub.bytes_in_buffer = src->second_len;
    return TRUE;
  }
  WARNMS(cinfo, JWRN_JPEG_EOF);
  src->pub.next_input_byte = kFakeEoi;
  src->pub.bytes_in_buffer = 2;
  return TRUE;
}

void SkipTwoPart(j_decompress_ptr cinfo, long num_bytes) {
  if (num_bytes <= 0) return;
  jpeg_source_mgr* src = cinfo->src;
  while (num_bytes > static_cast<long>(src->bytes_in_buffer)) {
    num_bytes -= static_cast<long>(src->bytes_in_buffer);
    FillTwoPart(cinfo);
  }
  src->next_input_byte += num_bytes;
  src->bytes_in_buffer -= static_cast<size_t>(num_bytes);
}

}  // namespace

struct JpegDecoder::State {
  jpeg_decompress_struct cinfo;
  ErrorMgr err;
  jpeg_progress_mgr progress;
  bool created = false;
  ScratchBuffer out;
  ScratchBuffer cmyk_rows;
  // Row jumps (jpeg_rows.h).
  JpegLayout layout;
  std::vector<uint8_t> prefix;
  std::vector<JpegRowIndex::RowStart> walked;
  TwoPartSource two_part;

  Status ErrorStatus() const { return Status(err.code, err.message); }

  void ResetErrorState() {
    err.code = StatusCode::kCorrupt;
    err.message[0] = '\0';
    err.lenient_eof = false;
    err.eof_seen = false;
  }

  // Each of the following calls setjmp and returns false after a libjpeg
  // error (ErrorStatus() says which). Only trivially destructible locals.
  bool Create() {
    if (setjmp(err.jmp)) return false;
    jpeg_create_decompress(&cinfo);
    created = true;
    return true;
  }

  bool ReadHeader(std::span<const uint8_t> bytes) {
    if (setjmp(err.jmp)) return false;
    jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
    jpeg_read_header(&cinfo, TRUE);  // no suspension with a memory source
    return true;
  }

  bool ReadJumpHeader(size_t size, size_t resume_at, std::span<const uint8_t> bytes) {
    if (setjmp(err.jmp)) return false;
    two_part = TwoPartSource{};
    two_part.pub.init_source = InitTwoPart;
    two_part.pub.fill_input_buffer = FillTwoPart;
    two_part.pub.skip_input_data = SkipTwoPart;
    two_part.pub.resync_to_restart = jpeg_resync_to_restart;
    two_part.pub.term_source = TermTwoPart;
    two_part.pub.next_input_byte = prefix.data();
    two_part.pub.bytes_in_buffer = size;
    two_part.second = bytes.data() + resume_at;
    two_part.second_len = bytes.size() - resume_at;
    cinfo.src = &two_part.pub;
    jpeg_read_header(&cinfo, TRUE);
    return true;
  }

  // A fresh decompressor (see Decode), its progress monitor set.
  bool Fresh() {
    if (created) {
      jpeg_destroy_decompress(&cinfo);
      created = false;
    }
    if (!Create()) return false;
    cinfo.progress = &progress;
    return true;
  }

  // After a new stream's header was refused or came out another size than
  // it should (which should not happen): back to the file as it is.
  bool Restart(std::span<const uint8_t> bytes) {
    ResetErrorState();
    return Fresh() && ReadHeader(bytes);
  }

  // Reads the header of the first `size` bytes of `prefix`, a JPEG of MCU
  // rows [r0, r1) and columns [c0, c1) of `bytes` (layout), and says where
  // it lies in the file; if its header is refused or its size is not what
  // it should be (which should not happen), goes back to the file as it is.
  bool UseCut(std::span<const uint8_t> bytes, size_t size, int r0, int r1, int c0, int c1,
              int* cut_x, int* cut_y, bool* used = nullptr) {
    const JpegLayout& L = layout;
    if (!Fresh()) return false;
    if (!ReadHeader({prefix.data(), size}) ||
        static_cast<int>(cinfo.image_width) != CutWidth(L, c0, c1) ||
        static_cast<int>(cinfo.image_height) != CutHeight(L, r0, r1)) {
      return Restart(bytes);
    }
    *cut_x = c0 * L.mcu_w;
    *cut_y = r0 * L.mcu_h;
    if (used != nullptr) *used = true;
    return true;
  }

  // Makes libjpeg decode less than the whole file for the crop, using what
  // `rows` knows of the file (jpeg_rows.h), and says how many source
  // columns and rows were cut from the left and top (0, 0: the header of
  // `bytes` stays read, as on entry). On false, ErrorStatus() says what
  // went wrong.
  //  - With a grid of every MCU's start (built by walking the whole scan
  //    the first time, while the index has room): a JPEG of just the
  //    crop's MCU rows and columns, made by copying their bits.
  //  - Else: a stream that starts at the MCU row above the crop.
  // Either keeps one real pixel row and column around the crop, which
  // fancy upsampling reads as context, so the pixels do not change.
  bool Jump(std::span<const uint8_t> bytes, const RowIndexRef& rows, const Plan& plan,
            int* cut_x, int* cut_y) {
    *cut_x = *cut_y = 0;
    if (plan.cmyk || !ParseJpegLayout(bytes, &layout)) return true;
    const JpegLayout& L = layout;
    if (L.restart_interval != 0 && L.restart_interval != 1) return true;
    const int d = plan.denom;
    // The crop's scaled pixels, as DecodeRows computes them.
    const Cover cover = CoverCrop(plan.crop, d, (L.width + d - 1) / d, (L.height + d - 1) / d);
    const int cx0 = cover.x0, cx1 = cover.x1, ry0 = cover.y0, ry1 = cover.y1;
    const int rh = L.mcu_h / d, cw = L.mcu_w / d;
    int r0 = ry0 >= 1 ? (ry0 - 1) / rh : 0;
    if (r0 > L.mcu_rows - 1) r0 = L.mcu_rows - 1;
    const int r1 = ry1 / rh + 1 < L.mcu_rows ? ry1 / rh + 1 : L.mcu_rows;
    const int c0 = cx0 >= 1 ? (cx0 - 1) / cw : 0;
    const int c1 = cx1 / cw + 1 < L.mcus_per_row ? cx1 / cw + 1 : L.mcus_per_row;
    // A file with a restart marker after every MCU (stoker's shards) is
    // cut by its markers, with no index.
    if (L.restart_interval == 1) {
      if (r0 == 0 && c0 == 0 && c1 == L.mcus_per_row) return true;  // nothing to cut
      size_t size = 0;
      if (!CropRestartMcus(bytes, L, r0, r1, c0, c1, &prefix, &size)) return true;
      return UseCut(bytes, size, r0, r1, c0, c1, cut_x, cut_y);
    }
    if (rows.index == nullptr) return true;
    JpegRowIndex& index = *rows.index;

    // The grid is walked on a file's second decode: one that is decoded
    // only once (a single epoch, a loader made anew each epoch) never pays
    // for the walk; its first decode leaves its row starts.
    std::shared_ptr<const JpegRowIndex::Grid> grid = index.FindGrid(rows.sample, L.key);
    const size_t row_len = static_cast<size_t>(L.mcus_per_row) + 1;
    if (grid == nullptr && index.Affords(row_len * static_cast<size_t>(L.mcu_rows)) &&
        index.Seen(rows.sample, L.key)) {
      auto walked_grid = std::make_shared<JpegRowIndex::Grid>();
      if (!WalkGrid(bytes, L, walked_grid.get())) return true;  // libjpeg will say
      index.RememberGrid(rows.sample, L.key, walked_grid, row_len);
      grid = std::move(walked_grid);
    }
    if (grid != nullptr) {
      if (r0 == 0 && c0 == 0 && c1 == L.mcus_per_row) return true;  // nothing to cut
      size_t size = 0;
      if (!CropMcus(bytes, L, *grid, r0, r1, c0, c1, &prefix, &size)) return true;
      bool used = false;
      if (!UseCut(bytes, size, r0, r1, c0, c1, cut_x, cut_y, &used)) return false;
      if (used) {
        index.CountJump(r0);
        index.CountCrop();
      }
      return true;
    }

    // Row starts only. The synthetic first row costs about what one real
    // row would, so jump only past two or more.
    const int row = r0;
    if (row < 2) {
      const JpegRowIndex::RowStart first = FirstRow(L);
      index.Remember(rows.sample, L.key, 0, {&first, 1});  // seen: walk the grid next time
      return true;
    }
    JpegRowIndex::RowStart start;
    int known = 0;
    const bool fresh = !index.Lookup(rows.sample, L.key, row, &start, &known);
    if (fresh) start = FirstRow(L), known = 0;
    if (known < row) {
      walked.clear();
      if (fresh) walked.push_back(start);
      if (!WalkRows(bytes, L, start, known, row, &walked)) return true;  // libjpeg will say
      index.Remember(rows.sample, L.key, fresh ? 0 : known + 1, walked);
      start = walked.back();
    }
    size_t size = 0, resume_at = 0;
    if (!BuildJump(bytes, L, start, row, &prefix, &size, &resume_at)) return true;
    if (!Fresh()) return false;
    const int new_height = L.height - (row - 1) * L.mcu_h;
    if (!ReadJumpHeader(size, resume_at, bytes) ||
        static_cast<int>(cinfo.image_height) != new_height ||
        static_cast<int>(cinfo.image_width) != L.width) {
      return Restart(bytes);
    }
    index.CountJump(row - 1);
    *cut_y = (row - 1) * L.mcu_h;
    return true;
  }

  bool DecodeRows(const Plan& plan, Decoded* dec) {
    if (setjmp(err.jmp)) return false;
    cinfo.scale_num = 1;
    cinfo.scale_denom = static_cast<unsigned>(plan.denom);
    cinfo.out_color_space = plan.cmyk ? JCS_CMYK : JCS_RGB;
    cinfo.dct_method = plan.fast ? JDCT_IFAST : JDCT_ISLOW;
    // Always fancy upsampling: plain upsampling selects libjpeg-turbo 2.1's
    // merged upsampler, whose jpeg_skip_scanlines reads uninitialised rows
    // (wrong pixels, and crashes under concurrency, seen in our tests).
    cinfo.do_fancy_upsampling = TRUE;
    cinfo.buffered_image = FALSE;
    cinfo.raw_data_out = FALSE;
    cinfo.quantize_colors = FALSE;

    jpeg_start_decompress(&cinfo);  // progressive: reads the whole file here
    // The arithmetic decoder stuffs zeros silently when it runs out of
    // data (no JWRN_HIT_MARKER), so only Huffman single-scan images may
    // tolerate an early end of data; see below.
    const bool huffman_single_scan = !jpeg_has_multiple_scans(&cinfo) && !cinfo.arith_code;

    // The crop in scaled pixels, and the whole pixels that cover it.
    const int out_w = static_cast<int>(cinfo.output_width);
    const Cover cover = CoverCrop(plan.crop, plan.denom, out_w,
                                  static_cast<int>(cinfo.output_height));
    const int cx0 = cover.x0, cx1 = cover.x1, ry0 = cover.y0, ry1 = cover.y1;

    // Columns. jpeg_crop_scanline moves the offset down to an iMCU boundary
    // and widens the width to match; the region's first and last columns
    // then get edge-replicated chroma when a component is upsampled (4:2:0
    // and 4:2:2 at full scale; at 1/2..1/8 libjpeg-turbo scales chroma in
    // the IDCT instead), so ask for one column more on each side.
    //
    // libjpeg-turbo 2.1's jpeg_crop_scanline also sets each component's
    // downsampled_width as if the chroma IDCT were never scaled up; when it
    // is (chroma DCT size != luma's) and the component is still upsampled
    // (e.g. 4x2 luma sampling at 1/2 and 1/4 scale), the upsampler then
    // replicates the edge in the middle of the row. Those rare files are
    // decoded at full width instead (rows are still skipped).
    int margin = 0;
    bool can_crop_columns = true;
    for (int c = 0; c < cinfo.num_components; ++c) {
      const jpeg_component_info& comp = cinfo.comp_info[c];
      const bool h_upsampled = comp.h_samp_factor * comp.DCT_scaled_size !=
                               cinfo.max_h_samp_factor * cinfo.min_DCT_scaled_size;
      const bool v_upsampled = comp.v_samp_factor * comp.DCT_scaled_size !=
                               cinfo.max_v_samp_factor * cinfo.min_DCT_scaled_size;
      if (h_upsampled) margin = 1;
      if ((h_upsampled || v_upsampled) && comp.DCT_scaled_size != cinfo.min_DCT_scaled_size) {
        can_crop_columns = false;
      }
    }
    JDIMENSION xoff = static_cast<JDIMENSION>(cx0 - margin < 0 ? 0 : cx0 - margin);
    JDIMENSION xend = static_cast<JDIMENSION>(cx1 + margin > out_w ? out_w : cx1 + margin);
    JDIMENSION width = xend - xoff;
    if (!can_crop_columns) {
      xoff = 0;
      width = cinfo.output_width;
    } else if (xoff > 0 || width < cinfo.output_width) {
      jpeg_crop_scanline(&cinfo, &xoff, &width);  // may lower xoff, widen width
    }
    const size_t row_w = cinfo.output_width;  // == width after a crop
    const size_t stride = row_w * 3;
    const int rows = ry1 - ry0;

    // Get() may throw std::bad_alloc: Decoder turns it into a Status and
    // the caller's AbortGuard resets libjpeg (no frame here needs unwinding).
    uint8_t* out = this->out.Get(stride * static_cast<size_t>(rows));
    constexpr int kBatch = 16;
    uint8_t* cmyk = plan.cmyk ? cmyk_rows.Get(row_w * 4 * kBatch) : nullptr;

    // Past this point, for a single-scan Huffman image, a premature end of
    // data is an error only if the decoder actually misses bits
    // (JWRN_HIT_MARKER): the bit reader also runs into the end of a file
    // that lacks only its EOI marker, and that file is complete.
    err.lenient_eof = huffman_single_scan;

    if (ry0 > 0) {
      const JDIMENSION skipped = jpeg_skip_scanlines(&cinfo, static_cast<JDIMENSION>(ry0));
      if (skipped != static_cast<JDIMENSION>(ry0)) {
        Fail(reinterpret_cast<j_common_ptr>(&cinfo), StatusCode::kCorrupt,
             "truncated JPEG data (could not skip to the crop)");
      }
    }
    JSAMPROW ptrs[kBatch];
    int done = 0;
    while (done < rows) {
      const int want = rows - done < kBatch ? rows - done : kBatch;
      for (int i = 0; i < want; ++i) {
        ptrs[i] = plan.cmyk ? cmyk + static_cast<size_t>(i) * row_w * 4
                            : out + static_cast<size_t>(done + i) * stride;
      }
      const JDIMENSION got = jpeg_read_scanlines(&cinfo, ptrs, static_cast<JDIMENSION>(want));
      if (got == 0) {
        Fail(reinterpret_cast<j_common_ptr>(&cinfo), StatusCode::kCorrupt,
             "truncated JPEG data (no more scanlines)");
      }
      if (plan.cmyk) {
        for (JDIMENSION i = 0; i < got; ++i) {
          CmykRowToRgb(ptrs[i], out + static_cast<size_t>(done + i) * stride, row_w);
        }
      }
      done += static_cast<int>(got);
    }
    err.lenient_eof = false;

    dec->data = out + static_cast<size_t>(cx0 - static_cast<int>(xoff)) * 3;
    dec->width = cx1 - cx0;
    dec->height = rows;
    dec->stride = stride;
    dec->x0 = cx0;
    dec->y0 = ry0;
    return true;
  }
};

namespace {
// Leaves the decompressor idle and reusable whatever happened (error,
// exception, early return): jpeg_abort_decompress is valid in every state,
// frees the per-image memory and skips the rest of the file.
struct AbortGuard {
  jpeg_decompress_struct* cinfo;
  ~AbortGuard() { jpeg_abort_decompress(cinfo); }
};
}  // namespace

namespace {

// A libjpeg destination that writes into a std::vector. jpeg_mem_dest's
// buffer is freed and replaced by libjpeg as it grows, and the caller's
// pointer is updated only when compression finishes: after an error in
// between it dangles (freeing it was a double free, found by decode_fuzz).
struct VectorDest {
  jpeg_destination_mgr pub;  // first: libjpeg casts cinfo->dest to this
  std::vector<uint8_t> bytes;
  size_t size = 0;  // bytes written, once finished

  static void Init(j_compress_ptr cinfo) {
    auto* d = reinterpret_cast<VectorDest*>(cinfo->dest);
    d->bytes.resize(64 * 1024);
    d->pub.next_output_byte = d->bytes.data();
    d->pub.free_in_buffer = d->bytes.size();
  }
  static boolean Empty(j_compress_ptr cinfo) {
    auto* d = reinterpret_cast<VectorDest*>(cinfo->dest);
    const size_t used = d->bytes.size();  // libjpeg empties only a full buffer
    d->bytes.resize(used * 2);
    d->pub.next_output_byte = d->bytes.data() + used;
    d->pub.free_in_buffer = d->bytes.size() - used;
    return TRUE;
  }
  static void Term(j_compress_ptr cinfo) {
    auto* d = reinterpret_cast<VectorDest*>(cinfo->dest);
    d->size = d->bytes.size() - d->pub.free_in_buffer;
  }
  void Attach(j_compress_ptr cinfo) {
    pub.init_destination = Init;
    pub.empty_output_buffer = Empty;
    pub.term_destination = Term;
    cinfo->dest = &pub;
  }
  std::span<const uint8_t> written() const { return {bytes.data(), size}; }
};

// libjpeg's transcoding objects for RewriteWithRestarts. Run calls setjmp
// and keeps only trivially destructible locals; the destructor frees what
// libjpeg allocated.
struct Transcoder {
  jpeg_decompress_struct src;
  jpeg_compress_struct dst;
  ErrorMgr err;
  jpeg_progress_mgr progress;
  bool src_created = false, dst_created = false;
  VectorDest out;
  bool too_big = false;
  bool incomplete = false;
  bool fractional = false;

  Transcoder() {
    std::memset(&src, 0, sizeof src);
    std::memset(&dst, 0, sizeof dst);
    src.err = jpeg_std_error(&err.pub);
    dst.err = &err.pub;
    err.pub.error_exit = ErrorExit;
    err.pub.emit_message = EmitMessage;
    err.pub.output_message = OutputMessage;
    progress.progress_monitor = ProgressMonitor;
  }
  ~Transcoder() {
    if (dst_created) jpeg_destroy_compress(&dst);
    if (src_created) jpeg_destroy_decompress(&src);
  }
  Transcoder(const Transcoder&) = delete;
  Transcoder& operator=(const Transcoder&) = delete;

  static bool Is(jpeg_saved_marker_ptr m, int marker, const char* id, unsigned len) {
    return m->marker == marker && m->data_length >= len && std::memcmp(m->data, id, len) == 0;
  }

  // What libjpeg checks before it decodes a sequential file's data (the
  // markers, the tables, the frame): for the bit copy, which reads only
  // what it needs of the header, to refuse what a decode would refuse.
  bool CheckHeader(std::span<const uint8_t> in) {
    if (setjmp(err.jmp)) return false;
    jpeg_create_decompress(&src);
    src_created = true;
    src.progress = &progress;
    jpeg_mem_src(&src, in.data(), static_cast<unsigned long>(in.size()));
    jpeg_read_header(&src, TRUE);
    jpeg_start_decompress(&src);  // a single-scan file: tables latched, no data read
    return true;
  }

  bool Run(std::span<const uint8_t> in, int64_t max_pixels, bool optimize) {
    if (setjmp(err.jmp)) return false;
    jpeg_create_decompress(&src);
    src_created = true;
    src.progress = &progress;
    jpeg_create_compress(&dst);
    dst_created = true;
    jpeg_mem_src(&src, in.data(), static_cast<unsigned long>(in.size()));
    jpeg_save_markers(&src, JPEG_COM, 0xFFFF);
    for (int m = 0; m < 16; ++m) jpeg_save_markers(&src, JPEG_APP0 + m, 0xFFFF);
    jpeg_read_header(&src, TRUE);
    if (max_pixels > 0 && int64_t{src.image_width} * src.image_height > max_pixels) {
      too_big = true;
      return true;
    }
    // Sampling factors libjpeg's upsampler refuses when decoding (jdsample.c,
    // "Fractional sampling"): the coefficients alone would copy, but the
    // file never decodes.
    for (int c = 0; c < src.num_components; ++c) {
      const jpeg_component_info& ci = src.comp_info[c];
      if (ci.h_samp_factor < 1 || ci.v_samp_factor < 1 ||
          src.max_h_samp_factor % ci.h_samp_factor != 0 ||
          src.max_v_samp_factor % ci.v_samp_factor != 0) {
        fractional = true;
        return true;
      }
    }
    // As the decoder: a single-scan Huffman file that lacks only its EOI is
    // complete (see DecodeRows).
    err.lenient_eof = !jpeg_has_multiple_scans(&src) && !src.arith_code;
    jvirt_barray_ptr* coefficients = jpeg_read_coefficients(&src);
    // A progressive file whose scans leave some coefficient bits out is
    // decoded with block smoothing (an estimate of what is missing); the
    // same coefficients as a sequential file would not be: not lossless.
    if (src.progressive_mode && src.coef_bits != nullptr) {
      for (int c = 0; c < src.num_components; ++c) {
        for (int k = 0; k < DCTSIZE2; ++k) incomplete |= src.coef_bits[c][k] != 0;
      }
      if (incomplete) return true;
    }
    jpeg_copy_critical_parameters(&src, &dst);  // sequential Huffman, the same tables
    dst.optimize_coding = optimize ? TRUE : FALSE;
    dst.restart_interval = 1;
    out.Attach(&dst);
    jpeg_write_coefficients(&dst, coefficients);
    for (jpeg_saved_marker_ptr m = src.marker_list; m != nullptr; m = m->next) {
      // The JFIF and Adobe markers libjpeg writes itself, and a row table
      // of an earlier rewrite, are not copied.
      if ((dst.write_JFIF_header && Is(m, JPEG_APP0, "JFIF", 5)) ||
          (dst.write_Adobe_marker && Is(m, JPEG_APP0 + 14, "Adobe", 5)) ||
          Is(m, JPEG_APP0 + 15, kRowTableId, sizeof kRowTableId)) {
        continue;
      }
      jpeg_write_marker(&dst, static_cast<int>(m->marker), m->data, m->data_length);
    }
    jpeg_finish_compress(&dst);
    if (err.eof_seen) return true;  // the EOI was missing: nothing more to read
    jpeg_finish_decompress(&src);
    return true;
  }
};

// libjpeg's compressor for EncodeWithRestarts: 4:2:0, the standard tables,
// a restart marker after every MCU.
struct Encoder {
  jpeg_compress_struct dst;
  ErrorMgr err;
  bool created = false;
  VectorDest out;

  Encoder() {
    std::memset(&dst, 0, sizeof dst);
    dst.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = ErrorExit;
    err.pub.emit_message = EmitMessage;
    err.pub.output_message = OutputMessage;
    err.message[0] = '\0';
  }
  ~Encoder() {
    if (created) jpeg_destroy_compress(&dst);
  }
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  bool Run(const uint8_t* rgb, int width, int height, size_t stride, int quality) {
    if (setjmp(err.jmp)) return false;
    jpeg_create_compress(&dst);
    created = true;
    out.Attach(&dst);
    dst.image_width = static_cast<JDIMENSION>(width);
    dst.image_height = static_cast<JDIMENSION>(height);
    dst.input_components = 3;
    dst.in_color_space = JCS_RGB;
    jpeg_set_defaults(&dst);
    jpeg_set_quality(&dst, quality, TRUE);
    dst.restart_interval = 1;
    jpeg_start_compress(&dst, TRUE);
    while (dst.next_scanline < dst.image_height) {
      JSAMPROW row = const_cast<uint8_t*>(rgb + stride * dst.next_scanline);
      jpeg_write_scanlines(&dst, &row, 1);
    }
    jpeg_finish_compress(&dst);
    return true;
  }
};

}  // namespace

JpegDecoder::JpegDecoder() : s_(std::make_unique<State>()) {
  std::memset(&s_->cinfo, 0, sizeof s_->cinfo);
  s_->cinfo.err = jpeg_std_error(&s_->err.pub);
  s_->err.pub.error_exit = ErrorExit;
  s_->err.pub.emit_message = EmitMessage;
  s_->err.pub.output_message = OutputMessage;
  s_->progress.progress_monitor = ProgressMonitor;
}

JpegDecoder::~JpegDecoder() {
  if (s_->created) jpeg_destroy_decompress(&s_->cinfo);
}

Result<Region> JpegDecoder::Decode(const DecodeRequest& req) {
  State& s = *s_;
  s.ResetErrorState();
  // A fresh decompressor for every image (the output buffers are what is
  // reused). jpeg_abort_decompress keeps the previous image's quantisation
  // and Huffman tables, and libjpeg decodes an image that lacks a table with
  // the one left there (abbreviated datastreams): a reused decompressor made
  // the pixels, or whether the image decodes at all, depend on what the
  // thread decoded before (found by decode_fuzz). Create + destroy costs
  // 0.3 us of CPU here, against ~1.5 ms per decode.
  if (!s.Fresh()) return s.ErrorStatus();
  AbortGuard guard{&s.cinfo};

  if (!s.ReadHeader(req.bytes)) return s.ErrorStatus();
  const int width = static_cast<int>(s.cinfo.image_width);
  const int height = static_cast<int>(s.cinfo.image_height);
  if (width <= 0 || height <= 0) return Corrupt("JPEG has an empty image");
  if (req.max_pixels > 0 && int64_t{width} * height > req.max_pixels) {
    return TooManyPixels(width, height, req.max_pixels);
  }

  Plan plan;
  plan.fast = req.fast;
  plan.cmyk = s.cinfo.jpeg_color_space == JCS_CMYK || s.cinfo.jpeg_color_space == JCS_YCCK;
  if (req.crop != nullptr) {
    STOKER_ASSIGN_OR_RETURN(plan.crop, ClampCrop((*req.crop)(width, height), width, height));
    plan.denom = req.planned_out != nullptr
                     ? ChooseDenom(plan.crop, req.planned_out[0], req.planned_out[1])
                     : ChooseDenom(plan.crop, req.out_w, req.out_h);
  } else {
    plan.crop = Rect{0, 0, static_cast<double>(width), static_cast<double>(height)};
    plan.denom = 1;
  }

  if (req.crop != nullptr && (req.rows.index != nullptr || s.cinfo.restart_interval == 1)) {
    int cut_x = 0, cut_y = 0;  // source columns and rows left out of what libjpeg decodes
    if (!s.Jump(req.bytes, req.rows, plan, &cut_x, &cut_y)) return s.ErrorStatus();
    plan.crop.x -= cut_x;
    plan.crop.y -= cut_y;
  }

  Decoded dec;
  if (!s.DecodeRows(plan, &dec)) return s.ErrorStatus();

  Region region;
  region.image = ImageView{dec.data, dec.width, dec.height, dec.stride};
  const double d = plan.denom;
  region.crop = Rect{plan.crop.x / d - dec.x0, plan.crop.y / d - dec.y0, plan.crop.w / d,
                     plan.crop.h / d};
  region.source_width = width;
  region.source_height = height;
  region.scale_denom = plan.denom;
  return region;
}

}  // namespace stoker::decode::internal

namespace stoker::decode {

namespace {

// A JPEG libjpeg wrote with restart interval 1, with the row table (an
// APP15 segment) inserted before SOS: offsets from the scan's first byte do
// not move when it is inserted.
Result<RestartJpeg> WithRowTable(std::span<const uint8_t> written) {
  internal::JpegLayout L;
  std::vector<uint32_t> rows;
  if (!internal::ParseJpegLayout(written, &L) || L.restart_interval != 1 ||
      !internal::FindRestartRows(written, L, &rows)) {
    return Status(StatusCode::kUnsupported, "no row table for this JPEG's layout");
  }
  const size_t payload = sizeof internal::kRowTableId + 3 + 4 * rows.size();
  if (payload + 2 > 0xFFFF) return Status(StatusCode::kUnsupported, "too many MCU rows");
  RestartJpeg r;
  r.bytes.reserve(written.size() + payload + 4);
  r.bytes.assign(written.begin(), written.begin() + static_cast<ptrdiff_t>(L.sos_at));
  auto put16 = [&](size_t v) {
    r.bytes.push_back(static_cast<uint8_t>(v >> 8));
    r.bytes.push_back(static_cast<uint8_t>(v & 0xFF));
  };
  r.bytes.push_back(0xFF);
  r.bytes.push_back(0xEF);
  put16(payload + 2);
  r.bytes.insert(r.bytes.end(), std::begin(internal::kRowTableId), std::end(internal::kRowTableId));
  r.bytes.push_back(internal::kRowTableVersion);
  put16(rows.size());
  for (uint32_t off : rows) {
    put16(off >> 16);
    put16(off & 0xFFFF);
  }
  r.bytes.insert(r.bytes.end(), written.begin() + static_cast<ptrdiff_t>(L.sos_at), written.end());
  r.width = L.width;
  r.height = L.height;
  r.scan_offset = static_cast<uint32_t>(L.data_start + payload + 4);
  r.mcu_rows = L.mcu_rows;
  r.mcus_per_row = L.mcus_per_row;
  return r;
}

}  // namespace

Result<RestartJpeg> RewriteWithRestarts(std::span<const uint8_t> jpeg, int64_t max_pixels,
                                        bool optimize_huffman) {
  if (jpeg.size() < 4) return Corrupt("not a JPEG: too short");
  // What the decoder takes for a JPEG (DetectFormat), no more: libjpeg
  // alone would also skip junk where a marker should follow SOI.
  if (DetectFormat(jpeg) != Format::kJpeg) return Unsupported("not a JPEG (no SOI marker)");
  if (jpeg.size() >= (size_t{1} << 28)) {
    return Status(StatusCode::kUnsupported, "JPEG of 256 MiB or more");
  }
  // A baseline file without restart markers: the markers are added by
  // copying bits (AddRestarts), several times faster than a transcode.
  {
    internal::JpegLayout L;
    if (internal::ParseJpegLayout(jpeg, &L) && L.restart_interval == 0) {
      if (max_pixels > 0 && int64_t{L.width} * L.height > max_pixels) {
        return internal::TooManyPixels(L.width, L.height, max_pixels);
      }
      RestartJpeg r;
      size_t scan = 0;
      internal::Transcoder check;
      check.err.message[0] = '\0';
      if (!check.CheckHeader(jpeg)) return Status(check.err.code, check.err.message);
      if (internal::AddRestarts(jpeg, L, &r.bytes, &scan)) {
        r.width = L.width;
        r.height = L.height;
        r.scan_offset = static_cast<uint32_t>(scan);
        r.mcu_rows = L.mcu_rows;
        r.mcus_per_row = L.mcus_per_row;
        return r;
      }
    }
  }
  auto t = std::make_unique<internal::Transcoder>();
  t->err.code = StatusCode::kCorrupt;
  t->err.message[0] = '\0';
  if (!t->Run(jpeg, max_pixels, optimize_huffman)) return Status(t->err.code, t->err.message);
  if (t->too_big) {
    return internal::TooManyPixels(t->src.image_width, t->src.image_height, max_pixels);
  }
  if (t->fractional) {
    return Corrupt("invalid JPEG data: Fractional sampling not implemented yet (the decoder "
                   "refuses these sampling factors)");
  }
  if (t->incomplete) {
    return Status(StatusCode::kUnsupported,
                  "progressive JPEG whose scans leave coefficient bits out: decoders smooth "
                  "what is missing, so a sequential copy would not have the same pixels");
  }
  return WithRowTable(t->out.written());
}

Result<RestartJpeg> EncodeWithRestarts(const uint8_t* rgb, int width, int height, size_t stride,
                                       int quality) {
  if (width <= 0 || height <= 0 || width > 65500 || height > 65500) {
    return InvalidArgument("cannot encode a " + std::to_string(width) + "x" +
                           std::to_string(height) + " JPEG");
  }
  auto e = std::make_unique<internal::Encoder>();
  if (!e->Run(rgb, width, height, stride, quality)) return Status(e->err.code, e->err.message);
  return WithRowTable(e->out.written());
}

}  // namespace stoker::decode
