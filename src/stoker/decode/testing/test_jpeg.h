// JPEGs made for tests, with libjpeg-turbo's encoder.
#pragma once

#include <cstdint>
#include <vector>

namespace stoker::decode::testing {

// RGB8 pixels (w * h * 3, rows top to bottom) as a baseline JPEG with
// libjpeg's defaults (4:2:0) at `quality`.
std::vector<uint8_t> EncodeRgbJpeg(const uint8_t* rgb, int w, int h, int quality = 90);

// A w x h gradient under noise of `noise` levels from mt19937(seed), as a
// JPEG of quality 90 (noise 256: every pixel random, a byte a pixel or more).
std::vector<uint8_t> NoisyGradientJpeg(int w, int h, unsigned seed, unsigned noise = 32);

}  // namespace stoker::decode::testing
