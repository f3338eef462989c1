// Image geometry shared by decode and transform: a fractional rectangle, a
// view of RGB8 pixels, and a decoded region with the crop inside it.
// Plain types with no behaviour, so decode (which produces regions) and
// transform (which resamples them) depend on this module, not on each other.
#pragma once

#include <cstddef>
#include <cstdint>

namespace stoker::image {

// A rectangle in pixel coordinates (fractional: scaling may make the edges of
// a crop fall between pixels).
struct Rect {
  double x = 0, y = 0, w = 0, h = 0;
};

// An RGB8 image, rows `stride` bytes apart, pixels interleaved R, G, B.
struct ImageView {
  const uint8_t* data = nullptr;
  int width = 0;
  int height = 0;
  size_t stride = 0;
};

struct Region {
  // The decoded pixels: covers `crop` (possibly with a margin).
  ImageView image;
  // The requested crop, in `image`'s coordinates (already scaled by the DCT
  // factor and shifted by the decoded area's origin).
  Rect crop;
  int source_width = 0;   // the full image, before any scaling
  int source_height = 0;
  int scale_denom = 1;    // DCT scale used: 1, 2, 4 or 8
};

}  // namespace stoker::image
