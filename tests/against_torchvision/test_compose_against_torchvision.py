"""stoker.transforms.Compose against torchvision.transforms.v2 (the peer
venv's torchvision 0.29.1), each op and a few compositions, on the SAME
parameters: the fused crop comes from core.compose_sample_params, every
other random parameter is re-derived here from the sample's draws
(core.sample_uniforms) following docs/transforms.md's draw order, then fed
to torchvision.transforms.v2.functional.

Geometric ops run on PIL images (stoker resamples as Pillow does), colour ops
on uint8 tensors (v2's arithmetic). Exact where the arithmetic is exact,
else PSNR >= 40 dB mean; `make test-torchvision` prints the table that
docs/transforms.md quotes (-s).
"""
import io
import math

import numpy as np
import pytest

torchvision = pytest.importorskip("torchvision")
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision.transforms import InterpolationMode  # noqa: E402
from torchvision.transforms.v2 import functional as F  # noqa: E402

import stoker._core as core  # noqa: E402
from stoker import transforms as T  # noqa: E402

SEED, EPOCH = 7, 2
N = 24
RESULTS = {}


def textured(seed, w, h):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([128 + 100 * np.sin(x * 0.05 + y * 0.02 + seed),
                     128 + 90 * np.cos(x * 0.03 - y * 0.04),
                     128 + 80 * np.sin((x + y) * 0.07)], -1)
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(99)
    out = []
    for i in range(N):
        w, h = int(rng.integers(120, 260)), int(rng.integers(100, 240))
        a = textured(i, w, h)
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "PNG")
        out.append((buf.getvalue(), a))
    return out


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def record(name, scores, exact):
    finite = [s for s in scores if math.isfinite(s)]
    RESULTS[name] = (exact, min(scores), (sum(finite) / len(finite)) if finite else math.inf,
                     sum(1 for s in scores if not math.isfinite(s)), len(scores))


def tensor(a):
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


class Draws:
    """The sample's Uniform() draws, consumed in docs/transforms.md's order."""

    def __init__(self, position, skip=0):
        self.u = core.sample_uniforms(SEED, EPOCH, position, 200)
        self.i = skip

    def uniform(self, lo=0.0, hi=1.0):
        v = self.u[self.i]
        self.i += 1
        return lo + (hi - lo) * v

    def integer(self, n):
        return min(int(self.uniform() * n), n - 1)

    def jitter(self, b, c, s, h):
        perm = [0, 1, 2, 3]
        for k in (3, 2, 1):
            j = self.integer(k + 1)
            perm[k], perm[j] = perm[j], perm[k]
        factors = [self.uniform(*r) if r is not None else None for r in (b, c, s, h)]
        return perm, factors


def run(data, t, pos):
    return core.compose_transform_image(data, t, SEED, EPOCH, pos)


def tv_jitter(x, perm, factors):
    fns = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue]
    for k in perm:
        if factors[k] is not None:
            x = fns[k](x, factors[k])
    return x


# ---- geometric ops (PIL) -------------------------------------------------------

def test_random_resized_crop_and_flips(images):
    t = T.Compose([T.RandomResizedCrop((96, 128)), T.RandomHorizontalFlip(),
                   T.RandomVerticalFlip()])
    scores = []
    for pos, (data, a) in enumerate(images):
        H, W = a.shape[:2]
        x, y, w, h, hf, vf, ow, oh = core.compose_sample_params(W, H, t, SEED, EPOCH, pos)
        d = Draws(pos)
        # the documented draw order gives the same crop: area, ratio per try, then top, left
        area = W * H
        for _ in range(10):
            target = area * d.uniform(0.08, 1.0)
            aspect = math.exp(d.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < cw <= W and 0 < ch <= H:
                top, left = d.integer(H - ch + 1), d.integer(W - cw + 1)
                break
        assert (left, top, cw, ch) == (x, y, w, h)
        assert (hf, vf) == (d.uniform() < 0.5, d.uniform() < 0.5)
        ref = F.resized_crop(Image.fromarray(a), top, left, ch, cw, [96, 128],
                             InterpolationMode.BILINEAR, antialias=True)
        if hf:
            ref = F.horizontal_flip(ref)
        if vf:
            ref = F.vertical_flip(ref)
        scores.append(psnr(run(data, t, pos), np.asarray(ref).transpose(2, 0, 1)))
    record("RandomResizedCrop((96, 128)) + flips", scores, False)
    assert np.mean(scores) >= 40


def test_resize_then_center_crop(images):
    t = T.Compose([T.Resize((90, 150)), T.CenterCrop((80, 100))])
    t2 = T.Compose([T.Resize(110), T.CenterCrop(96)])
    s1, s2 = [], []
    for pos, (data, a) in enumerate(images):
        pil = Image.fromarray(a)
        r1 = F.center_crop(F.resize(pil, [90, 150], InterpolationMode.BILINEAR, antialias=True),
                           [80, 100])
        s1.append(psnr(run(data, t, pos), np.asarray(r1).transpose(2, 0, 1)))
        r2 = F.center_crop(F.resize(pil, [110], InterpolationMode.BILINEAR, antialias=True), [96])
        s2.append(psnr(run(data, t2, pos), np.asarray(r2).transpose(2, 0, 1)))
    record("Resize((90, 150)) + CenterCrop((80, 100))", s1, False)
    record("Resize(110) + CenterCrop(96)", s2, False)
    assert np.mean(s1) >= 40 and np.mean(s2) >= 40


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric"])
def test_random_crop_pad_center_crop_are_exact(images, mode):
    t = T.Compose([T.RandomCrop((90, 110), padding=(3, 5), fill=(10, 20, 30), padding_mode=mode),
                   T.Pad((2, 1, 4, 3), fill=7, padding_mode=mode), T.CenterCrop((100, 130)),
                   T.RandomHorizontalFlip(p=0.5)])
    scores = []
    for pos, (data, a) in enumerate(images):
        H, W = a.shape[:2]
        d = Draws(pos)
        fill = [10, 20, 30] if mode == "constant" else None
        x = F.pad(tensor(a), [3, 5, 3, 5], fill=fill or 0, padding_mode=mode)
        top = d.integer(H + 10 - 90 + 1) if H + 10 > 90 else 0
        left = d.integer(W + 6 - 110 + 1) if W + 6 > 110 else 0
        x = F.crop(x, top, left, 90, 110)
        x = F.pad(x, [2, 1, 4, 3], fill=7, padding_mode=mode)
        x = F.center_crop(x, [100, 130])
        if d.uniform() < 0.5:
            x = F.horizontal_flip(x)
        scores.append(psnr(run(data, t, pos), x.numpy()))
    record(f"RandomCrop(padding) + Pad + CenterCrop + flip ({mode})", scores, True)
    assert all(math.isinf(s) for s in scores)


# ---- colour ops (uint8 tensors) --------------------------------------------------

def crop_then(images, ops, ref_fn, name, exact=False, bound=40):
    t = T.Compose([T.CenterCrop(96)] + ops)
    scores = []
    for pos, (data, a) in enumerate(images):
        x = F.center_crop(tensor(a), [96])
        ref = ref_fn(x, Draws(pos)).numpy()
        ours = run(data, t, pos)
        scores.append(psnr(ours, ref))
    record(name, scores, exact)
    if exact:
        assert all(math.isinf(s) for s in scores), scores
    else:
        assert np.mean(scores) >= bound, scores


def test_grayscale_is_exact(images):
    crop_then(images, [T.Grayscale(3)], lambda x, d: F.rgb_to_grayscale(x, 3), "Grayscale(3)",
              exact=True)
    crop_then(images, [T.RandomGrayscale(0.5)],
              lambda x, d: F.rgb_to_grayscale(x, 3) if d.uniform() < 0.5 else x,
              "RandomGrayscale(0.5)", exact=True)


@pytest.mark.parametrize("which", ["brightness", "contrast", "saturation", "hue"])
def test_color_jitter_each_factor(images, which):
    kw = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}
    ranges = {"brightness": (0.6, 1.4), "contrast": (0.6, 1.4), "saturation": (0.6, 1.4),
              "hue": (-0.1, 0.1)}
    rs = [ranges[k] if k == which else None for k in ("brightness", "contrast", "saturation", "hue")]

    def ref(x, d):
        perm, factors = d.jitter(*rs)
        return tv_jitter(x, perm, factors)

    crop_then(images, [T.ColorJitter(**{which: kw[which]})], ref, f"ColorJitter({which}={kw[which]})")


def test_color_jitter_all_four(images):
    rs = [(0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1)]

    def ref(x, d):
        perm, factors = d.jitter(*rs)
        return tv_jitter(x, perm, factors)

    crop_then(images, [T.ColorJitter(0.4, 0.4, 0.4, 0.1)], ref, "ColorJitter(0.4, 0.4, 0.4, 0.1)")


def test_gaussian_blur(images):
    def ref(x, d):
        s = d.uniform(0.1, 2.0)
        return F.gaussian_blur(x, [5, 5], [s, s])

    crop_then(images, [T.GaussianBlur(5)], ref, "GaussianBlur(5, sigma=(0.1, 2))")


def test_to_dtype_and_normalize(images):
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    t = T.Compose([T.CenterCrop(96), T.ColorJitter(), T.ToDtype(torch.float32, scale=True),
                   T.Normalize(mean, std)])
    worst = 0.0
    for pos, (data, a) in enumerate(images):
        x = F.center_crop(tensor(a), [96])
        ref = F.normalize(F.to_dtype(x, torch.float32, scale=True), mean, std).numpy()
        worst = max(worst, float(np.abs(run(data, t, pos) - ref).max()))
    RESULTS["ToDtype(float32, scale=True) + Normalize"] = ("max |diff|", worst)
    assert worst <= 1e-6


def test_compositions(images):
    """imagenet_train + ColorJitter, and a flip/jitter/grayscale/blur chain."""
    t = T.Compose([T.RandomResizedCrop(112), T.RandomHorizontalFlip(),
                   T.ColorJitter(0.4, 0.4, 0.4, 0.1), T.RandomGrayscale(0.2)])
    scores = []
    for pos, (data, a) in enumerate(images):
        H, W = a.shape[:2]
        x0, y0, w, h, hf, _, _, _ = core.compose_sample_params(W, H, t, SEED, EPOCH, pos)
        d = Draws(pos)
        # skip the crop's draws: re-run them to find where the flip's draw is
        for _ in range(10):
            target = W * H * d.uniform(0.08, 1.0)
            aspect = math.exp(d.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < cw <= W and 0 < ch <= H:
                d.integer(H - ch + 1), d.integer(W - cw + 1)
                break
        assert (d.uniform() < 0.5) == hf
        pil = F.resized_crop(Image.fromarray(a), int(y0), int(x0), int(h), int(w), [112, 112],
                             InterpolationMode.BILINEAR, antialias=True)
        x = tensor(np.asarray(pil))
        if hf:
            x = F.horizontal_flip(x)
        perm, factors = d.jitter((0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1))
        x = tv_jitter(x, perm, factors)
        if d.uniform() < 0.2:
            x = F.rgb_to_grayscale(x, 3)
        scores.append(psnr(run(data, t, pos), x.numpy()))
    record("RandomResizedCrop(112) + flip + ColorJitter + RandomGrayscale", scores, False)
    assert np.mean(scores) >= 40


def test_zz_print_table():
    print("\n| op / composition | min PSNR dB | mean PSNR dB (finite) | exact samples |")
    print("|---|---|---|---|")
    for name, r in RESULTS.items():
        if r[0] == "max |diff|":
            print(f"| {name} | max abs diff {r[1]:.2e} | | |")
            continue
        exact, mn, mean, n_exact, n = r
        print(f"| {name} | {mn:.1f} | {mean:.1f} | {n_exact}/{n} |")
