"""The ImageNet loaders: batches of class-folder images arriving on the device, with the
contract of common.data.device_loader.DeviceLoader that the driver relies on (iterating yields
(x, y) on the device; `batch_size`, `__len__`, `state_dict()` / `load_state_dict()`).

Two backends for the search:
  "workers": DataLoader worker processes decode with PIL and run the torchvision transforms;
  "decode":  the workers only read the file bytes; the main process decodes each batch with one
             torchvision.io.decode_jpeg call on the device (nvJPEG on CUDA) and crops, flips and
             normalises there with tensor ops. At batch 512 one GPU outruns the CPU cores that
             decode for it; nvJPEG moves the decoding onto the GPU. Files that decode_jpeg cannot
             read (a few PNG and CMYK files in ImageNet) fall back to the CPU one by one.
"auto" picks "decode" on CUDA and "workers" elsewhere. Both draw the same crop boxes and flips.

The state is one generator: it draws each epoch's permutation and the epoch's augmentation
seed, so a resumed run replays the next epoch exactly.
"""
import logging
from typing import Iterator, Optional

import torch
from torch.utils.data import DataLoader, Sampler

from common.device import MEMORY_FORMATS
from common.distributed import ONE_PROCESS, global_to_local_batch
from common.errors import UserError
from common.data.imagenet_data import (MEAN, STD, Augmented, Encoded, RandomCropFlip, ResizeCenterCrop, collate_encoded,
                                  eval_transform, search_transform, spread, train_and_val_folders, train_transform)
from common.data.memory_loaders import Loaders

BACKENDS = ("auto", "workers", "decode")


class EpochSampler(Sampler):
    """Per epoch (per `iter`): a permutation (or the identity) and an augmentation seed, both
    drawn from the sampler's own seeded generator; yields (seed, index) pairs.

    `num_replicas`/`rank` shard each epoch's order for distributed training (padded by
    wrapping so that every rank has the same count, as DistributedSampler does)."""

    def __init__(self, n, *, shuffle, seed, num_replicas=1, rank=0):
        self.n, self.shuffle = int(n), bool(shuffle)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.generator = torch.Generator()
        self.generator.manual_seed(int(seed))
        self.items = None  # this pass's (seed, index) pairs
        self.resume = None  # (items, first item): a pass to continue

    def __len__(self):
        return -(-self.n // self.num_replicas)

    def __iter__(self):
        if self.resume is not None:
            self.items, start = self.resume
            self.resume = None
            return iter(self.items[start:])
        if self.shuffle:
            order = torch.randperm(self.n, generator=self.generator).tolist()
        else:
            order = list(range(self.n))
        epoch_seed = int(torch.randint(0, 2 ** 62, (1,), generator=self.generator))
        total = len(self) * self.num_replicas
        order = (order * (-(-total // self.n)))[:total][self.rank::self.num_replicas]
        self.items = [(epoch_seed, i) for i in order]  # drawn now, not lazily in a prefetch
        return iter(self.items)


class ImageNetLoader:
    """A DataLoader whose batches arrive on `device` (common.data.DeviceLoader's contract)."""

    def __init__(self, dataset, *, batch_size, device, shuffle, seed, workers=0, drop_last=False,
                 num_replicas=1, rank=0, memory_format=torch.contiguous_format, collate_fn=None):
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.dataset, self.batch_size, self.drop_last = dataset, int(batch_size), bool(drop_last)
        self.memory_format = memory_format
        self._current, self._resume_next = None, None  # the pass in progress; the batch to resume at
        self.sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed,
                                    num_replicas=num_replicas, rank=rank)
        if len(self) == 0:
            raise UserError(f"{len(dataset)} images cannot fill one batch of {batch_size}: "
                            f"use more data (e.g. a larger --data_limit) or a smaller batch size")
        # the DataLoader's own generator only seeds worker processes (augmentation does not use
        # it): a private one keeps the global RNG untouched
        base = torch.Generator()
        base.manual_seed(int(seed))
        self.loader = DataLoader(dataset, batch_size=self.batch_size, sampler=self.sampler,
                                 num_workers=int(workers), pin_memory=self.device.type == "cuda",
                                 drop_last=self.drop_last, persistent_workers=workers > 0,
                                 generator=base, collate_fn=collate_fn)

    @property
    def num_images(self) -> int:
        return len(self.sampler)

    def __len__(self) -> int:
        n, b = self.num_images, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        start = self._resume_next or 0
        self._resume_next = None
        batches = iter(self.loader)  # the sampler draws the pass (or continues one) here
        current = self._current = {"items": self.sampler.items, "next": start}
        for batch in batches:
            current["next"] += 1
            yield self.to_device(batch)
        if self._current is current:
            self._current = None

    def first_batches(self, count):
        """The first `count` batches in file order, for a diagnostic: read here, in this process,
        so that no pass of the run's own is started or abandoned (common.data.device_loader's same)."""
        collate = self.loader.collate_fn
        n, b = len(self.dataset), self.batch_size
        return [self.to_device(collate([self.dataset[(0, i)] for i in range(start, min(start + b, n))]))
                for start in range(0, min(count * b, n), b)]

    def to_device(self, batch):
        """A DataLoader batch -> (x, y) on the device."""
        x, y = batch
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        return x, y.to(self.device, non_blocking=True)

    def state_dict(self, mid_pass: bool = False) -> dict:
        """The generator state (CPU uint8): restoring it replays the next epoch exactly. With
        `mid_pass`, also the pass in progress ((seed, image) pairs and the batches done), which
        `load_state_dict` makes the next iteration continue from."""
        state = {"generator": self.sampler.generator.get_state().clone()}
        if mid_pass and self._current is not None:
            state["position"] = dict(self._current)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.sampler.generator.set_state(state["generator"].cpu())
        position = state.get("position")
        if position is not None:
            self.sampler.resume = ([tuple(item) for item in position["items"]], position["next"] * self.batch_size)
            self._resume_next = position["next"]


def streamed_training_loaders(root, batch_size, workers, device, seed, image_size=224, eval_resize=256,
                            limit: Optional[int] = None, num_replicas=1, rank=0,
                            memory_format=torch.contiguous_format):
    """Loaders over `<root>/train` (training) and `<root>/val` (evaluation).

    `limit` keeps N images of each split, evenly spaced (so every class shows). The training
    loader shuffles from generator `seed`, the validation loader keeps file order."""
    train_folder, val_folder = train_and_val_folders(root, limit)
    train_data = Augmented(train_folder, train_transform(image_size), spread(len(train_folder), limit))
    val_data = Augmented(val_folder, eval_transform(image_size, eval_resize), spread(len(val_folder), limit))
    shared = dict(batch_size=batch_size, device=device, workers=workers, num_replicas=num_replicas,
                  rank=rank, memory_format=memory_format)
    # a last training batch of one image would break BatchNorm (the auxiliary head pools to 1x1)
    per_rank = -(-len(train_data) // num_replicas)
    train = ImageNetLoader(train_data, shuffle=True, seed=seed, drop_last=per_rank % batch_size == 1, **shared)
    val = ImageNetLoader(val_data, shuffle=False, seed=seed + 1, **shared)
    return Loaders(len(train_folder.classes), train, val)


# ---- the "decode" backend: bytes from the workers, decoding and augmentation on the device


def decode_batch(data, device):
    """(RGB uint8 CHW images on `device`, how many the JPEG decoder refused) from a list of
    encoded files: one batched decode_jpeg call (nvJPEG on CUDA); if it fails, file by file,
    a file it refuses decoded by the CPU's general decoder."""
    from torchvision.io import ImageReadMode, decode_jpeg
    try:
        return decode_jpeg(data, device=device, mode=ImageReadMode.RGB), 0
    except (RuntimeError, ValueError):
        images = [_decode_one(d, device) for d in data]
        return [image for image, _ in images], sum(on_cpu for _, on_cpu in images)


def _decode_one(data, device):
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg
    try:
        return decode_jpeg(data, device=device, mode=ImageReadMode.RGB), False
    except (RuntimeError, ValueError):  # not a JPEG (PNG), or one the device decoder refuses (CMYK on nvJPEG)
        return decode_image(data, mode=ImageReadMode.RGB).to(device, non_blocking=True), True


class DecodeLoader(ImageNetLoader):
    """ImageNetLoader whose workers only read file bytes: each batch is decoded on `device`
    (one decode_jpeg call), cropped by `crop(image, seed)` and normalised there.

    On CUDA the decoding runs on the loader's own stream. nvJPEG writes its output from a
    stream of its own that waits for nothing, into memory allocated on the calling stream:
    that memory must hold no pending work. So before each batch the host waits for this
    stream alone (the previous batch's decoding and cropping, not the training queued on the
    main stream), and the batch is handed to the main stream with `record_stream`.
    `cpu_decodes` counts the images the device's decoder refused (decoded on the CPU); the
    first is logged once."""

    def __init__(self, dataset, *, crop, **kwargs):
        super().__init__(dataset, collate_fn=collate_encoded, **kwargs)
        self.crop = crop
        self.mean = torch.tensor(MEAN).view(1, 3, 1, 1).to(self.device)  # copied once
        self.std = torch.tensor(STD).view(1, 3, 1, 1).to(self.device)
        self.cpu_decodes = 0
        self.stream = None
        if self.device.type == "cuda":
            self.stream = torch.cuda.Stream(self.device)
            torch.cuda.current_stream(self.device).synchronize()  # mean and std are there before it reads them

    def to_device(self, batch):
        if self.stream is None:
            return self._decode(batch)
        current = torch.cuda.current_stream(self.device)
        self.stream.synchronize()  # nothing pending on the memory nvJPEG is given (see the class doc)
        with torch.cuda.stream(self.stream):
            x, y = self._decode(batch)
        current.wait_stream(self.stream)
        x.record_stream(current)
        y.record_stream(current)
        return x, y

    def _decode(self, batch):
        images, on_cpu = decode_batch(batch.files(), self.device)
        if on_cpu:
            if not self.cpu_decodes:
                logging.getLogger("drnas").warning(
                    f"the GPU decoder refused {on_cpu} of {len(images)} images (not JPEG, or CMYK): they are "
                    "decoded on the CPU, slower; results.json counts them (loader_cpu_decodes)")
            self.cpu_decodes += on_cpu
        x = torch.stack([self.crop(image, seed) for image, seed in zip(images, batch.seeds)])
        x = x.contiguous(memory_format=self.memory_format).float()  # later ops keep the layout
        x = x.div_(255).sub_(self.mean).div_(self.std)  # ToTensor + Normalize
        return x, batch.labels.to(self.device, non_blocking=True)


def search_backend(backend, device):
    """"workers" or "decode" ("auto": decode on CUDA, where nvJPEG does the decoding)."""
    if backend not in BACKENDS:
        raise UserError(f"unknown data backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "decode" if torch.device(device).type == "cuda" else "workers"
    return backend


def streamed_search_loaders(root, batch_size, device, seed, *, workers=0, backend="auto",
                          image_size=224, eval_resize=256, limit: Optional[int] = None,
                          num_replicas=1, rank=0, memory_format=torch.contiguous_format):
    """The loaders of the ImageNet search.

    train: `<root>/train` (weights), search augmentation, shuffled from `seed`; arch:
    `<root>/val` (architecture), the same augmentation, shuffled from `seed + 1`. An epoch of
    train ends with its last partial batch (per rank, padded as DistributedSampler pads); arch
    gives full batches only, unless the half is smaller than one batch. evaluation:
    `<root>/val`, evaluation transform, file order, every image. `limit` keeps N evenly
    spaced images of each folder; `backend` as in the module docstring."""
    device = torch.device(device)
    backend = search_backend(backend, device)
    train_folder, val_folder = train_and_val_folders(root, limit)
    shared = dict(batch_size=batch_size, device=device, workers=workers, num_replicas=num_replicas,
                  rank=rank, memory_format=memory_format)

    def loader(folder, augment, **kwargs):
        indices = spread(len(folder), limit)
        if backend == "workers":
            transform = search_transform(image_size) if augment else eval_transform(image_size, eval_resize)
            return ImageNetLoader(Augmented(folder, transform, indices), **kwargs, **shared)
        crop = RandomCropFlip(image_size) if augment else ResizeCenterCrop(image_size, eval_resize)
        return DecodeLoader(Encoded(folder, indices), crop=crop, **kwargs, **shared)

    per_rank = -(-len(spread(len(val_folder), limit) or val_folder) // num_replicas)
    train = loader(train_folder, True, shuffle=True, seed=seed)
    arch = loader(val_folder, True, shuffle=True, seed=seed + 1, drop_last=per_rank >= batch_size)
    valid = loader(val_folder, False, shuffle=False, seed=seed + 2)
    return Loaders(len(train_folder.classes), train, valid, arch)


def _per_rank(args, dist):
    """(per-rank batch, replicas, rank): `--batch_size` is the global batch."""
    if not dist.distributed:
        return args.batch_size, 1, 0
    return global_to_local_batch(args.batch_size, dist), dist.world_size, dist.rank


def imagenet_training_loaders(args, device, dist=ONE_PROCESS):
    """The loaders of train_imagenet.py, from its flags (common/data/loaders.py's signature)."""
    batch_size, replicas, rank = _per_rank(args, dist)
    return streamed_training_loaders(args.data, batch_size, args.workers, device, args.seed, limit=args.data_limit,
                                   num_replicas=replicas, rank=rank, memory_format=MEMORY_FORMATS[args.memory_format])


def imagenet_search_loaders(args, device, dist=ONE_PROCESS):
    """The loaders of train_search_imagenet.py, from its flags (common/data/loaders.py's signature)."""
    batch_size, replicas, rank = _per_rank(args, dist)
    return streamed_search_loaders(args.data, batch_size, device, args.seed, workers=args.workers, backend=args.loader,
                                 image_size=args.image_size, limit=args.data_limit, num_replicas=replicas, rank=rank,
                                 memory_format=MEMORY_FORMATS[args.memory_format])
