"""CLIP-style contrastive training on image-caption pairs: stoker reads the
images and their captions from a manifest (the caption is an extra column),
and a small image encoder and text encoder learn to match them.

    python examples/python/clip_style.py --generate /tmp/pairs   # writes pairs.csv
    python examples/python/clip_style.py --manifest /tmp/pairs/pairs.csv --steps 50

The manifest is a CSV with header path,label,caption (or a JSON Lines file
with those keys); `fields=["caption"]` makes each batch carry
`batch["caption"]`, a list of str in batch order next to
`batch["image"]`. Prints the contrastive loss and the in-batch retrieval
accuracy (how often an image's best-matching caption is its own).
"""
import argparse
import csv
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import stoker

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 70, 220),
           "yellow": (230, 220, 40), "purple": (150, 50, 200), "grey": (128, 128, 128)}
SHAPES = ("square", "stripe")


def generate(folder: str, n: int) -> str:
    """n JPEGs of a coloured shape on a noisy background, with a caption each."""
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        colour = list(COLOURS)[i % len(COLOURS)]
        shape = SHAPES[(i // len(COLOURS)) % len(SHAPES)]
        img = rng.integers(0, 60, size=(96, 128, 3)).astype(np.uint8)
        if shape == "square":
            img[24:72, 40:88] = COLOURS[colour]
        else:
            img[:, 56:72] = COLOURS[colour]
        name = f"img{i:04d}.jpg"
        Image.fromarray(img).save(os.path.join(folder, name), quality=90)
        rows.append((name, i % len(COLOURS), f"a {colour} {shape}, picture {i}"))
    path = os.path.join(folder, "pairs.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "caption"])
        w.writerows(rows)
    return path


class ImageEncoder(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 5, stride=2)
        self.conv2 = nn.Conv2d(32, 64, 3, stride=2)
        self.fc = nn.Linear(64, dim)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


class TextEncoder(nn.Module):
    """Bag of words, hashed: enough to tell captions apart."""

    def __init__(self, dim, buckets=1024):
        super().__init__()
        self.buckets = buckets
        self.emb = nn.EmbeddingBag(buckets, dim, mode="mean")

    def forward(self, captions):
        ids, offsets = [], []
        for c in captions:
            offsets.append(len(ids))
            words = c.lower().replace(",", " ").split()
            ids += [sum(map(ord, w)) * 2654435761 % self.buckets for w in words]
        return self.emb(torch.tensor(ids), torch.tensor(offsets))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--manifest", help="CSV or JSON Lines with path, label, caption")
    p.add_argument("--generate", metavar="DIR", help="write a demo set of pairs and exit")
    p.add_argument("--count", type=int, default=256)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()
    if args.generate:
        print(generate(args.generate, args.count))
        return
    if not args.manifest:
        p.error("--manifest or --generate")

    torch.manual_seed(0)
    loader = stoker.Loader(
        args.manifest, batch_size=args.batch_size, shuffle=True, drop_last=True,
        transform=stoker.transforms.imagenet_train(64, normalize=True),
        fields=["caption"])
    image_enc, text_enc = ImageEncoder(64), TextEncoder(64)
    params = list(image_enc.parameters()) + list(text_enc.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    scale = nn.Parameter(torch.tensor(2.0))
    opt.add_param_group({"params": [scale]})
    step = 0
    while step < args.steps:
        for batch in loader:
            images, captions = batch["image"], batch["caption"]  # a tensor and a list of str
            assert len(captions) == images.shape[0]
            zi = F.normalize(image_enc(images), dim=1)
            zt = F.normalize(text_enc(captions), dim=1)
            logits = zi @ zt.t() * scale.exp()
            target = torch.arange(len(captions))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            accuracy = (logits.argmax(dim=1) == target).float().mean().item()
            step += 1
            if step % 10 == 0 or step == args.steps:
                print(f"step {step}: loss {loss.item():.3f}, in-batch retrieval "
                      f"{accuracy:.2f}, e.g. {captions[0]!r}", flush=True)
            if step >= args.steps:
                break
    loader.close()


if __name__ == "__main__":
    main()
