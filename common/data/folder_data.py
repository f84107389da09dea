"""`--dataset folder --data DIR`: any class-folder image dataset, scanned and decoded.

    DIR/<class>/<images>                                      one folder: a test part is held out
    DIR/train/<class>/<images> [+ DIR/val/<class>/<images>]   (a folder named train/ means this layout)

Class names are the sorted class folder names (sub-folders of a class folder belong to it);
DIR/val must have the same ones. A file counts as an image when Pillow can open its
extension (others are skipped, as are hidden files); an image that fails to decode is an
error naming it. Images are decoded with Pillow, converted to RGB and, with `--image_size N`,
resized to N x N (bilinear, antialiased); without it all images must share one size.

Splits: the training images come in a fixed shuffled order (seed 0), so that `--data_limit`
and the search's `--train_portion` halves hold every class. The test split of train.py is
DIR/val; without it, `--test_portion` of every class (rounded, at most all but one image,
drawn with a fixed seed) is held out of the training folder as the test split, and a search
never sees those images either. Mean and std per channel are those of the training images
the run reads (after resizing); the random-crop padding is image_size / 8 (4 at 32).
The loaders of a run (in memory or streamed from disk) are in common/data/folder_loaders.py.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.errors import UserError, one_line
from common.data.imageset import ImageSet

TEST_PORTION = 0.2  # --test_portion's default
SPLIT_SEED = 0  # the held-out test images and the training order
LAYOUT = "DIR/<class>/<images>, or DIR/train/<class>/<images> and optionally DIR/val/<class>/<images>"


@dataclass
class FolderSplits:
    root: Path
    classes: list  # the class folder names, sorted: label i is classes[i]
    train: list  # (path, label), in the fixed shuffled order
    test: list  # (path, label), in class order
    test_split: str  # "val" or "held out"


@functools.lru_cache(maxsize=1)
def image_extensions() -> frozenset:
    """The file extensions Pillow can open (lower case, with the dot)."""
    from PIL import Image
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def _image_files(folder: Path) -> list:
    """The image files under `folder`. Linked files may lie anywhere (a sampled dataset of links);
    a linked folder must stay inside `folder` and not lead back into a folder already read: one
    that leaves it or loops is refused (its images would be counted twice or in another class)."""
    extensions, found, top = image_extensions(), [], folder.resolve()
    visited = set()
    for parent, dirs, files in os.walk(folder, followlinks=True):
        visited.add(Path(parent).resolve())
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in dirs:
            target = (Path(parent) / name).resolve()
            if target in visited or (target != top and top not in target.parents):
                raise UserError(f"{Path(parent) / name} links to {target}, "
                                f"{'a folder already read (a loop)' if target in visited else 'outside ' + str(folder)}: "
                                "remove the link, or copy what it holds into the class folder")
        found += [Path(parent) / f for f in sorted(files)
                  if not f.startswith(".") and Path(f).suffix.lower() in extensions]
    return found


def class_samples(folder: Path) -> tuple[list, list]:
    """(sorted class names, [(path, label)] in class order) of one split folder."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        loose = "holds images but no class folders" if _image_files(folder) else "holds no images"
        raise UserError(f"folder dataset {folder} {loose}: put each class's images in a folder of its own ({LAYOUT})")
    if len(classes) == 1:
        raise UserError(f"folder dataset {folder} has one class folder ({classes[0]}): "
                        f"a classifier needs at least 2 class folders")
    samples = []
    for label, name in enumerate(classes):
        files = _image_files(folder / name)
        if not files:
            raise UserError(f"class folder {folder / name} holds no images (no file with an extension Pillow "
                            f"reads, e.g. .png or .jpg): add images or remove the folder")
        samples += [(str(path), label) for path in files]
    return classes, samples


def hold_out(samples: list, num_classes: int, portion: float) -> tuple[list, list]:
    """(train, test): round(portion * n) images of every class (at most n - 1), drawn with SPLIT_SEED."""
    g = torch.Generator().manual_seed(SPLIT_SEED)
    by_class = [[] for _ in range(num_classes)]
    for sample in samples:
        by_class[sample[1]].append(sample)
    train, test = [], []
    for items in by_class:
        order = torch.randperm(len(items), generator=g).tolist()
        n_test = min(len(items) - 1, round(portion * len(items)))
        test += [items[i] for i in sorted(order[:n_test])]
        train += [items[i] for i in order[n_test:]]
    return train, test


def scan(root, test_portion: float = TEST_PORTION) -> FolderSplits:
    """The classes and the files of each split of the dataset folder `root` (see the module doc)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"folder dataset {root} does not exist: pass --data DIR, the dataset folder ({LAYOUT})")
    pool = root / "train" if (root / "train").is_dir() else root
    classes, samples = class_samples(pool)
    if (root / "val").is_dir() and pool != root:
        val_classes, test = class_samples(root / "val")
        if val_classes != classes:
            only_val, only_train = sorted(set(val_classes) - set(classes)), sorted(set(classes) - set(val_classes))
            raise UserError(f"{root / 'val'} and {pool} have different class folders (only in val: "
                            f"{', '.join(only_val) or '-'}; only in train: {', '.join(only_train) or '-'}): "
                            f"both need the same class folders")
        train, test_split = samples, "val"
    else:
        train, test = hold_out(samples, len(classes), test_portion)
        test_split = "held out"
        if not test:
            raise UserError(f"--test_portion {test_portion} holds out no image of {pool} (every class keeps at "
                            f"least one training image): add images or raise --test_portion")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    return FolderSplits(root, classes, [train[i] for i in order], test, test_split)


# ---------------------------------------------------------------- decoding


def open_image(path, size=None):
    """The RGB Pillow image of `path`, resized (bilinear, antialiased) to `size`: N (N x N) or (width, height)."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            image = _eight_bit(image, path).convert("RGB")
    except UserError:
        raise
    except Exception as err:  # truncated, corrupt or foreign file, whatever Pillow raises
        detail = one_line(err)[:120]
        raise UserError(f"image {path} cannot be read ({type(err).__name__}: {detail}): "
                        f"remove or replace the file") from None
    size = (size, size) if isinstance(size, int) else size
    return image.resize(size, Image.BILINEAR) if size and image.size != tuple(size) else image


SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")  # Pillow's 16-bit grey modes


def _eight_bit(image, path):
    """A 16-bit grey image scaled to 8 bits (65535 -> 255; Pillow's convert would clip at 255);
    integer or float pixels of unknown range are refused."""
    from PIL import Image
    if image.mode in SIXTEEN_BIT or (image.mode == "I" and image.format == "PNG"):  # a 16-bit PNG
        pixels = np.asarray(image, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    if image.mode in ("I", "F"):
        raise UserError(f"image {path} has {'32-bit integer' if image.mode == 'I' else 'floating-point'} "
                        "pixels of no known range: save it with 8 or 16 bits per channel")
    return image


def stored_size(samples: list, image_size) -> tuple[int, int]:
    """(width, height) the images will have: image_size, or the first image's own (header only)."""
    if image_size:
        return image_size, image_size
    from PIL import Image
    try:
        with Image.open(samples[0][0]) as image:
            return image.size
    except Exception:
        return open_image(samples[0][0]).size  # the one-line error


def read_images(samples: list, image_size=None) -> torch.Tensor:
    """The uint8 (N, 3, H, W) images of `samples`; without `image_size` they must share one size."""
    images, first = None, None
    for i, (path, _) in enumerate(samples):
        image = open_image(path, image_size)
        if first is None:
            first = (path, image.size)
            images = torch.empty((len(samples), 3, image.size[1], image.size[0]), dtype=torch.uint8)
        elif image.size != first[1]:
            (w0, h0), (w1, h1) = first[1], image.size
            raise UserError(f"images have different sizes ({w0}x{h0} in file {first[0]}, {w1}x{h1} in file "
                            f"{path}): pass --image_size N (e.g. 32) to resize them all to N x N")
        images[i] = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    return images


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple, tuple]:
    """Per-channel mean and (population) std of uint8 images, on the 0..1 scale."""
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].double()
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return tuple((mean / 255).tolist()), tuple((std / 255).tolist())


def crop_padding(size: int) -> int:
    return max(1, round(size / 8))


def imagesets(splits: FolderSplits, train: list, test: list, image_size=None) -> tuple:
    """(training ImageSet, test ImageSet or None) of the files `train` and `test`, decoded once."""
    images = read_images(train + test, image_size)
    labels = torch.tensor([label for _, label in train + test], dtype=torch.long)
    mean, std = channel_stats(images[:len(train)])
    made = [ImageSet(images[a:b], labels[a:b], len(splits.classes), mean, std, crop_padding(images.shape[-1]))
            for a, b in ((0, len(train)), (len(train), len(train) + len(test)))]
    return made[0], (made[1] if test else None)


def read_folder(root, train: bool = True, download: bool = False, *, image_size=None,
                test_portion: float = TEST_PORTION) -> ImageSet:
    """The registry's reader (common.data.datasets.DATASETS["folder"]): one split, in memory."""
    splits = scan(root, test_portion)
    train_set, test_set = imagesets(splits, splits.train, [] if train else splits.test, image_size)
    return train_set if train else test_set
