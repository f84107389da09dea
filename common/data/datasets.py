"""The image datasets a search or a training reads, and their registry.

Every dataset is read into one uint8 tensor (N, 3, H, W) plus int64 labels (an `ImageSet`),
which common/data/device_loader.py moves to the accelerator once. Readers read the original file
formats directly (CIFAR pickles, SVHN .mat, NAS-Bench-201's ImageNet16 pickles) without
checksum checks, so trimmed samples of the real files load too; the pickles through an
allow-list that admits plain data only, so a crafted batch file cannot run code. Anything the
user can fix raises a one-line `UserError`.
"""
from __future__ import annotations

import math
import socket
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from common.data import safe_pickle
from common.errors import UserError, one_line, regular_file
from common.data.imageset import ImageSet
from common.data.synthetic import SYNTHETIC_TEST, SYNTHETIC_TRAIN, make_synthetic

DOWNLOAD_TIMEOUT_S = 20  # a closed network must fail fast, not hang for minutes

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
SVHN_MEAN = (0.4377, 0.4438, 0.4728)
SVHN_STD = (0.1980, 0.2010, 0.1970)
IMAGENET16_MEAN = (122.68 / 255, 116.66 / 255, 104.01 / 255)
IMAGENET16_STD = (63.22 / 255, 61.26 / 255, 65.09 / 255)

IMAGENET16_CLASSES = 120
IMAGENET16_DIRS = ("imagenet16", "ImageNet16")  # this project's name first; NAS-Bench-201's own spelling too


# ---------------------------------------------------------------- pickles / CIFAR


def _load_pickle(path: Path, what: str, fix: str) -> dict:
    """Unpickle a batch file through the allow-list (common/data/safe_pickle.py: plain data only, no
    code); keys become str whether pickled by Python 2 (bytes) or 3."""
    regular_file(path, f"{what} file")  # a named pipe would block the read for ever
    try:
        with open(path, "rb") as f:
            # latin1 decodes Python 2 str objects and numpy's pickled buffers losslessly
            obj = safe_pickle.load(f, encoding="latin1")
    except safe_pickle.UnsafeGlobal as err:
        raise safe_pickle.refusal(path, what, err) from None
    except Exception as err:  # any failure here means a truncated or foreign file
        raise UserError(f"{what} file {path} is unreadable or corrupt "
                        f"({type(err).__name__}: {one_line(err)[:120]}): {fix}") from None
    if not isinstance(obj, dict):
        raise UserError(f"{what} file {path} does not hold a dict of arrays: {fix}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _batch_to_tensors(d: dict, path: Path, label_key: str, side: int, what: str, fix: str):
    """Turn a pickle dict's `data` (N x 3*side*side, R/G/B planes) and labels into tensors."""
    if "data" not in d or label_key not in d:
        raise UserError(f"{what} file {path} lacks the keys 'data' and '{label_key}': {fix}")
    try:
        data = torch.as_tensor(np.asarray(d["data"], dtype="uint8"))
        labels = torch.as_tensor(np.asarray(d[label_key], dtype="int64"))
        images = data.reshape(-1, 3, side, side)
    except (ValueError, TypeError, RuntimeError) as err:
        raise UserError(f"{what} file {path} has data of an unexpected shape "
                        f"({one_line(err)[:120]}): {fix}") from None
    if images.shape[0] != labels.shape[0]:
        raise UserError(f"{what} file {path} has {images.shape[0]} images but "
                        f"{labels.shape[0]} labels: {fix}")
    return images, labels


def _try_download(fetch: Callable[[], object]) -> str | None:
    """Run a torchvision download with a socket timeout; return None or why it failed."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        fetch()
        return None
    except Exception as err:  # no network, HTTP error, bad archive: all mean "not fetched"
        return f"{type(err).__name__}: {one_line(err)[:120]}"
    finally:
        socket.setdefaulttimeout(old)


def _missing(folder: Path, files: Sequence[str]) -> list[str]:
    """The files that are not there; one that is there but is no regular file (a named pipe,
    which a read would wait on for ever) is refused in one line."""
    for name in files:
        if (folder / name).exists():
            regular_file(folder / name, "dataset file")
    return [f for f in files if not (folder / f).is_file()]


def _cifar_reader(variant: int) -> Callable[[Path, bool, bool], ImageSet]:
    """Build the reader for CIFAR-10 (variant 10) or CIFAR-100 (variant 100)."""
    if variant == 10:
        what, sub, archive = "CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz"
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        test_files, label_key = ["test_batch"], "labels"
        mean, std = CIFAR10_MEAN, CIFAR10_STD
    else:
        what, sub, archive = "CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz"
        train_files, test_files, label_key = ["train"], ["test"], "fine_labels"
        mean, std = CIFAR100_MEAN, CIFAR100_STD

    def read(root: Path, train: bool, download: bool) -> ImageSet:
        folder = root / sub
        files = train_files if train else test_files
        fix = f"put {sub}/ (from {archive}) in {root}"
        if _missing(folder, files) and download:
            import torchvision.datasets as tvd  # lazy: torchvision import is slow

            cls = tvd.CIFAR10 if variant == 10 else tvd.CIFAR100
            why = _try_download(lambda: cls(str(root), train=train, download=True))
        else:
            why = None
        missing = _missing(folder, files)
        if missing:
            how = "or allow network access for the download" if download else "(automatic download is off)"
            tail = f" (download failed: {why})" if why else ""
            raise UserError(f"{what} not found: no {', '.join(missing)} in {folder}; "
                            f"{fix} {how}{tail}")
        parts = [_batch_to_tensors(_load_pickle(folder / f, what, fix), folder / f,
                                   label_key, 32, what, fix) for f in files]
        images = torch.cat([p[0] for p in parts])
        labels = torch.cat([p[1] for p in parts])
        if labels.numel() and (labels.min() < 0 or labels.max() >= variant):
            raise UserError(f"{what} labels in {folder} fall outside 0..{variant - 1}: {fix}")
        return ImageSet(images, labels, variant, mean, std, pad=4)

    return read


# ---------------------------------------------------------------- SVHN


def _read_svhn(root: Path, train: bool, download: bool) -> ImageSet:
    """torchvision's SVHN layout: <root>/{train,test}_32x32.mat with X (H, W, C, N), y (N, 1)."""
    name = "train_32x32.mat" if train else "test_32x32.mat"
    path = root / name
    fix = f"put {name} (from http://ufldl.stanford.edu/housenumbers/) in {root}"
    why = None
    if not path.is_file() and download:
        import torchvision.datasets as tvd

        split = "train" if train else "test"
        why = _try_download(lambda: tvd.SVHN(str(root), split=split, download=True))
    if not path.is_file():
        how = "or allow network access for the download" if download else "(automatic download is off)"
        tail = f" (download failed: {why})" if why else ""
        raise UserError(f"SVHN not found: no {name} in {root}; {fix} {how}{tail}")
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
        x, y = mat["X"], mat["y"]
    except Exception as err:
        raise UserError(f"SVHN file {path} is unreadable or corrupt "
                        f"({type(err).__name__}: {one_line(err)[:120]}): {fix}") from None
    if x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != y.size:
        raise UserError(f"SVHN file {path} has X of shape {x.shape} and {y.size} labels, "
                        f"expected (32, 32, 3, N) and N: {fix}")
    images = torch.from_numpy(x.astype("uint8")).permute(3, 2, 0, 1).contiguous()
    labels = torch.from_numpy(y.reshape(-1).astype("int64"))
    labels = torch.where(labels == 10, torch.zeros_like(labels), labels)  # '0' is stored as 10
    return ImageSet(images, labels, 10, SVHN_MEAN, SVHN_STD, pad=4)


# ---------------------------------------------------------------- ImageNet16-120


def _read_imagenet16(root: Path, train: bool, download: bool) -> ImageSet:
    """NAS-Bench-201's 16x16 ImageNet: keep classes 1..120, shifted to 0..119."""
    files = [f"train_data_batch_{i}" for i in range(1, 11)] if train else ["val_data"]
    folder = next((root / d for d in IMAGENET16_DIRS if (root / d).is_dir()),
                  root / IMAGENET16_DIRS[0])
    fix = (f"put train_data_batch_1..train_data_batch_10 and val_data (NAS-Bench-201's "
           f"ImageNet16 download; it cannot be downloaded automatically) in {folder}")
    missing = _missing(folder, files)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise UserError(f"ImageNet16-120 not found: no {shown} in {folder}; {fix}")
    images, labels = [], []
    for f in files:  # filter file by file: the unfiltered set is ~1 GB
        x, y = _batch_to_tensors(_load_pickle(folder / f, "ImageNet16", fix), folder / f,
                                 "labels", 16, "ImageNet16", fix)
        keep = (y >= 1) & (y <= IMAGENET16_CLASSES)
        images.append(x[keep])
        labels.append(y[keep] - 1)
    return ImageSet(torch.cat(images), torch.cat(labels), IMAGENET16_CLASSES,
                    IMAGENET16_MEAN, IMAGENET16_STD, pad=2)


# ---------------------------------------------------------------- registry


def _read_synthetic(root: Path, train: bool, download: bool) -> ImageSet:
    """No files: the root is ignored."""
    return make_synthetic(*(SYNTHETIC_TRAIN if train else SYNTHETIC_TEST))


def _read_folder(root: Path, train: bool, download: bool, **options) -> ImageSet:
    """Any class-folder dataset; `root` is the dataset folder itself (common/data/folder_data.py,
    whose keywords `image_size` and `test_portion` it takes)."""
    from common.data.folder_data import read_folder  # lazy: Pillow

    return read_folder(root, train, download, **options)


DATASETS: dict[str, Callable[[Path, bool, bool], ImageSet]] = {
    "cifar10": _cifar_reader(10),
    "cifar100": _cifar_reader(100),
    "svhn": _read_svhn,
    "imagenet16-120": _read_imagenet16,
    "synthetic": _read_synthetic,
    "folder": _read_folder,
}


def load_dataset(name: str, root, train: bool = True, download: bool = True, **options) -> ImageSet:
    """Read the train (or test) split of dataset `name` from folder `root`; `options` are the
    reader's own keywords (those of "folder"; the other readers take none)."""
    reader = DATASETS.get(str(name).lower())
    if reader is None:
        raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return reader(Path(root).expanduser(), train, download, **options)


def search_split(num_images: int, train_portion: float) -> tuple[list[int], list[int]]:
    """DARTS/DrNAS split of the training set: first part for weights, rest for the architecture."""
    split = int(math.floor(train_portion * num_images))
    if not 0 < split < num_images:
        raise UserError(f"train_portion {train_portion} splits {num_images} images into "
                        f"{split} and {num_images - split}: use a value that leaves "
                        f"images on both sides (e.g. 0.5)")
    indices = list(range(num_images))
    return indices[:split], indices[split:num_images]
