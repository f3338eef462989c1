"""Semantic segmentation: images and their masks, cropped and flipped alike.

    python examples/python/segmentation.py --generate /tmp/seg    # writes the set
    python examples/python/segmentation.py --data /tmp/seg --steps 40

The set is a folder in ImageFolder layout where each image `x.jpg` has its
mask beside it as `x.png` (an 8-bit palette or grayscale PNG of the
image's size whose values are class indices). `fields={"png": "mask"}`
reads the mask with each image and gives it the image's geometric
transform (the same RandomResizedCrop box, resize with nearest neighbour,
the same flips; no colour ops), so `batch["png"]` is a uint8 N x 1 x H x W
tensor aligned pixel for pixel with `batch["image"]`. A small
fully-convolutional net learns the masks; prints the loss and pixel
accuracy.
"""
import argparse
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import stoker
from stoker import transforms as T

CLASSES = 3  # background, disc, bar
PALETTE = [0, 0, 0, 220, 60, 40, 40, 90, 220]


def generate(folder: str, n: int) -> None:
    """n JPEGs with a disc and a bar on a noisy background; masks as palette PNGs."""
    from PIL import Image
    os.makedirs(os.path.join(folder, "all"), exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        h, w = int(rng.integers(80, 140)), int(rng.integers(80, 140))
        mask = np.zeros((h, w), np.uint8)
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx, r = rng.integers(20, h - 20), rng.integers(20, w - 20), rng.integers(8, 20)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 1
        x0 = int(rng.integers(0, w - 12))
        mask[:, x0:x0 + 10][mask[:, x0:x0 + 10] == 0] = 2
        img = rng.integers(0, 50, size=(h, w, 3)).astype(np.int16)
        img[mask == 1] += (170, 40, 0)
        img[mask == 2] += (0, 40, 170)
        name = os.path.join(folder, "all", f"s{i:04d}")
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(name + ".jpg", quality=92)
        m = Image.fromarray(mask, mode="P")
        m.putpalette(PALETTE)
        m.save(name + ".png")


def loader_for(folder: str, batch_size: int, seed: int = 0) -> stoker.Loader:
    transform = T.Compose([
        T.RandomResizedCrop(64, scale=(0.3, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomVerticalFlip(),
        T.ColorJitter(0.3, 0.3, 0.3),  # the image only: masks get the geometry alone
        T.ToDtype("float32", scale=True),
    ])
    return stoker.Loader(folder, batch_size=batch_size, transform=transform, shuffle=True,
                         seed=seed, drop_last=True, fields={"png": "mask"})


class TinyFCN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, CLASSES, 1))

    def forward(self, x):
        return self.body(x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", help="folder of x.jpg images with x.png masks")
    p.add_argument("--generate", metavar="DIR")
    p.add_argument("--count", type=int, default=128)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()
    if args.generate:
        generate(args.generate, args.count)
        print(args.generate)
        return
    if not args.data:
        p.error("--data or --generate")
    torch.manual_seed(0)
    loader = loader_for(args.data, args.batch_size)
    net = TinyFCN()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    step = 0
    while step < args.steps:
        for batch in loader:
            images, masks = batch["image"], batch["png"].long()[:, 0]  # N x H x W classes
            assert images.shape[-2:] == masks.shape[-2:]
            logits = net(images)
            loss = F.cross_entropy(logits, masks)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % 10 == 0 or step == args.steps:
                acc = (logits.argmax(1) == masks).float().mean().item()
                print(f"step {step}: loss {loss.item():.3f}, pixel accuracy {acc:.3f}", flush=True)
            if step >= args.steps:
                break
    loader.close()


if __name__ == "__main__":
    main()
