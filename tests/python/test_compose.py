"""stoker.transforms.Compose against a pure numpy/Pillow reference where the
arithmetic is exact (crops, flips, pad, grayscale, dtype, normalize), the
presets against their Compose lists, through the Loader (batch shapes,
errors) and for masks. PNG sources: Pillow decodes them exactly as stoker.
(tests/against_torchvision compares with torchvision.transforms.v2 itself.)
"""
import io

import numpy as np
import pytest
from PIL import Image

import stoker
import stoker._core as core
from stoker import transforms as T


def png_bytes(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def textured(seed, w, h):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 3 + y) % 256, (y * 5 + 2 * x) % 256, (x * y) % 256], axis=-1)
    return ((base + rng.integers(0, 40, (h, w, 3))) % 256).astype(np.uint8)


def pad_np(a, ltrb, fill, mode):
    l, t, r, b = ltrb
    if mode == "constant":
        return np.stack([np.pad(a[..., c], ((t, b), (l, r)), constant_values=fill[c])
                         for c in range(a.shape[-1])], axis=-1)
    np_mode = {"edge": "edge", "reflect": "reflect", "symmetric": "symmetric"}[mode]
    return np.pad(a, ((t, b), (l, r), (0, 0)), mode=np_mode)


def gray_np(a):
    """torchvision's r*0.2989 + g*0.587 + b*0.114 in float32 (each add a
    fused multiply-add, exact in float64 here) truncated to uint8."""
    f32 = np.float32
    r, g, b = (a[..., i].astype(np.float64) for i in range(3))
    l1 = (r * f32(0.2989)).astype(f32).astype(np.float64)
    l2 = (g * np.float64(f32(0.587)) + l1).astype(f32).astype(np.float64)
    l3 = (b * np.float64(f32(0.114)) + l2).astype(f32)
    return l3.astype(np.uint8)


def chw(a):
    return a.transpose(2, 0, 1) if a.ndim == 3 else a[None]


def run(data, t, position=0, seed=3, epoch=1):
    return core.compose_transform_image(data, t, seed, epoch, position)


@pytest.fixture(scope="module")
def source():
    a = textured(0, 57, 43)
    return a, png_bytes(a)


def test_fused_crop_and_flips_are_exact(source):
    a, data = source
    t = T.Compose([T.RandomCrop((24, 20)), T.RandomHorizontalFlip(), T.RandomVerticalFlip()])
    seen = set()
    for pos in range(16):
        x, y, w, h, hflip, vflip, ow, oh = core.compose_sample_params(57, 43, t, 3, 1, pos)
        assert (w, h, ow, oh) == (20, 24, 20, 24)
        want = a[int(y):int(y) + 24, int(x):int(x) + 20]
        want = want[:, ::-1] if hflip else want
        want = want[::-1] if vflip else want
        np.testing.assert_array_equal(run(data, t, pos), chw(want))
        seen.add((hflip, vflip))
    assert len(seen) == 4


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric"])
def test_pad_center_crop_and_flip_are_exact(source, mode):
    a, data = source
    t = T.Compose([T.CenterCrop((20, 30)), T.Pad((1, 2, 3, 4), fill=(5, 6, 7), padding_mode=mode),
                   T.RandomVerticalFlip(p=1.0)])
    want = a[round((43 - 20) / 2):round((43 - 20) / 2) + 20, round((57 - 30) / 2):][:, :30]
    want = pad_np(want, (1, 2, 3, 4), (5, 6, 7), mode)[::-1]
    np.testing.assert_array_equal(run(data, t), chw(want))


def test_center_crop_larger_than_the_image_pads_with_zero(source):
    a, data = source
    out = run(data, T.Compose([T.CenterCrop((47, 57)), T.Grayscale(3)]))
    g = gray_np(a)
    want = np.zeros((47, 57), np.uint8)
    want[2:45] = g  # torchvision pads (47 - 43) // 2 = 2 on top
    np.testing.assert_array_equal(out, np.stack([want] * 3))


def test_random_crop_with_padding_draws_within_the_padded_image(source):
    a, data = source
    t = T.Compose([T.RandomCrop(48, padding=4, fill=9), T.Grayscale()])
    padded = gray_np(pad_np(a, (4, 4, 4, 4), (9, 9, 9), "constant"))
    outs = [run(data, t, pos) for pos in range(12)]
    for out in outs:
        assert out.shape == (1, 48, 48)
        # the output is a window of the padded gray image
        found = any(np.array_equal(out[0], padded[y:y + 48, x:x + 48])
                    for y in range(padded.shape[0] - 47) for x in range(padded.shape[1] - 47))
        assert found
    assert len({o.tobytes() for o in outs}) > 1


def test_grayscale_and_random_grayscale_are_exact(source):
    a, data = source
    t = T.Compose([T.CenterCrop(40), T.Grayscale()])
    c = a[2:42, 8:48]
    np.testing.assert_array_equal(run(data, t), gray_np(c)[None])
    t3 = T.Compose([T.CenterCrop(40), T.RandomGrayscale(p=1.0)])
    np.testing.assert_array_equal(run(data, t3), np.stack([gray_np(c)] * 3))
    t0 = T.Compose([T.CenterCrop(40), T.RandomGrayscale(p=0.0)])
    np.testing.assert_array_equal(run(data, t0), chw(c))


def test_to_dtype_and_normalize(source):
    a, data = source
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    c = a[2:42, 8:48]
    scaled = run(data, T.Compose([T.CenterCrop(40), T.ToDtype("float32", scale=True)]))
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, chw(c).astype(np.float32) / 255, rtol=0, atol=1e-7)
    unscaled = run(data, T.Compose([T.CenterCrop(40), T.ToDtype("float32")]))
    np.testing.assert_array_equal(unscaled, chw(c).astype(np.float32))
    norm = run(data, T.Compose([T.CenterCrop(40), T.ColorJitter(), T.ToDtype("float32", scale=True),
                                T.Normalize(mean, std)]))
    want = (chw(c).astype(np.float32) / 255 - np.float32(mean)[:, None, None]) / np.float32(std)[:, None, None]
    np.testing.assert_allclose(norm, want, rtol=0, atol=5e-7)


def test_presets_are_their_compose_lists():
    data = png_bytes(textured(1, 300, 200))
    for normalize in (False, True):
        for preset, kind in ((T.imagenet_train(64, normalize), "train"),
                             (T.imagenet_val(64, normalize), "val")):
            explicit = T.Compose(list(preset.transforms))
            for pos in range(4):
                old = core.transform_image(data, kind, 64, normalize, 3, 1, pos)
                np.testing.assert_array_equal(run(data, explicit, pos), old)


def test_color_jitter_is_a_function_of_seed_epoch_position(source):
    _, data = source
    t = T.Compose([T.CenterCrop(32), T.ColorJitter(0.4, 0.4, 0.4, 0.1), T.GaussianBlur(3)])
    a = run(data, t, 5)
    np.testing.assert_array_equal(a, run(data, t, 5))
    assert not np.array_equal(a, run(data, t, 6))
    assert not np.array_equal(a, run(data, t, 5, epoch=2))


def test_bad_arguments_name_the_op():
    with pytest.raises(ValueError, match="ToDtype: only torch.float32"):
        core.compose_sample_params(10, 10, T.Compose([T.CenterCrop(4), T.ToDtype("int64")]), 0, 0, 0)
    with pytest.raises(ValueError, match="ColorJitter: hue values should be between"):
        T.ColorJitter(hue=0.7)._spec()
    with pytest.raises(TypeError, match="not a stoker.transforms op"):
        T.Compose([lambda x: x])
    with pytest.raises(stoker.Error, match=r"GaussianBlur \(op 1\): kernel_size must be odd"):
        core.compose_sample_params(10, 10, T.Compose([T.CenterCrop(4), T.GaussianBlur(4)]), 0, 0, 0)


def write_folder(root, sizes):
    for i, (w, h) in enumerate(sizes):
        d = root / "cls"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:03d}.png").write_bytes(png_bytes(textured(i, w, h)))


def test_loader_batches_take_the_compose_shape(tmp_path):
    write_folder(tmp_path, [(60 + i, 50 + 2 * i) for i in range(6)])
    t = T.Compose([T.Resize((30, 40)), T.RandomHorizontalFlip(), T.Grayscale()])
    loader = stoker.Loader(str(tmp_path), batch_size=3, transform=t, threads=2)
    batches = list(loader)
    assert [tuple(b["image"].shape) for b in batches] == [(3, 1, 30, 40)] * 2
    files = sorted((tmp_path / "cls").iterdir())
    for b in batches:
        for img, idx in zip(b["image"], b["index"]):
            one = run(files[int(idx)].read_bytes(), t, int(idx), seed=0, epoch=0)
            np.testing.assert_array_equal(np.asarray(img), one)


def test_loader_refuses_a_compose_without_a_fixed_size(tmp_path, record_behaviour):
    write_folder(tmp_path, [(60, 50)])
    with pytest.raises(stoker.Error, match=r"output size is not fixed.*Resize \(op 0\).*Resize\(\(h, w\)\)") as e:
        stoker.Loader(str(tmp_path), transform=T.Compose([T.Resize(32)]))
    record_behaviour("transform", "Compose whose output size depends on the image (Resize(32) alone)",
                     f"Loader() raises stoker.Error '{e.value}'")


def test_a_shape_the_op_cannot_take_follows_on_error(tmp_path, record_behaviour):
    write_folder(tmp_path, [(60, 50), (20, 20), (70, 55)])
    t = T.Compose([T.RandomCrop(40)])
    with pytest.raises(stoker.Error, match=r"001\.png.*RandomCrop \(op 0\): crop \(h=40, w=40\) "
                                           r"is larger than the image \(h=20, w=20\)") as e:
        list(stoker.Loader(str(tmp_path), batch_size=3, transform=t, on_error="raise"))
    loader = stoker.Loader(str(tmp_path), batch_size=3, transform=t, on_error="skip")
    batches = list(loader)
    assert sorted(int(i) for b in batches for i in b["index"]) == [0, 2]
    assert loader.stats()["samples_skipped"] == 1
    record_behaviour("transform", "image smaller than a RandomCrop without pad_if_needed",
                     f"skip: skipped and counted; raise: stoker.Error "
                     f"'{str(e.value).replace(str(tmp_path), '<root>')}'")


def test_mask_gets_the_images_crop_and_flip():
    """A mask whose values are the source x coordinate (and one with y):
    after the same Compose, the mask shows the coordinates the image shows
    (the image is a coordinate ramp, resampled bilinearly)."""
    w, h = 180, 120
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x, y, np.zeros_like(x)], -1).astype(np.uint8)
    data = png_bytes(img)
    mx, my = png_bytes(x.astype(np.uint8)), png_bytes(y.astype(np.uint8))
    t = T.Compose([T.RandomResizedCrop((40, 60), scale=(0.3, 1)), T.RandomHorizontalFlip(),
                   T.ColorJitter(contrast=(1, 1 + 1e-9)), T.RandomVerticalFlip()])
    flips = set()
    for pos in range(10):
        out = run(data, t, pos)
        gx = core.transform_mask(mx, t, 3, 1, pos, w, h)
        gy = core.transform_mask(my, t, 3, 1, pos, w, h)
        assert gx.shape == (40, 60)
        assert np.abs(out[0].astype(int) - gx).max() <= 2
        assert np.abs(out[1].astype(int) - gy).max() <= 2
        flips.add((gx[0, 0] > gx[0, -1], gy[0, 0] > gy[-1, 0]))
    assert len(flips) >= 3
    with pytest.raises(stoker.Error, match="mask is 180x120, image is 181x120"):
        core.transform_mask(mx, t, 3, 1, 0, 181, 120)
