"""Per-sample transforms, run in C++ threads fused with decoding.

``Compose([...])`` takes torchvision.transforms.v2's ops, with their names,
arguments and defaults::

    from stoker import transforms as T
    T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(),
               T.ColorJitter(0.4, 0.4, 0.4, 0.1),
               T.ToDtype(torch.float32, scale=True), T.Normalize(mean, std)])

The leading crops, one resize and the flips are fused into decoding (only
the crop's part of a JPEG is decoded); the other ops run on the decoded crop.
Every op's random parameters are a function of (seed, epoch, position), so
batches are the same for any thread count and on resume. Batches need one
shape: the Compose must end in a fixed size (a crop, or Resize((h, w))).
Output: uint8 (C, H, W), or float32 after ToDtype(torch.float32).

``imagenet_train`` and ``imagenet_val`` return the usual ImageNet Compose
lists. docs/transforms.md has the details and the agreement with torchvision.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple, Union

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_Size = Union[int, Sequence[int]]


def _size(name: str, size: _Size) -> Tuple[int, int]:
    """torchvision's _setup_size: int -> (s, s); (s,) -> (s, s); (h, w)."""
    if isinstance(size, numbers.Integral):
        return int(size), int(size)
    size = tuple(size)
    if len(size) == 1:
        return int(size[0]), int(size[0])
    if len(size) != 2:
        raise ValueError(f"{name}: size must be an int or a sequence of 1 or 2 ints, got {size!r}")
    return int(size[0]), int(size[1])


def _padding(name: str, padding) -> Tuple[int, int, int, int]:
    """int -> all sides; (lr, tb); (left, top, right, bottom)."""
    if padding is None:
        return 0, 0, 0, 0
    if isinstance(padding, numbers.Integral):
        p = int(padding)
        return p, p, p, p
    padding = tuple(int(v) for v in padding)
    if len(padding) == 1:
        return padding * 4
    if len(padding) == 2:
        return padding[0], padding[1], padding[0], padding[1]
    if len(padding) == 4:
        return padding  # type: ignore[return-value]
    raise ValueError(f"{name}: padding must be an int or a sequence of 1, 2 or 4 ints, "
                     f"got {padding!r}")


def _fill(name: str, fill) -> Tuple[int, int, int]:
    if fill is None:
        return 0, 0, 0
    if isinstance(fill, numbers.Number):
        return (int(fill),) * 3
    fill = tuple(int(v) for v in fill)
    if len(fill) == 1:
        return fill * 3
    if len(fill) == 3:
        return fill  # type: ignore[return-value]
    raise ValueError(f"{name}: fill must be a number or a sequence of 1 or 3 numbers, got {fill!r}")


_MODES = ("constant", "edge", "reflect", "symmetric")


def _mode(name: str, mode: str) -> str:
    if mode not in _MODES:
        raise ValueError(f"{name}: padding_mode must be one of {_MODES}, got {mode!r}")
    return mode


def _jitter_range(name: str, value, center: float, bound: Tuple[float, float],
                  clip_first_on_zero: bool) -> Tuple[float, float]:
    """torchvision's ColorJitter._check_input; (center, center) is its None."""
    if value is None:
        return center, center
    if isinstance(value, numbers.Number):
        if value < 0:
            raise ValueError(f"ColorJitter: if {name} is a single number, it must be "
                             f"non-negative, got {value!r}")
        lo, hi = center - float(value), center + float(value)
        if clip_first_on_zero:
            lo = max(lo, 0.0)
    else:
        value = tuple(value)
        if len(value) != 2:
            raise ValueError(f"ColorJitter: {name} must be a number or a pair, got {value!r}")
        lo, hi = float(value[0]), float(value[1])
    if not (bound[0] <= lo <= hi <= bound[1]):
        raise ValueError(f"ColorJitter: {name} values should be between {bound}, got {(lo, hi)}")
    return lo, hi


def _dtype_name(dtype) -> str:
    s = dtype if isinstance(dtype, str) else str(dtype)
    s = s.replace("torch.", "")
    if s not in ("float32", "float"):
        raise ValueError(f"ToDtype: only torch.float32 is supported, got {dtype!r}")
    return "float32"


class _Op:
    """An op of a Compose; _spec() is what the C++ side reads."""

    def _spec(self) -> Dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class RandomResizedCrop(_Op):
    size: _Size
    scale: Tuple[float, float] = (0.08, 1.0)
    ratio: Tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    antialias: bool = True

    def _spec(self):
        if self.antialias is not True:
            raise ValueError("RandomResizedCrop: only antialias=True (Pillow's bilinear) is supported")
        return {"type": "RandomResizedCrop", "size": _size("RandomResizedCrop", self.size),
                "scale": tuple(map(float, self.scale)), "ratio": tuple(map(float, self.ratio))}


@dataclass(frozen=True)
class Resize(_Op):
    """int: the shorter side (torchvision's rounding); (h, w): exactly."""
    size: _Size
    antialias: bool = True

    def _spec(self):
        if self.antialias is not True:
            raise ValueError("Resize: only antialias=True (Pillow's bilinear) is supported")
        if isinstance(self.size, numbers.Integral):
            size = (int(self.size), 0)
        else:
            s = tuple(int(v) for v in self.size)
            if len(s) == 1:
                size = (s[0], 0)
            elif len(s) == 2:
                size = s
            else:
                raise ValueError(f"Resize: size must be an int or a sequence of 1 or 2 ints, "
                                 f"got {self.size!r}")
        return {"type": "Resize", "size": size}


@dataclass(frozen=True)
class CenterCrop(_Op):
    size: _Size

    def _spec(self):
        return {"type": "CenterCrop", "size": _size("CenterCrop", self.size)}


@dataclass(frozen=True)
class RandomCrop(_Op):
    size: _Size
    padding: Any = None
    pad_if_needed: bool = False
    fill: Any = 0
    padding_mode: str = "constant"

    def _spec(self):
        return {"type": "RandomCrop", "size": _size("RandomCrop", self.size),
                "padding": _padding("RandomCrop", self.padding),
                "pad_if_needed": bool(self.pad_if_needed), "fill": _fill("RandomCrop", self.fill),
                "padding_mode": _mode("RandomCrop", self.padding_mode)}


@dataclass(frozen=True)
class Pad(_Op):
    padding: Any
    fill: Any = 0
    padding_mode: str = "constant"

    def _spec(self):
        return {"type": "Pad", "padding": _padding("Pad", self.padding),
                "fill": _fill("Pad", self.fill), "padding_mode": _mode("Pad", self.padding_mode)}


@dataclass(frozen=True)
class RandomHorizontalFlip(_Op):
    p: float = 0.5

    def _spec(self):
        return {"type": "RandomHorizontalFlip", "p": float(self.p)}


@dataclass(frozen=True)
class RandomVerticalFlip(_Op):
    p: float = 0.5

    def _spec(self):
        return {"type": "RandomVerticalFlip", "p": float(self.p)}


@dataclass(frozen=True)
class ColorJitter(_Op):
    brightness: Any = None
    contrast: Any = None
    saturation: Any = None
    hue: Any = None

    def _spec(self):
        inf = float("inf")
        return {"type": "ColorJitter",
                "brightness": _jitter_range("brightness", self.brightness, 1.0, (0, inf), True),
                "contrast": _jitter_range("contrast", self.contrast, 1.0, (0, inf), True),
                "saturation": _jitter_range("saturation", self.saturation, 1.0, (0, inf), True),
                "hue": _jitter_range("hue", self.hue, 0.0, (-0.5, 0.5), False)}


@dataclass(frozen=True)
class RandomGrayscale(_Op):
    p: float = 0.1

    def _spec(self):
        return {"type": "RandomGrayscale", "p": float(self.p)}


@dataclass(frozen=True)
class Grayscale(_Op):
    num_output_channels: int = 1

    def _spec(self):
        return {"type": "Grayscale", "num_output_channels": int(self.num_output_channels)}


@dataclass(frozen=True)
class GaussianBlur(_Op):
    kernel_size: _Size
    sigma: Any = (0.1, 2.0)

    def _spec(self):
        if isinstance(self.kernel_size, numbers.Integral):
            k = (int(self.kernel_size), int(self.kernel_size))
        else:
            k = tuple(int(v) for v in self.kernel_size)
            k = k * 2 if len(k) == 1 else k
        if len(k) != 2:
            raise ValueError(f"GaussianBlur: kernel_size must be an int or a pair, got "
                             f"{self.kernel_size!r}")
        if isinstance(self.sigma, numbers.Number):
            sigma = (float(self.sigma), float(self.sigma))
        else:
            s = tuple(float(v) for v in self.sigma)
            sigma = s * 2 if len(s) == 1 else s
        if len(sigma) != 2:
            raise ValueError(f"GaussianBlur: sigma must be a number or a pair, got {self.sigma!r}")
        return {"type": "GaussianBlur", "kernel_size": k, "sigma": sigma}


@dataclass(frozen=True)
class Normalize(_Op):
    mean: Sequence[float]
    std: Sequence[float]
    inplace: bool = False

    def _spec(self):
        return {"type": "Normalize", "mean": tuple(float(v) for v in self.mean),
                "std": tuple(float(v) for v in self.std)}


@dataclass(frozen=True)
class ToDtype(_Op):
    """ToDtype(torch.float32, scale=True): x / 255. (Or the string "float32".)"""
    dtype: Any
    scale: bool = False

    def _spec(self):
        _dtype_name(self.dtype)
        return {"type": "ToDtype", "scale_values": bool(self.scale)}


class Compose:
    """torchvision.transforms.v2.Compose of the ops above.

    fast_decode: decode JPEG crops with libjpeg's fast integer IDCT (~7% less
    CPU per image; 46 dB PSNR against Pillow's decode instead of 55 dB).
    """

    def __init__(self, transforms: Sequence[_Op], *, fast_decode: bool = False):
        self.transforms = tuple(transforms)
        self.fast_decode = bool(fast_decode)
        for i, op in enumerate(self.transforms):
            if not isinstance(op, _Op):
                raise TypeError(f"Compose: transforms[{i}] is {op!r}, not a stoker.transforms op "
                                f"(torchvision's own transforms run in Python: use map=)")

    def __repr__(self) -> str:
        ops = ", ".join(repr(op) for op in self.transforms)
        return f"Compose([{ops}]{', fast_decode=True' if self.fast_decode else ''})"

    def __eq__(self, other) -> bool:
        return (isinstance(other, Compose) and self.transforms == other.transforms
                and self.fast_decode == other.fast_decode)

    def __hash__(self) -> int:
        return hash((self.transforms, self.fast_decode))

    def _spec(self) -> Tuple[List[Dict[str, Any]], bool]:
        return [op._spec() for op in self.transforms], self.fast_decode


# Older name of the transform type.
Transform = Compose


def imagenet_train(size: int = 224, normalize: bool = False, *,
                   scale: Tuple[float, float] = (0.08, 1.0),
                   ratio: Tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
                   flip_probability: float = 0.5, fast_decode: bool = True) -> Compose:
    """Compose([RandomResizedCrop(size, scale, ratio), RandomHorizontalFlip(p)])
    (+ ToDtype(float32, scale=True), Normalize(ImageNet mean, std)).

    The crop's parameters follow torchvision's sampling; only the needed rows
    and columns of a JPEG are decoded, at the smallest DCT scale that still
    covers the output. Randomness is a function of (seed, epoch, position).

    fast_decode (default on for training, as in FFCV): libjpeg's fast
    integer IDCT, ~7% less CPU per image; the crops differ from Pillow's
    decode by 46 dB PSNR instead of 55 dB.
    """
    ops: List[_Op] = [RandomResizedCrop(size, tuple(scale), tuple(ratio)),
                      RandomHorizontalFlip(flip_probability)]
    if normalize:
        ops += [ToDtype("float32", scale=True), Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return Compose(ops, fast_decode=fast_decode)


def imagenet_val(size: int = 224, normalize: bool = False, *,
                 center_fraction: float = 0.875, fast_decode: bool = False) -> Compose:
    """Compose([Resize(round(size / center_fraction)), CenterCrop(size)])
    (+ ToDtype(float32, scale=True), Normalize): torchvision's Resize(256) +
    CenterCrop(224) at 224. Decodes exactly as Pillow unless fast_decode=True."""
    if not (0 < center_fraction <= 1):
        raise ValueError(f"center_fraction must be in (0, 1], got {center_fraction!r}")
    ops: List[_Op] = [Resize(round(size / center_fraction)), CenterCrop(size)]
    if normalize:
        ops += [ToDtype("float32", scale=True), Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return Compose(ops, fast_decode=fast_decode)
