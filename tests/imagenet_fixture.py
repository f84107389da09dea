"""Tiny ImageNet-style class-folder trees of real JPEG files, for the ImageNet tests."""
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("n01440764", "n01443537", "n01484850")


def make_imagenet(root, train_per_class=4, val_per_class=2, splits=("train", "val"), size=40,
                  classes=CLASSES, seed=0):
    """`<root>/<split>/<class>/<class>_<i>.JPEG`: random pixels with the class's colour channel
    at 255 (something to learn). `size` is an int (square) or a list of (width, height) cycled
    over the images, for sets of mixed sizes. Returns `root` as a Path."""
    rng = np.random.default_rng(seed)
    sizes = [(size, size)] if isinstance(size, int) else list(size)
    for split in splits:
        count = train_per_class if split == "train" else val_per_class
        for c, name in enumerate(classes):
            folder = Path(root) / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                width, height = sizes[i % len(sizes)]
                pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                pixels[..., c % 3] = 255
                Image.fromarray(pixels).save(folder / f"{name}_{i}.JPEG", quality=90)
    return Path(root)
