// JPEGs rewritten for shards: the same coefficients (so the same pixels),
// with a restart marker after every MCU and a table of where each MCU row
// starts, so that a crop decodes, and can be fetched as, only its own rows
// and columns (jpeg_rows.h CropRestartMcus; docs/shard-format.md).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "stoker/status.h"

namespace stoker::decode {

struct RestartJpeg {
  std::vector<uint8_t> bytes;
  int width = 0;
  int height = 0;
  // Offset of the first byte of entropy-coded data (after SOS).
  uint32_t scan_offset = 0;
  // MCU rows and columns, and the row table (offsets from scan_offset).
  int mcu_rows = 0;
  int mcus_per_row = 0;
};

// Rewrites `jpeg` losslessly. A baseline file without restart markers (the
// common case) keeps its Huffman tables and has the markers added by
// copying bits (jpeg_rows.h AddRestarts); any other is transcoded in the
// coefficient domain, as jpegtran does
// (libjpeg-turbo's jpeg_read_coefficients / jpeg_write_coefficients): the
// same quantisation tables and DCT coefficients, so every decoder gives the
// same pixels as for the original; sequential (a progressive or arithmetic
// coded file becomes baseline Huffman), Huffman tables optimised for the
// image (optimize_huffman), a restart marker after every MCU, every APPn and COM marker kept,
// and an APP15 "STKR" row table before SOS (jpeg_rows.h kRowTableId).
// Errors: kCorrupt (invalid or truncated data), kUnsupported (a variant
// libjpeg-turbo does not transcode, such as 12-bit or lossless),
// kResourceExhausted (more than max_pixels pixels; 0: no limit). Messages
// say the reason; callers add the URI.
// optimize_huffman: Huffman tables made for the image (smaller, a second
// pass over the coefficients); else libjpeg's standard tables.
Result<RestartJpeg> RewriteWithRestarts(std::span<const uint8_t> jpeg, int64_t max_pixels = 0,
                                        bool optimize_huffman = true);

// Encodes an RGB8 image (rows `stride` bytes apart) as a baseline JPEG of
// `quality` (1-100; 4:2:0, libjpeg's standard tables) with a restart marker
// after every MCU and the row table: what `stoker convert --max-size`
// stores for an image it shrinks.
Result<RestartJpeg> EncodeWithRestarts(const uint8_t* rgb, int width, int height, size_t stride,
                                       int quality);

}  // namespace stoker::decode
