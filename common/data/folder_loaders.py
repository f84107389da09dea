"""The loaders of `--dataset folder` (common/data/loaders.py's factory signature): the files of
common/data/folder_data.py, decoded into memory or streamed from disk.

A set that fits the memory budget (MEMORY_FRACTION of the available RAM, and of the GPU's
memory on CUDA; MEMORY_BUDGET overrides it), counted as N * 3 * H * W bytes, is decoded once
and lives on the device as uint8, as CIFAR does (common/data/device_loader.py). A larger one
streams from disk through worker processes (common/data/imagenet_loader.py's ImageNetLoader over
common/data/imagenet_data.py's per-image seeded Augmented dataset) with the same augmentation
(resize, padded random crop, flip, normalisation, cutout), its mean and std measured on the
first STATS_SAMPLE training images (without --image_size their size is checked there, and any
other image is resized to it); a corrupt file is found only when it is read. One log line
says which, and results.json records what was read under "data".
"""
import functools
import os
import time
from dataclasses import dataclass

import torch

from common.data.datasets import search_split
from common.device import MEMORY_FORMATS
from common.distributed import ONE_PROCESS, global_to_local_batch
from common.data.folder_data import (TEST_PORTION, FolderSplits, channel_stats, crop_padding, imagesets, open_image,
                                read_images, scan, stored_size)
from common.data.imagenet_data import Augmented
from common.data.imagenet_loader import ImageNetLoader
from common.data.memory_loaders import Loaders, imageset_search_loaders, imageset_training_loaders

MEMORY_FRACTION = 0.25  # of available RAM (and GPU memory): the loaders copy parts of the set while they are built
MEMORY_BUDGET = None  # bytes; when set, the budget (tests lower it)
STREAM_WORKERS = 4  # worker processes per streaming loader (at most the CPU count)
STATS_SAMPLE = 5000  # training images the streaming mean and std are measured on


def available_memory() -> int:
    """Bytes of RAM available (Linux's MemAvailable; the physical memory elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_budget(device) -> int:
    if MEMORY_BUDGET is not None:
        return int(MEMORY_BUDGET)
    budget = MEMORY_FRACTION * available_memory()
    device = torch.device(device)
    if device.type == "cuda":
        budget = min(budget, MEMORY_FRACTION * torch.cuda.get_device_properties(device).total_memory)
    return int(budget)


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n:,}"


@dataclass
class Plan:
    """How a run reads the folder: its files, their size (width, height), and the decoded sets
    when they fit the memory budget (None: streamed); `line` is the log line that says which."""
    splits: FolderSplits
    train: list
    test: list
    size: tuple
    line: str
    sets: tuple = None

    def record(self, mean, std, test=True) -> dict:
        """results.json's "data": what the run read."""
        splits = self.splits
        data = {"folder": str(splits.root.resolve()), "classes": list(splits.classes),
                "num_classes": len(splits.classes), "image_size": list(self.size), "train_images": len(self.train)}
        if test:
            data.update(test_images=len(self.test), test_split=splits.test_split)
        return {**data, "in_memory": self.sets is not None, "mean": list(mean), "std": list(std)}


def plan(args, device, test: bool) -> Plan:
    """Scan `--data`, then decode it into memory when it fits the budget (see the module doc)."""
    image_size = getattr(args, "image_size", None)
    splits = scan(args.data, getattr(args, "test_portion", TEST_PORTION))
    train = splits.train[:args.data_limit] if args.data_limit else splits.train
    test_files = splits.test if test else []
    w, h = stored_size(train, image_size)
    need, budget = (len(train) + len(test_files)) * 3 * w * h, memory_budget(device)
    what = f"folder data {splits.root}: {len(splits.classes)} classes, {_count(len(train) + len(test_files))} images"
    if need > budget:
        workers = min(STREAM_WORKERS, os.cpu_count() or 1)
        return Plan(splits, train, test_files, (w, h), f"{what} of {w}x{h} need {_gb(need)}, more than the "
                    f"{_gb(budget)} budget: streaming from disk with {workers} workers")
    start = time.perf_counter()
    sets = imagesets(splits, train, test_files, image_size)
    return Plan(splits, train, test_files, (w, h), f"{what} of {w}x{h} in memory ({_gb(need)}, decoded in "
                f"{time.perf_counter() - start:.1f} s)", sets)


class Cutout:
    """DARTS Cutout on a normalised CHW tensor, as common/data/device_loader.py draws it; with
    `prob` < 1 an image is cut out with that chance (--cutout_prob)."""

    def __init__(self, length, prob=1.0):
        self.length, self.prob = int(length), float(prob)

    def __call__(self, x):
        h, w, half = x.shape[1], x.shape[2], self.length // 2
        if self.prob < 1.0 and float(torch.rand(())) >= self.prob:
            return x
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        x[:, max(0, cy - half):cy + half, max(0, cx - half):cx + half] = 0
        return x


@dataclass
class Files:
    """What common.data.imagenet_data.Augmented reads: (path, label) samples and a path -> image loader."""
    samples: list
    loader: object

    def __len__(self):
        return len(self.samples)


def streams(args, device, dist, found: Plan):
    """(make(samples, augment, **loader kwargs) -> ImageNetLoader, mean, std, per-rank batch,
    ranks) of a streamed set: each image resized to the plan's size, then as DeviceLoader
    augments (padded random crop, flip, normalisation, cutout)."""
    from torchvision import transforms as T  # lazy: a slow import

    mean, std = channel_stats(read_images(found.train[:STATS_SAMPLE], getattr(args, "image_size", None)))
    (w, h), cutout = found.size, args.cutout_length if args.cutout else 0
    plain = [T.ToTensor(), T.Normalize(mean, std)]
    augmented = T.Compose([T.RandomCrop((h, w), padding=crop_padding(w)), T.RandomHorizontalFlip(),
                           *plain, *([Cutout(cutout, args.cutout_prob)] if cutout else [])])
    batch, ranks, rank = args.batch_size, 1, 0
    if dist.distributed:
        batch, ranks, rank = global_to_local_batch(args.batch_size, dist), dist.world_size, dist.rank
    shared = dict(batch_size=batch, device=device, workers=min(STREAM_WORKERS, os.cpu_count() or 1),
                  num_replicas=ranks, rank=rank, memory_format=MEMORY_FORMATS[args.memory_format])
    files = functools.partial(Files, loader=functools.partial(open_image, size=(w, h)))

    def make(samples, augment, **kwargs):
        return ImageNetLoader(Augmented(files(samples), augmented if augment else T.Compose(plain)), **kwargs, **shared)
    return make, mean, std, batch, ranks


def folder_search_loaders(args, device, dist=ONE_PROCESS):
    """common/data/loaders.py's search loaders for `--dataset folder`: the training files split by
    `--train_portion` (weights, architecture), in memory or streamed (see the module doc)."""
    found = plan(args, device, test=False)
    if found.sets is not None:
        data = found.record(found.sets[0].mean, found.sets[0].std, test=False)
        return imageset_search_loaders(found.sets[0], args, device, dist)._replace(data=data, notes=(found.line,))
    make, mean, std, batch, ranks = streams(args, device, dist, found)
    weight_half, arch_half = search_split(len(found.train), args.train_portion)
    weights, arch = [found.train[i] for i in weight_half], [found.train[i] for i in arch_half]
    train = make(weights, True, shuffle=True, seed=args.seed)
    arch_loader = make(arch, True, shuffle=True, seed=args.seed + 1, drop_last=-(-len(arch) // ranks) >= batch)
    evaluation = make(arch, False, shuffle=False, seed=args.seed + 2)
    return Loaders(len(found.splits.classes), train, evaluation, arch_loader, data=found.record(mean, std, test=False),
                   notes=(found.line,))


def folder_training_loaders(args, device, dist=ONE_PROCESS):
    """common/data/loaders.py's training loaders for `--dataset folder`: the training files (augmented)
    and the test split (DIR/val, or the held-out part), in memory or streamed."""
    found = plan(args, device, test=True)
    if found.sets is not None:
        data = found.record(found.sets[0].mean, found.sets[0].std)
        return imageset_training_loaders(*found.sets, args, device, dist)._replace(data=data, notes=(found.line,))
    make, mean, std, batch, ranks = streams(args, device, dist, found)
    # a last training batch of one image would break BatchNorm (the auxiliary head pools to 1x1)
    drop_last = -(-len(found.train) // ranks) % batch == 1
    train = make(found.train, True, shuffle=True, seed=args.seed, drop_last=drop_last)
    test = make(found.test, False, shuffle=False, seed=args.seed + 1)
    return Loaders(len(found.splits.classes), train, test, data=found.record(mean, std), notes=(found.line,))
