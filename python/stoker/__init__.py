"""stoker: storage to tensors, fast.

    import stoker
    loader = stoker.Loader("/data/train", batch_size=256,
                           transform=stoker.transforms.imagenet_train(224),
                           shuffle=True, seed=0)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for batch in loader:   # dict: image (N x 3 x H x W), label, index
            ...

All the work happens in C++ threads with the GIL released; Python only
receives finished batches, handed over through DLPack without a copy.
"""

from stoker import transforms
from stoker._convert import convert
from stoker._core import Error
from stoker._loader import Loader

__all__ = ["Loader", "Error", "convert", "transforms"]
__version__ = "0.1.0"
