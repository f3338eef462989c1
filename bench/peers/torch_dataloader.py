"""Peer baseline: PyTorch's DataLoader over torchvision's ImageFolder.

    python path/to/torch_dataloader.py DIR --epochs 3 --batch-size 64 --workers 2 --json

The standard ImageNet training input pipeline, as the PyTorch examples write
it: ImageFolder + Compose([RandomResizedCrop(224), RandomHorizontalFlip(),
ToTensor(), Normalize(ImageNet mean, std)]), DataLoader(batch_size,
num_workers, shuffle=True). Workers are new processes every epoch (the
DataLoader default) unless --persistent-workers.

Standalone: it runs under the peer's own interpreter, where stoker is not
installed, and never imports stoker. It loads only the stoker checkout's
python/stoker/_measure.py (standard library only) by path, so that stoker and its peer
are measured by the same code. When torchvision is missing it uses an exact
Pillow re-implementation of the same dataset and transforms, and says so in
the "peer" field.

Measured per epoch, from creating the iterator (workers start) to the last
batch: images/s, CPU seconds of the whole process tree (main + workers,
whether still alive or already joined), and, sampled throughout, the peak of
the tree's summed RSS (and PSS).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision.datasets.folder.IMG_EXTENSIONS
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _load_measure():
    path = Path(__file__).resolve().parents[2] / "python" / "stoker" / "_measure.py"
    spec = importlib.util.spec_from_file_location("_stoker_peer_measure", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses/pickling look modules up by name
    spec.loader.exec_module(mod)
    return mod


measure = _load_measure()


# ----------------------------------------- Pillow re-implementation (fallback)
# Each piece follows torchvision 0.2x line by line (transforms.py,
# _functional_pil.py, functional.py, datasets/folder.py), including the order
# of torch RNG draws, so its cost and its outputs match.


def _find_samples(root):
    """datasets.folder.find_classes + make_dataset."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise FileNotFoundError(f"Couldn't find any class folder in {root}.")
    class_to_idx = {c: i for i, c in enumerate(classes)}
    samples = []
    for c in sorted(class_to_idx):
        d = os.path.join(root, c)
        if not os.path.isdir(d):
            continue
        for dirpath, _, fnames in sorted(os.walk(d, followlinks=True)):
            for fname in sorted(fnames):
                path = os.path.join(dirpath, fname)
                if path.lower().endswith(IMG_EXTENSIONS):
                    samples.append((path, class_to_idx[c]))
    return classes, samples


def _pil_loader(path):
    from PIL import Image

    with open(path, "rb") as f:
        img = Image.open(f)
        return img.convert("RGB")


class PillowImageFolder:
    """torchvision.datasets.ImageFolder(root, transform)."""

    def __init__(self, root, transform=None):
        self.root = root
        self.transform = transform
        self.classes, self.samples = _find_samples(root)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.targets = [s[1] for s in self.samples]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, target = self.samples[index]
        sample = _pil_loader(path)
        if self.transform is not None:
            sample = self.transform(sample)
        return sample, target


class PillowRandomResizedCrop:
    """transforms.RandomResizedCrop(size) on PIL images (bilinear)."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0)):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.scale, self.ratio = scale, ratio

    @staticmethod
    def get_params(img, scale, ratio):
        import torch

        width, height = img.size
        area = height * width
        log_ratio = torch.log(torch.tensor(ratio))
        for _ in range(10):
            target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
            aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= width and 0 < h <= height:
                i = torch.randint(0, height - h + 1, size=(1,)).item()
                j = torch.randint(0, width - w + 1, size=(1,)).item()
                return i, j, h, w
        in_ratio = float(width) / float(height)  # fallback to central crop
        if in_ratio < min(ratio):
            w = width
            h = int(round(w / min(ratio)))
        elif in_ratio > max(ratio):
            h = height
            w = int(round(h * max(ratio)))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, img):
        from PIL import Image

        i, j, h, w = self.get_params(img, self.scale, self.ratio)
        img = img.crop((j, i, j + w, i + h))  # F_pil.crop(img, top=i, left=j, ...)
        return img.resize(self.size[::-1], Image.BILINEAR)  # F_pil.resize: (w, h)


class PillowRandomHorizontalFlip:
    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, img):
        import torch
        from PIL import Image

        if torch.rand(1) < self.p:
            return img.transpose(Image.FLIP_LEFT_RIGHT)
        return img


class PillowToTensor:
    def __call__(self, pic):
        import numpy as np
        import torch

        img = torch.from_numpy(np.array(pic, np.uint8, copy=True))
        img = img.view(pic.size[1], pic.size[0], len(pic.getbands()))
        img = img.permute((2, 0, 1)).contiguous()
        return img.to(dtype=torch.get_default_dtype()).div(255)


class PillowNormalize:
    def __init__(self, mean, std):
        self.mean, self.std = mean, std

    def __call__(self, tensor):
        import torch

        tensor = tensor.clone()  # inplace=False
        mean = torch.as_tensor(self.mean, dtype=tensor.dtype, device=tensor.device)
        std = torch.as_tensor(self.std, dtype=tensor.dtype, device=tensor.device)
        return tensor.sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))


class PillowCompose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img


class WithIndex:
    """Wraps a dataset to also return each sample's index (--verify)."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, index):
        x, y = self.ds[index]
        return x, y, index


def make_dataset(root, size=224, force_pillow=False, jitter=False):
    """(dataset, description of the peer) for the ImageNet training pipeline
    (with jitter: + ColorJitter(0.4, 0.4, 0.4, 0.1) after the flip)."""
    tv = None
    if not force_pillow:
        try:
            import torchvision
            from torchvision import datasets, transforms

            tv = torchvision
        except ImportError:
            tv = None
    if tv is not None:
        tf = transforms.Compose([
            transforms.RandomResizedCrop(size),
            transforms.RandomHorizontalFlip(),
            *([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)] if jitter else []),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ])
        return datasets.ImageFolder(root, tf), "torch DataLoader + torchvision", tv.__version__
    if jitter:
        raise SystemExit("--jitter needs torchvision (no Pillow re-implementation of ColorJitter)")
    tf = PillowCompose([
        PillowRandomResizedCrop(size),
        PillowRandomHorizontalFlip(),
        PillowToTensor(),
        PillowNormalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    return (PillowImageFolder(root, tf),
            "torch DataLoader + Pillow re-implementation of torchvision transforms", None)


# ------------------------------------------------------------------------ run


def run(root, epochs=3, batch_size=64, workers=2, size=224, seed=0, persistent_workers=False,
        force_pillow=False, verify=False, log=None, jitter=False):
    import torch
    from PIL import __version__ as pillow_version

    torch.manual_seed(seed)
    ds, peer, tv_version = make_dataset(root, size, force_pillow, jitter)
    # What the process holds before loading anything (Python, torch,
    # torchvision, the file list): the part of the peak that is not loading.
    baseline_rss = measure.tree_rss_bytes()
    n = len(ds)
    labels_by_index = [t for _, t in ds.samples] if verify else None
    loader = torch.utils.data.DataLoader(
        WithIndex(ds) if verify else ds, batch_size=batch_size, shuffle=True,
        num_workers=workers, persistent_workers=persistent_workers and workers > 0)

    epoch_rows, seen, label_mismatches, shape, dtype = [], [], 0, None, None
    with measure.TreeSampler(pss=True) as sampler:
        for epoch in range(epochs):
            # CPU of the whole tree, less what the RSS sampler itself used.
            cpu0, t0 = measure.tree_cpu_seconds() - sampler.cpu_s, time.perf_counter()
            count, indices = 0, set()
            for batch in loader:
                if count == 0:
                    sampler.rescan()  # the workers are alive now, however short the epoch
                images, targets = batch[0], batch[1]
                count += int(targets.shape[0])
                if verify:
                    idx = batch[2].tolist()
                    indices.update(idx)
                    label_mismatches += sum(labels_by_index[i] != t
                                            for i, t in zip(idx, targets.tolist()))
                    shape, dtype = list(images.shape[1:]), str(images.dtype)
            wall = time.perf_counter() - t0
            cpu = measure.tree_cpu_seconds() - sampler.cpu_s - cpu0
            row = {"epoch": epoch, "images": count, "wall_s": wall,
                   "images_per_s": count / wall if wall > 0 else float("nan"),
                   "cpu_s": cpu, "cpu_s_per_image": cpu / count if count else float("nan"),
                   "rss_after_bytes": measure.tree_rss_bytes()}
            epoch_rows.append(row)
            seen.append(len(indices))
            if log:
                log(f"epoch {epoch}: {count} images in {wall:.2f} s = {row['images_per_s']:.0f} img/s, "
                    f"{row['cpu_s_per_image'] * 1e3:.2f} CPU-ms/img")

    images = sum(r["images"] for r in epoch_rows)
    cpu = sum(r["cpu_s"] for r in epoch_rows)
    out = {
        "peer": peer,
        "torch": torch.__version__,
        "torchvision": tv_version,
        "pillow": pillow_version,
        "python": sys.version.split()[0],
        "data": os.fspath(root),
        "num_samples": n,
        "num_classes": len(ds.classes),
        "batch_size": batch_size,
        "workers": workers,
        "persistent_workers": bool(persistent_workers and workers > 0),
        "size": size,
        "images_per_s": measure.median(r["images_per_s"] for r in epoch_rows),
        # The best epoch: on a shared machine, the one least disturbed.
        "images_per_s_max": max(r["images_per_s"] for r in epoch_rows),
        "cpu_s_per_image": cpu / images if images else float("nan"),
        "peak_rss_bytes": max([sampler.peak_rss_bytes] + [r["rss_after_bytes"] for r in epoch_rows]),
        "peak_pss_bytes": sampler.peak_pss_bytes,
        "baseline_rss_bytes": baseline_rss,
        "peak_processes": sampler.peak_processes,
        "images": images,
        "wall_s": sum(r["wall_s"] for r in epoch_rows),
        "cpu_s": cpu,
        "measure_cpu_s": sampler.cpu_s,
        "epochs": epoch_rows,
        "rss_after_epoch": [r["rss_after_bytes"] for r in epoch_rows],
    }
    if verify:
        out["verify"] = {"distinct_indices_per_epoch": seen, "label_mismatches": label_mismatches,
                         "image_shape": shape, "image_dtype": dtype}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", help="ImageFolder root")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--persistent-workers", action="store_true")
    p.add_argument("--force-pillow", action="store_true",
                   help="use the Pillow re-implementation even if torchvision is installed")
    p.add_argument("--verify", action="store_true",
                   help="also return each sample's index; report coverage and label checks")
    p.add_argument("--jitter", action="store_true",
                   help="add ColorJitter(0.4, 0.4, 0.4, 0.1) after the flip (needs torchvision)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    a = p.parse_args(argv)
    log = (lambda s: print(s, file=sys.stderr)) if a.json else print
    out = run(a.dir, a.epochs, a.batch_size, a.workers, a.size, a.seed, a.persistent_workers,
              a.force_pillow, a.verify, log=log, jitter=a.jitter)
    if a.json:
        print(json.dumps(measure.jsonable(out)))
    else:
        print(f"{out['peer']}: {out['images_per_s']:.0f} img/s (median of {a.epochs} epochs), "
              f"{out['cpu_s_per_image'] * 1e3:.2f} CPU-ms/img, peak RSS (tree) "
              f"{measure.fmt_bytes(out['peak_rss_bytes'])}, peak PSS "
              f"{measure.fmt_bytes(out['peak_pss_bytes'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
