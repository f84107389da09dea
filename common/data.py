"""Datasets and the GPU-resident loader.

Every dataset is read into one uint8 tensor (N, 3, H, W) plus int64 labels; the
`DeviceLoader` moves it to the accelerator once and builds every batch there
(crop, flip, cutout, normalise as batched tensor ops), so training never waits on
worker processes or per-batch host-to-device copies.

Readers read the original file formats directly (CIFAR pickles, SVHN .mat,
NAS-Bench-201's ImageNet16 pickles) without checksum checks, so trimmed samples of
the real files load too. Anything the user can fix raises a one-line `UserError`.
"""
from __future__ import annotations

import math
import pickle
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from common.errors import UserError

DOWNLOAD_TIMEOUT_S = 20  # a closed network must fail fast, not hang for minutes

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
SVHN_MEAN = (0.4377, 0.4438, 0.4728)
SVHN_STD = (0.1980, 0.2010, 0.1970)
IMAGENET16_MEAN = (122.68 / 255, 116.66 / 255, 104.01 / 255)
IMAGENET16_STD = (63.22 / 255, 61.26 / 255, 65.09 / 255)
# Measured on make_synthetic(20000, seed=0) and rounded; fixed so train and test
# sets (different seeds) share the same constants.
SYNTHETIC_MEAN = (0.3457, 0.3134, 0.3181)
SYNTHETIC_STD = (0.2932, 0.2791, 0.2886)

IMAGENET16_CLASSES = 120
IMAGENET16_DIRS = ("imagenet16", "ImageNet16")  # SPEC name first; NAS-Bench-201's own spelling too


@dataclass
class ImageSet:
    """A whole dataset in memory: uint8 images (N, 3, H, W) and int64 labels (N,) on CPU."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pad: int  # random-crop padding used for training augmentation

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def subset(imageset: ImageSet, indices) -> ImageSet:
    """The images at `indices` (any int sequence or tensor), same constants."""
    idx = torch.as_tensor(indices, dtype=torch.long)
    return ImageSet(imageset.images[idx], imageset.labels[idx], imageset.num_classes,
                    imageset.mean, imageset.std, imageset.pad)


def _one_line(text) -> str:
    """Collapse an exception message to one line (UserError messages must be one line)."""
    return " ".join(str(text).split())


# ---------------------------------------------------------------- pickles / CIFAR


def _load_pickle(path: Path, what: str, fix: str) -> dict:
    """Unpickle a batch file; keys become str whether pickled by Python 2 (bytes) or 3."""
    try:
        with open(path, "rb") as f:
            # latin1 decodes Python 2 str objects and numpy's pickled buffers losslessly
            obj = pickle.load(f, encoding="latin1")
    except Exception as err:  # any failure here means a truncated or foreign file
        raise UserError(f"{what} file {path} is unreadable or corrupt "
                        f"({type(err).__name__}: {_one_line(err)[:120]}): {fix}") from None
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
                        f"({_one_line(err)[:120]}): {fix}") from None
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
        return f"{type(err).__name__}: {_one_line(err)[:120]}"
    finally:
        socket.setdefaulttimeout(old)


def _missing(folder: Path, files: Sequence[str]) -> list[str]:
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
                        f"({type(err).__name__}: {_one_line(err)[:120]}): {fix}") from None
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


# ---------------------------------------------------------------- synthetic


# Difficulty, tuned so a tiny conv net reaches ~60 % after one epoch on 5000 images
# and ~85-90 % after a few (neighbouring orientations overlap, colours are noisy):
# enough signal for a CPU demo, not so easy that every architecture saturates at once.
_ANGLE_JITTER = 1.5  # orientation jitter, in units of the step between class orientations
_COLOUR_JITTER = 0.2  # std of the per-image colour shift
# Five base colours shared by two classes each: colour alone gives at most ~50 %,
# the rest needs the stripe texture (orientation and frequency).
_PALETTE = torch.tensor([[0.85, 0.30, 0.30], [0.30, 0.80, 0.35], [0.30, 0.40, 0.90],
                         [0.85, 0.80, 0.30], [0.70, 0.35, 0.85]])


def make_synthetic(num_images: int, seed: int, num_classes: int = 10, size: int = 32,
                   noise: float = 0.25) -> ImageSet:
    """A learnable CIFAR-shaped set: class = stripe orientation/frequency + colour.

    Per image: random phase, orientation jitter, brightness, colour jitter and
    pixel noise, so that the task is not trivial. Deterministic for a seed (CPU
    generator, vectorised: ~0.2 s for 5000 images on 2 CPU cores).
    """
    if num_images < 1 or num_classes < 2:
        raise UserError(f"synthetic data needs at least 1 image and 2 classes "
                        f"(got {num_images} and {num_classes})")
    g = torch.Generator().manual_seed(int(seed))
    n, f32 = num_images, torch.float32  # float32 and in-place ops keep it fast
    # balanced labels in a seed-dependent order
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    # class texture: orientation spread over 180 degrees (jitter wider than the step, so
    # neighbouring classes overlap), three stripe frequencies
    step = math.pi / num_classes
    angle = labels.to(f32) * step + (torch.rand(n, generator=g) - 0.5) * (step * _ANGLE_JITTER)
    freq = (2.0 + 1.5 * (labels % 3).to(f32)) * (2 * math.pi / size)  # radians per pixel
    phase = torch.rand(n, generator=g) * (2 * math.pi)
    coord = torch.arange(size, dtype=f32)
    wx = (torch.cos(angle) * freq)[:, None, None]
    wy = (torch.sin(angle) * freq)[:, None, None]
    stripes = torch.sin(wx * coord[None, None, :] + wy * coord[None, :, None] + phase[:, None, None])
    # class colour with per-image jitter and brightness
    colour = _PALETTE[labels % len(_PALETTE)] + _COLOUR_JITTER * torch.randn(n, 3, generator=g)
    colour *= 0.75 + 0.45 * torch.rand(n, 1, generator=g)
    img = torch.randn(n, 3, size, size, generator=g).mul_(noise)
    img.add_(colour[:, :, None, None] * stripes.mul_(0.35).add_(0.55)[:, None])
    images = img.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    return ImageSet(images, labels.long(), num_classes, SYNTHETIC_MEAN, SYNTHETIC_STD, pad=4)


SYNTHETIC_TRAIN = (5000, 0)  # (images, seed)
SYNTHETIC_TEST = (1000, 1)


def _read_synthetic(root: Path, train: bool, download: bool) -> ImageSet:
    """No files: the root is ignored."""
    return make_synthetic(*(SYNTHETIC_TRAIN if train else SYNTHETIC_TEST))


# ---------------------------------------------------------------- registry

DATASETS: dict[str, Callable[[Path, bool, bool], ImageSet]] = {
    "cifar10": _cifar_reader(10),
    "cifar100": _cifar_reader(100),
    "svhn": _read_svhn,
    "imagenet16-120": _read_imagenet16,
    "synthetic": _read_synthetic,
}


def load_dataset(name: str, root, train: bool = True, download: bool = True) -> ImageSet:
    """Read the train (or test) split of dataset `name` from folder `root`."""
    reader = DATASETS.get(str(name).lower())
    if reader is None:
        raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return reader(Path(root).expanduser(), train, download)


def search_split(num_images: int, train_portion: float) -> tuple[list[int], list[int]]:
    """DARTS/DrNAS split of the training set: first part for weights, rest for the architecture."""
    split = int(math.floor(train_portion * num_images))
    if not 0 < split < num_images:
        raise UserError(f"train_portion {train_portion} splits {num_images} images into "
                        f"{split} and {num_images - split}: use a value that leaves "
                        f"images on both sides (e.g. 0.5)")
    indices = list(range(num_images))
    return indices[:split], indices[split:num_images]


# ---------------------------------------------------------------- device loader


class DeviceLoader:
    """Batches made on `device` from a uint8 dataset moved there once.

    Per epoch: a permutation from the loader's own generator; per batch: random
    crop with zero padding, horizontal flip, cutout (after normalisation, as DARTS
    does), all batched. Nothing synchronises with the host, so the GPU never waits.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
                 mean, std, device, shuffle: bool = True, drop_last: bool = False,
                 pad: int = 0, flip: bool = False, cutout: int = 0, seed: int = 0,
                 memory_format=torch.contiguous_format):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        n = int(images.shape[0])
        if n == 0 or (drop_last and n < batch_size):
            raise UserError(f"{n} images cannot fill one batch of {batch_size}: "
                            f"use more data (e.g. a larger --data_limit) or a smaller batch size")
        self.device = torch.device(device)
        self.images = images.to(self.device)  # the one host-to-device copy
        self.labels = labels.to(self.device, torch.long)
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), shuffle, drop_last
        self.pad, self.flip, self.cutout = int(pad), bool(flip), int(cutout)
        self.memory_format = memory_format  # of the batches: channels_last where the model is
        c = images.shape[1]
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))
        h, w = images.shape[2], images.shape[3]
        self._rows = torch.arange(h, device=self.device)
        self._cols = torch.arange(w, device=self.device)
        self._chans = torch.arange(c, device=self.device)

    @classmethod
    def from_imageset(cls, imageset: ImageSet, indices=None, *, train: bool, batch_size: int,
                      device, seed: int, cutout: int = 0, drop_last: bool = False,
                      memory_format=torch.contiguous_format) -> "DeviceLoader":
        """Training loader (shuffle, crop, flip) or evaluation loader (none) of a set or a subset."""
        if indices is not None:
            imageset = subset(imageset, indices)  # select on CPU: only the subset travels
        return cls(imageset.images, imageset.labels, batch_size=batch_size, mean=imageset.mean,
                   std=imageset.std, device=device, shuffle=train, drop_last=drop_last,
                   pad=imageset.pad if train else 0, flip=train, cutout=cutout, seed=seed,
                   memory_format=memory_format)

    @property
    def num_images(self) -> int:
        return int(self.labels.shape[0])

    def __len__(self) -> int:
        n, b = self.num_images, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, b = self.num_images, self.batch_size
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * b:(i + 1) * b]
            yield self._make_batch(idx), self.labels[idx]

    def _rand(self, high: int, size: int) -> torch.Tensor:
        return torch.randint(0, high, (size,), generator=self.generator, device=self.device)

    def _make_batch(self, idx: torch.Tensor) -> torch.Tensor:
        bsz = idx.shape[0]
        h, w = self.images.shape[2], self.images.shape[3]
        if self.pad or self.flip:
            x = self._crop_flip(idx, bsz, h, w)
        else:
            x = self.images[idx]
        # same op order as ToTensor + Normalize, so values match torchvision's
        x = x.float().div_(255).sub_(self.mean).div_(self.std)
        if self.cutout > 0:
            x = self._apply_cutout(x, bsz, h, w)
        return x.contiguous(memory_format=self.memory_format)

    def _crop_flip(self, idx: torch.Tensor, bsz: int, h: int, w: int) -> torch.Tensor:
        """One gather does both: source pixel of output (r, c) is (oy+r-pad, ox+c'-pad)."""
        p = self.pad
        oy = self._rand(2 * p + 1, bsz) - p  # torchvision: offset in [0, 2*pad] of the padded image
        ox = self._rand(2 * p + 1, bsz) - p
        rows = oy[:, None] + self._rows[None, :]  # (B, H)
        cols = self._cols[None, :].expand(bsz, w)
        if self.flip:  # flip of the crop: output column c reads crop column W-1-c
            flipped = self._rand(2, bsz).bool()
            cols = torch.where(flipped[:, None], (w - 1) - cols, cols)
        cols = ox[:, None] + cols  # (B, W)
        x = self.images[idx[:, None, None, None], self._chans[None, :, None, None],
                        rows.clamp(0, h - 1)[:, None, :, None], cols.clamp(0, w - 1)[:, None, None, :]]
        # pixels read from outside the image are the zero padding (uint8 0, as RandomCrop pads)
        inside = (((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :])
        return x * inside[:, None].to(x.dtype)

    def _apply_cutout(self, x: torch.Tensor, bsz: int, h: int, w: int) -> torch.Tensor:
        """DARTS Cutout: zero [cy-L//2, cy+L//2) x [cx-L//2, cx+L//2), clipped at the border."""
        half = self.cutout // 2
        cy = self._rand(h, bsz)[:, None]
        cx = self._rand(w, bsz)[:, None]
        in_rows = (self._rows[None, :] >= cy - half) & (self._rows[None, :] < cy + half)
        in_cols = (self._cols[None, :] >= cx - half) & (self._cols[None, :] < cx + half)
        mask = in_rows[:, :, None] & in_cols[:, None, :]
        return x.masked_fill_(mask[:, None], 0.0)

    def state_dict(self) -> dict:
        """The generator state (CPU uint8): restoring it replays the next epoch exactly."""
        return {"generator": self.generator.get_state().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())


def cycle(loader: DeviceLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches forever; each pass over `loader` is a new epoch (new permutation)."""
    if len(loader) == 0:
        raise UserError("the loader yields no batches: use more data or a smaller batch size")
    while True:
        yield from loader
