#include "stoker/transform/compose.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

namespace stoker::transform {
namespace {

using Op = TransformOp;
using Type = TransformOp::Type;

Op MakeOp(Type type) {
  Op op;
  op.type = type;
  return op;
}
Op Sized(Type type, int h, int w) {
  Op op = MakeOp(type);
  op.size = {h, w};
  return op;
}

TransformOptions Compose(std::vector<Op> ops) {
  TransformOptions t;
  t.kind = TransformOptions::Kind::kCompose;
  t.ops = std::move(ops);
  return t;
}

// A planar image whose pixel (c, y, x) is `f(c, y, x)`, in its own storage.
struct Image {
  std::vector<uint8_t> data;
  Planar view;
};
template <typename F>
Image MakeImage(int channels, int h, int w, F f) {
  Image im;
  im.data.resize(static_cast<size_t>(channels) * h * w);
  for (int c = 0; c < channels; ++c)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) im.data[(static_cast<size_t>(c) * h + y) * w + x] = f(c, y, x);
  im.view = Planar{im.data.data(), channels, h, w};
  return im;
}

uint8_t At(const Planar& p, int c, int y, int x) {
  return p.data[(static_cast<size_t>(c) * p.height + y) * p.width + x];
}

// Runs `ops` (none fused) on `im` with the rng of (1, 2, 3).
Status RunOps(std::vector<Op> ops, Image& im, Scratch& scratch, bool mask = false) {
  SampleRng rng(1, 2, 3);
  return ApplyOps(ops, 0, im.view, rng, mask, scratch);
}

TEST(ComposeShapeTest, PresetsAreTheirComposeLists) {
  TransformOptions train;
  train.kind = TransformOptions::Kind::kTrain;
  train.size = 160;
  auto ops = ExpandOps(train);
  ASSERT_EQ(ops.size(), 2u);
  EXPECT_EQ(ops[0].type, Type::kRandomResizedCrop);
  EXPECT_EQ(ops[0].size, (std::array<int, 2>{160, 160}));
  EXPECT_EQ(ops[1].type, Type::kRandomHorizontalFlip);
  TransformOptions val;
  val.normalize = true;
  ops = ExpandOps(val);
  ASSERT_EQ(ops.size(), 4u);
  EXPECT_EQ(ops[0].type, Type::kResize);
  EXPECT_EQ(ops[0].size, (std::array<int, 2>{256, 0}));
  EXPECT_EQ(ops[1].type, Type::kCenterCrop);
  EXPECT_EQ(ops[2].type, Type::kToDtype);
  EXPECT_EQ(ops[3].type, Type::kNormalize);
  auto shape = ComposeOutputShape(val);
  ASSERT_TRUE(shape.ok());
  EXPECT_EQ(shape->bytes(), 3u * 224 * 224 * 4);
}

TEST(ComposeShapeTest, ShapesOfCompositions) {
  Op pad = MakeOp(Type::kPad);
  pad.padding = {1, 2, 3, 4};
  Op gray = MakeOp(Type::kGrayscale);
  gray.num_output_channels = 1;
  auto s = ComposeOutputShape(Compose({Sized(Type::kResize, 40, 60), pad, gray}));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->channels, 1);
  EXPECT_EQ(s->height, 46);
  EXPECT_EQ(s->width, 64);
  EXPECT_FALSE(s->is_float);
  // Resize(int) of a known size is known: 32x48 (h x w) -> shorter side 16.
  s = ComposeOutputShape(Compose({Sized(Type::kCenterCrop, 32, 48), Sized(Type::kResize, 16, 0),
                                  MakeOp(Type::kToDtype)}));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->height, 16);
  EXPECT_EQ(s->width, 24);
  EXPECT_TRUE(s->is_float);
}

TEST(ComposeShapeTest, ErrorsNameTheOpAndArgument) {
  auto msg = [](std::vector<Op> ops) {
    auto s = ComposeOutputShape(Compose(std::move(ops)));
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
    return s.status().message();
  };
  EXPECT_NE(msg({Sized(Type::kResize, 256, 0)}).find("output size is not fixed"),
            std::string::npos);
  EXPECT_NE(msg({Sized(Type::kResize, 256, 0)}).find("Resize((h, w))"), std::string::npos);
  EXPECT_NE(msg({Sized(Type::kResize, 256, 0)}).find("Resize (op 0)"), std::string::npos);
  Op flip = MakeOp(Type::kRandomHorizontalFlip);
  flip.p = 1.5;
  EXPECT_NE(msg({Sized(Type::kCenterCrop, 8, 8), flip}).find("RandomHorizontalFlip (op 1): p "),
            std::string::npos);
  Op blur = MakeOp(Type::kGaussianBlur);
  blur.kernel_size = {4, 3};
  EXPECT_NE(msg({Sized(Type::kCenterCrop, 8, 8), blur}).find("GaussianBlur (op 1): kernel_size"),
            std::string::npos);
  Op norm = MakeOp(Type::kNormalize);
  norm.mean = {0.5f, 0.5f, 0.5f};
  norm.std = {0.5f, 0.5f, 0.5f};
  EXPECT_NE(msg({Sized(Type::kCenterCrop, 8, 8), norm}).find("ToDtype(torch.float32, scale=True)"),
            std::string::npos);
  norm.std = {0.5f};
  EXPECT_NE(msg({Sized(Type::kCenterCrop, 8, 8), MakeOp(Type::kToDtype), norm})
                .find("mean and std need 3 values"),
            std::string::npos);
  EXPECT_NE(msg({Sized(Type::kCenterCrop, 8, 8), MakeOp(Type::kToDtype), flip})
                .find("only Normalize may follow ToDtype"),
            std::string::npos);
  Op gray = MakeOp(Type::kGrayscale);
  EXPECT_NE(msg({Sized(Type::kCenterCrop, 8, 8), gray, MakeOp(Type::kColorJitter)})
                .find("ColorJitter (op 2): needs a 3-channel image"),
            std::string::npos);
  Op jitter = MakeOp(Type::kColorJitter);
  jitter.hue = {-0.6, 0.1};
  EXPECT_NE(msg({Sized(Type::kCenterCrop, 8, 8), jitter}).find("hue range"), std::string::npos);
  EXPECT_NE(msg({Sized(Type::kRandomCrop, 0, 8)}).find("RandomCrop (op 0): size must be positive"),
            std::string::npos);
  EXPECT_NE(msg({}).find("no ops"), std::string::npos);
}

TEST(FusedPrefixTest, PresetsPlanTheCropsTheyAlwaysTook) {
  TransformOptions train;
  train.kind = TransformOptions::Kind::kTrain;
  TransformOptions val;
  Scratch scratch;
  for (uint64_t pos = 0; pos < 200; ++pos) {
    for (const TransformOptions* t : {&train, &val}) {
      const int w = 100 + static_cast<int>(pos * 37 % 400), h = 90 + static_cast<int>(pos * 53 % 300);
      const SampleParams want = ComputeSampleParams(w, h, *t, 7, 3, pos);
      SampleRng rng(7, 3, static_cast<int64_t>(pos));
      const FusedPrefix got = PlanFusedPrefix(OpsOf(*t, scratch), w, h, rng);
      EXPECT_EQ(got.crop.x, want.crop.x);
      EXPECT_EQ(got.crop.y, want.crop.y);
      EXPECT_EQ(got.crop.w, want.crop.w);
      EXPECT_EQ(got.crop.h, want.crop.h);
      EXPECT_EQ(got.hflip, want.flip);
      EXPECT_EQ(got.out_w, 224);
      EXPECT_EQ(got.out_h, 224);
      EXPECT_EQ(got.next_op, 2u);
    }
  }
}

TEST(FusedPrefixTest, CropsAfterFlipsAndResizeMapToTheSource) {
  // Flip always, resize 200x100 (w x h) to 100x50, centre crop 20x10: the
  // crop of the mirrored, halved image is the source rect mirrored back.
  Op flip = MakeOp(Type::kRandomHorizontalFlip);
  flip.p = 1.0;
  Op vflip = MakeOp(Type::kRandomVerticalFlip);
  vflip.p = 0.0;
  std::vector<Op> ops = {flip, Sized(Type::kResize, 50, 100), vflip,
                         Sized(Type::kCenterCrop, 10, 20), MakeOp(Type::kColorJitter)};
  SampleRng rng(0, 0, 0);
  const FusedPrefix f = PlanFusedPrefix(ops, 200, 100, rng);
  EXPECT_EQ(f.next_op, 4u);  // ColorJitter is not fused
  EXPECT_TRUE(f.hflip);
  EXPECT_FALSE(f.vflip);
  EXPECT_EQ(f.out_w, 20);
  EXPECT_EQ(f.out_h, 10);
  EXPECT_DOUBLE_EQ(f.crop.x, 80.0);  // (100 - 40 - 20) * 2
  EXPECT_DOUBLE_EQ(f.crop.y, 40.0);
  EXPECT_DOUBLE_EQ(f.crop.w, 40.0);
  EXPECT_DOUBLE_EQ(f.crop.h, 20.0);
  // An asymmetric crop: RandomCrop offsets mirror too.
  std::vector<Op> ops2 = {flip, Sized(Type::kRandomCrop, 10, 30)};
  SampleRng a(5, 0, 9), b(5, 0, 9);
  const FusedPrefix g = PlanFusedPrefix(ops2, 100, 40, a);
  b.Uniform();  // the flip's draw
  const int top = static_cast<int>(b.Uniform() * 31);
  const int left = static_cast<int>(b.Uniform() * 71);
  EXPECT_DOUBLE_EQ(g.crop.y, top);
  EXPECT_DOUBLE_EQ(g.crop.x, 100 - left - 30);
}

TEST(FusedPrefixTest, ASecondResizeOrAPaddedCropEndsThePrefix) {
  SampleRng rng(0, 0, 0);
  std::vector<Op> two = {Sized(Type::kResize, 64, 64), Sized(Type::kResize, 32, 32)};
  EXPECT_EQ(PlanFusedPrefix(two, 100, 100, rng).next_op, 1u);
  std::vector<Op> big = {Sized(Type::kCenterCrop, 120, 50)};
  EXPECT_EQ(PlanFusedPrefix(big, 100, 100, rng).next_op, 0u);
  Op rc = Sized(Type::kRandomCrop, 32, 32);
  rc.padding = {4, 4, 4, 4};
  std::vector<Op> padded = {Sized(Type::kResize, 32, 32), rc};
  EXPECT_EQ(PlanFusedPrefix(padded, 100, 100, rng).next_op, 1u);
}

TEST(ApplyOpsTest, FlipsAreExactMirrors) {
  Scratch scratch;
  auto f = [](int c, int y, int x) { return static_cast<uint8_t>(c * 100 + y * 10 + x); };
  Image im = MakeImage(3, 4, 7, f);
  Op h = MakeOp(Type::kRandomHorizontalFlip);
  h.p = 1;
  Op v = MakeOp(Type::kRandomVerticalFlip);
  v.p = 1;
  ASSERT_TRUE(RunOps({h, v}, im, scratch).ok());
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 7; ++x) EXPECT_EQ(At(im.view, c, y, x), f(c, 3 - y, 6 - x));
  Image same = MakeImage(3, 4, 7, f);
  h.p = 0;
  v.p = 0;
  ASSERT_TRUE(RunOps({h, v}, same, scratch).ok());
  EXPECT_EQ(std::vector<uint8_t>(same.view.data, same.view.data + 84), same.data);
}

TEST(ApplyOpsTest, PadModesMatchNumpysPad) {
  // One row [1 2 3 4], padded 3 left and 2 right: numpy.pad's modes
  // (torchvision's constant/edge/reflect/symmetric).
  Scratch scratch;
  const std::vector<std::pair<Op::PaddingMode, std::vector<int>>> cases = {
      {Op::PaddingMode::kConstant, {9, 9, 9, 1, 2, 3, 4, 9, 9}},
      {Op::PaddingMode::kEdge, {1, 1, 1, 1, 2, 3, 4, 4, 4}},
      {Op::PaddingMode::kReflect, {4, 3, 2, 1, 2, 3, 4, 3, 2}},
      {Op::PaddingMode::kSymmetric, {3, 2, 1, 1, 2, 3, 4, 4, 3}},
  };
  for (const auto& [mode, want] : cases) {
    Image im = MakeImage(1, 1, 4, [](int, int, int x) { return static_cast<uint8_t>(x + 1); });
    Op pad = MakeOp(Type::kPad);
    pad.padding = {3, 0, 2, 0};
    pad.fill = {9, 9, 9};
    pad.padding_mode = mode;
    ASSERT_TRUE(RunOps({pad}, im, scratch).ok());
    ASSERT_EQ(im.view.width, 9);
    for (int x = 0; x < 9; ++x) EXPECT_EQ(At(im.view, 0, 0, x), want[x]) << x;
  }
}

TEST(ApplyOpsTest, PadFillsPerChannelAndMasksWithZero) {
  Scratch scratch;
  Image im = MakeImage(3, 2, 2, [](int, int, int) { return uint8_t{50}; });
  Op pad = MakeOp(Type::kPad);
  pad.padding = {1, 2, 0, 1};
  pad.fill = {10, 20, 30};
  ASSERT_TRUE(RunOps({pad}, im, scratch).ok());
  EXPECT_EQ(im.view.width, 3);
  EXPECT_EQ(im.view.height, 5);
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(At(im.view, c, 0, 0), 10 * (c + 1));
    EXPECT_EQ(At(im.view, c, 2, 0), 10 * (c + 1));
    EXPECT_EQ(At(im.view, c, 2, 1), 50);
    EXPECT_EQ(At(im.view, c, 4, 2), 10 * (c + 1));
  }
  Image mask = MakeImage(1, 2, 2, [](int, int, int) { return uint8_t{50}; });
  ASSERT_TRUE(RunOps({pad}, mask, scratch, true).ok());
  EXPECT_EQ(At(mask.view, 0, 0, 0), 0);
  EXPECT_EQ(At(mask.view, 0, 2, 1), 50);
}

TEST(ApplyOpsTest, CenterCropPadsLikeTorchvision) {
  // torchvision: a 5x3 crop of a 3x3 image pads 1 above and 1 below.
  Scratch scratch;
  Image im = MakeImage(1, 3, 3, [](int, int y, int x) { return static_cast<uint8_t>(1 + 3 * y + x); });
  ASSERT_TRUE(RunOps({Sized(Type::kCenterCrop, 5, 2)}, im, scratch).ok());
  ASSERT_EQ(im.view.height, 5);
  ASSERT_EQ(im.view.width, 2);
  // Width 3 -> 2: left = round(0.5) = 0.
  const uint8_t want[5][2] = {{0, 0}, {1, 2}, {4, 5}, {7, 8}, {0, 0}};
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 2; ++x) EXPECT_EQ(At(im.view, 0, y, x), want[y][x]);
}

TEST(ApplyOpsTest, RandomCropTooLargeFailsNamingTheOp) {
  Scratch scratch;
  Image im = MakeImage(3, 10, 10, [](int, int, int) { return uint8_t{1}; });
  Status st = RunOps({Sized(Type::kRandomCrop, 12, 8)}, im, scratch);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("RandomCrop (op 0): crop (h=12, w=8) is larger than the image "
                              "(h=10, w=10); set pad_if_needed=True"),
            std::string::npos)
      << st.message();
  Op ok = Sized(Type::kRandomCrop, 12, 8);
  ok.pad_if_needed = true;
  Image im2 = MakeImage(3, 10, 10, [](int, int, int) { return uint8_t{1}; });
  ASSERT_TRUE(RunOps({ok}, im2, scratch).ok());
  EXPECT_EQ(im2.view.height, 12);
  EXPECT_EQ(im2.view.width, 8);
  Op pad = MakeOp(Type::kPad);
  pad.padding = {10, 0, 0, 0};
  pad.padding_mode = Op::PaddingMode::kReflect;
  Image im3 = MakeImage(3, 10, 10, [](int, int, int) { return uint8_t{1}; });
  st = RunOps({pad}, im3, scratch);
  EXPECT_NE(st.message().find("Pad (op 0): reflect padding"), std::string::npos) << st.message();
}

TEST(ApplyOpsTest, RandomCropDrawsTopThenLeftOnlyWhereThereIsSlack) {
  Scratch scratch;
  auto f = [](int, int y, int x) { return static_cast<uint8_t>(y * 16 + x); };
  Image im = MakeImage(1, 16, 16, f);
  SampleRng rng(4, 4, 4), ref(4, 4, 4);
  std::vector<Op> ops = {Sized(Type::kRandomCrop, 16, 5), MakeOp(Type::kRandomHorizontalFlip)};
  ops[1].p = 2;  // always flips
  ASSERT_TRUE(ApplyOps(ops, 0, im.view, rng, false, scratch).ok());
  const int left = static_cast<int>(ref.Uniform() * 12);  // no top draw: heights equal
  ref.Uniform();                                          // the flip
  EXPECT_EQ(rng.NextU64(), ref.NextU64());
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 5; ++x) EXPECT_EQ(At(im.view, 0, y, x), f(0, y, 4 - x + left));
}

TEST(ApplyOpsTest, GrayscaleIsTorchvisionsWeightedSumTruncated) {
  Scratch scratch;
  auto f = [](int c, int y, int x) { return static_cast<uint8_t>((c * 97 + y * 31 + x * 7) % 256); };
  Image im = MakeImage(3, 8, 8, f);
  Op gray = MakeOp(Type::kGrayscale);
  gray.num_output_channels = 3;
  ASSERT_TRUE(RunOps({gray}, im, scratch).ok());
  ASSERT_EQ(im.view.channels, 3);
  for (int y = 0; y < 8; ++y) {
    for (int x = 0; x < 8; ++x) {
      const float l = std::fma(static_cast<float>(f(2, y, x)), 0.114f,
                               std::fma(static_cast<float>(f(1, y, x)), 0.587f,
                                        static_cast<float>(f(0, y, x)) * 0.2989f));
      for (int c = 0; c < 3; ++c) EXPECT_EQ(At(im.view, c, y, x), static_cast<uint8_t>(l));
    }
  }
}

TEST(ApplyOpsTest, ColorJitterDrawsAPermutationThenEachSetFactor) {
  // brightness only: the factor is the 4th draw (after 3 for randperm(4)),
  // and the output is trunc(clamp(x * factor)).
  Scratch scratch;
  auto f = [](int c, int y, int x) { return static_cast<uint8_t>(c * 80 + y * 9 + x); };
  Image im = MakeImage(3, 6, 6, f);
  Op jitter = MakeOp(Type::kColorJitter);
  jitter.brightness = {0.5, 1.5};
  SampleRng rng(9, 9, 9), ref(9, 9, 9);
  ASSERT_TRUE(ApplyOps(std::vector<Op>{jitter}, 0, im.view, rng, false, scratch).ok());
  for (int k = 0; k < 3; ++k) ref.Uniform();
  const auto factor = static_cast<float>(ref.Uniform(0.5, 1.5));
  EXPECT_EQ(rng.NextU64(), ref.NextU64());
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 6; ++y)
      for (int x = 0; x < 6; ++x) {
        const float v = std::min(255.0f, f(c, y, x) * factor);
        EXPECT_EQ(At(im.view, c, y, x), static_cast<uint8_t>(v));
      }
  // A mask draws the same numbers and keeps its values.
  Image mask = MakeImage(1, 6, 6, [](int, int, int) { return uint8_t{3}; });
  SampleRng mrng(9, 9, 9);
  ASSERT_TRUE(ApplyOps(std::vector<Op>{jitter}, 0, mask.view, mrng, true, scratch).ok());
  SampleRng again(9, 9, 9);
  for (int k = 0; k < 4; ++k) again.Uniform();
  EXPECT_EQ(mrng.NextU64(), again.NextU64());
  EXPECT_EQ(At(mask.view, 0, 5, 5), 3);
}

TEST(ApplyOpsTest, ContrastSaturationHueKeepGrayAndIdentityFactors) {
  Scratch scratch;
  // Gray pixels: any hue shift leaves them (the HSV round trip of s = 0 is
  // exact). A contrast factor of 1 changes nothing but float rounding.
  // (Saturation is not the identity on gray: torchvision's weights sum to
  // 0.9999, so floor(gray) is v - 1.)
  auto gray = [](int, int y, int x) { return static_cast<uint8_t>(20 + 10 * y + x); };
  Image im = MakeImage(3, 5, 5, gray);
  Op j = MakeOp(Type::kColorJitter);
  j.hue = {-0.5, 0.5};
  ASSERT_TRUE(RunOps({j}, im, scratch).ok());
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 5; ++y)
      for (int x = 0; x < 5; ++x) EXPECT_EQ(At(im.view, c, y, x), gray(c, y, x));
  auto color = [](int c, int y, int x) { return static_cast<uint8_t>((c * 91 + y * 37 + x * 11) % 256); };
  Image id = MakeImage(3, 5, 5, color);
  Op one = MakeOp(Type::kColorJitter);
  one.contrast = {1.0, 1.0 + 1e-12};
  ASSERT_TRUE(RunOps({one}, id, scratch).ok());
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 5; ++y)
      for (int x = 0; x < 5; ++x) EXPECT_NEAR(At(id.view, c, y, x), color(c, y, x), 1);
}

TEST(ApplyOpsTest, HueShiftByAThirdRotatesChannels) {
  // A hue shift of 1/3 maps pure red to pure green (HSV round trip).
  Scratch scratch;
  Image im = MakeImage(3, 1, 1, [](int c, int, int) { return static_cast<uint8_t>(c == 0 ? 200 : 0); });
  Op j = MakeOp(Type::kColorJitter);
  j.hue = {1.0 / 3, 1.0 / 3 + 1e-9};
  ASSERT_TRUE(RunOps({j}, im, scratch).ok());
  EXPECT_EQ(At(im.view, 0, 0, 0), 0);
  EXPECT_EQ(At(im.view, 1, 0, 0), 200);
  EXPECT_EQ(At(im.view, 2, 0, 0), 0);
}

TEST(ApplyOpsTest, GaussianBlurMatchesADirect2DConvolution) {
  Scratch scratch;
  auto f = [](int, int y, int x) { return static_cast<uint8_t>((y * 53 + x * 29) % 256); };
  Image im = MakeImage(1, 9, 11, f);
  Op blur = MakeOp(Type::kGaussianBlur);
  blur.kernel_size = {5, 3};
  blur.sigma = {1.5, 1.5 + 1e-12};
  ASSERT_TRUE(RunOps({blur}, im, scratch).ok());
  auto kernel = [](int k, double sigma) {
    std::vector<double> w(k);
    double sum = 0;
    for (int i = 0; i < k; ++i) {
      const double t = i - (k - 1) / 2.0;
      w[i] = std::exp(-0.5 * t * t / (sigma * sigma));
      sum += w[i];
    }
    for (double& v : w) v /= sum;
    return w;
  };
  const auto wx = kernel(5, 1.5), wy = kernel(3, 1.5);
  auto reflect = [](int i, int n) { return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i); };
  int max_diff = 0;
  for (int y = 0; y < 9; ++y)
    for (int x = 0; x < 11; ++x) {
      double acc = 0;
      for (int a = 0; a < 3; ++a)
        for (int b = 0; b < 5; ++b) acc += wy[a] * wx[b] * f(0, reflect(y + a - 1, 9), reflect(x + b - 2, 11));
      max_diff = std::max(max_diff, std::abs(At(im.view, 0, y, x) - static_cast<int>(std::nearbyint(acc))));
    }
  EXPECT_LE(max_diff, 1);  // float32 sums in another order: a level at a .5 tie
  Image tiny = MakeImage(1, 2, 2, f);
  EXPECT_EQ(RunOps({blur}, tiny, scratch).code(), StatusCode::kInvalidArgument);
}

TEST(ApplyOpsTest, WriteOutputNormalisesLikeTheResampler) {
  Image im = MakeImage(3, 2, 2, [](int c, int y, int x) { return static_cast<uint8_t>(c * 50 + y * 2 + x); });
  OutputFormat f;
  f.is_float = true;
  f.mean = {0.5f, 0.25f, 0.125f};
  f.std = {0.5f, 0.25f, 2.0f};
  std::vector<float> out(12);
  WriteOutput(im.view, f, out.data());
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 4; ++i) {
      const float q = im.data[c * 4 + i];
      EXPECT_FLOAT_EQ(out[c * 4 + i], (q / 255.0f - f.mean[c]) / f.std[c]);
    }
  std::vector<uint8_t> u8(12);
  WriteOutput(im.view, OutputFormat{}, u8.data());
  EXPECT_EQ(u8, im.data);
}

}  // namespace
}  // namespace stoker::transform
