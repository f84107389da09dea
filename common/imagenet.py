"""ImageNet (ILSVRC-2012) in the standard class-folder layout, for train_imagenet.py and the
direct ImageNet architecture search.

    <root>/train/<class>/*.JPEG
    <root>/val/<class>/*.JPEG     (the validation images sorted into class folders)

Evaluation script (`imagenet_loaders`). Training: RandomResizedCrop(224), horizontal flip,
ColorJitter(0.4, 0.4, 0.4, 0.2) (the DARTS / PC-DARTS ImageNet scripts), ToTensor, Normalize.
Evaluation: Resize(256), CenterCrop(224), ToTensor, Normalize.

Search (`imagenet_search_loaders`, data from scripts/sample_imagenet.py: train/ is the weight
half, val/ the architecture half): RandomResizedCrop(224) and flip without colour jitter (the
authors' search), in two backends:
  "workers": DataLoader worker processes decode with PIL and run the torchvision transforms;
  "decode":  the workers only read the file bytes; the main process decodes each batch with one
             torchvision.io.decode_jpeg call on the device (nvJPEG on CUDA) and crops, flips and
             normalises there with tensor ops. At batch 512 one GPU outruns the CPU cores that
             decode for it; nvJPEG moves the decoding onto the GPU. Files that decode_jpeg cannot
             read (a few PNG and CMYK files in ImageNet) fall back to the CPU one by one.
"auto" picks "decode" on CUDA and "workers" elsewhere. Both draw the same crop boxes and flips.

The loaders keep the contract of common.data.DeviceLoader that common/train.run_training
relies on: iterating yields (x, y) already on the device, and they have `batch_size`,
`__len__` and `state_dict()` / `load_state_dict()`. The state is one generator: it draws
each epoch's permutation and the epoch's augmentation seed, and every image's random
augmentation is seeded from (epoch seed, image index) on the CPU generator alone. So an
epoch's batches do not depend on `workers` (0 or N, persistent or not), both backends crop
and flip each image alike, and a resumed run replays the next epoch exactly.
"""
import time
from contextlib import contextmanager, nullcontext
from typing import Iterator, NamedTuple, Optional

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from common.errors import UserError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
LAYOUT = "<root>/train/<class>/*.JPEG and <root>/val/<class>/*.JPEG"
BACKENDS = ("auto", "workers", "decode")
_SEED_MIX = 0x9E3779B97F4A7C15  # spreads neighbouring image indices over the seed space


def train_transform(image_size=224):
    from torchvision import transforms as T
    return T.Compose([
        T.RandomResizedCrop(image_size),
        T.RandomHorizontalFlip(),
        T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2),
        T.ToTensor(),
        T.Normalize(MEAN, STD),
    ])


def search_augmentation(image_size=224):
    """(RandomResizedCrop, RandomHorizontalFlip) of the authors' search; the decode backend
    reads its scale, ratio and p from these same objects."""
    from torchvision import transforms as T
    return T.RandomResizedCrop(image_size), T.RandomHorizontalFlip()


def search_transform(image_size=224):
    from torchvision import transforms as T
    return T.Compose([*search_augmentation(image_size), T.ToTensor(), T.Normalize(MEAN, STD)])


def eval_transform(image_size=224, eval_resize=256):
    from torchvision import transforms as T
    return T.Compose([T.Resize(eval_resize), T.CenterCrop(image_size), T.ToTensor(), T.Normalize(MEAN, STD)])


def image_folder(root, split):
    """torchvision ImageFolder of `<root>/<split>`; a missing or empty folder is a one-line UserError."""
    from pathlib import Path

    from torchvision.datasets import ImageFolder
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"ImageNet folder {root} does not exist: pass --data with the layout {LAYOUT}")
    folder = root / split
    if not folder.is_dir():
        raise UserError(f"ImageNet folder {root} has no {split}/ folder: expected the layout {LAYOUT}")
    try:
        return ImageFolder(str(folder))
    except FileNotFoundError as err:  # no class folder, or class folders without images
        detail = " ".join(str(err).split())
        if len(detail) > 200:
            detail = detail[:200] + "..."
        raise UserError(f"ImageNet folder {folder} holds no images in class folders ({detail}): "
                        f"expected the layout {LAYOUT}") from None


def train_and_val_folders(root, limit=None):
    """The ImageFolders of `<root>/train` and `<root>/val`, checked to share their class folders."""
    if limit is not None and limit < 1:
        raise UserError(f"--data_limit must be at least 1, got {limit}")
    train_folder = image_folder(root, "train")
    val_folder = image_folder(root, "val")
    if val_folder.classes != train_folder.classes:
        raise UserError(f"{root}/val has {len(val_folder.classes)} class folders, {root}/train "
                        f"{len(train_folder.classes)}, and they differ: both need the same class folders")
    return train_folder, val_folder


@contextmanager
def image_rng(seed):
    """The global CPU generator seeded for one image and restored afterwards. Only the CPU
    generator is touched (not CUDA's, which torch.manual_seed would reseed), and factories
    default to the CPU inside, so the draws never wait on a device."""
    on_cpu = torch.get_default_device().type == "cpu"  # the guard costs ~80 us an image
    with torch.random.fork_rng(devices=[]), nullcontext() if on_cpu else torch.device("cpu"):
        torch.random.default_generator.manual_seed(seed)
        yield


def image_seed(epoch_seed, i):
    return (epoch_seed + i * _SEED_MIX) % 2 ** 63


class _Augmented(Dataset):
    """Items are (epoch seed, index) pairs: the image's random transform is seeded from them,
    without touching the process's global RNG (fork_rng)."""

    def __init__(self, folder, transform, indices=None):
        self.folder, self.transform = folder, transform
        self.indices = list(range(len(folder))) if indices is None else list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, item):
        epoch_seed, i = item
        path, label = self.folder.samples[self.indices[i]]
        image = self.folder.loader(path)
        with image_rng(image_seed(epoch_seed, i)):
            x = self.transform(image)
        return x, label


class _Encoded(_Augmented):
    """The "decode" backend's items: (file bytes as a uint8 tensor, label, the image's seed)."""

    def __init__(self, folder, indices=None):
        super().__init__(folder, None, indices)

    def __getitem__(self, item):
        from torchvision.io import read_file
        epoch_seed, i = item
        path, label = self.folder.samples[self.indices[i]]
        return read_file(path), label, image_seed(epoch_seed, i)


class _EncodedBatch(NamedTuple):
    data: torch.Tensor  # the files' bytes end to end: one shared-memory block per batch
    sizes: list
    labels: torch.Tensor
    seeds: list

    def files(self):
        return list(self.data.split(self.sizes))

    def pin_memory(self, device=None):
        # only the labels are copied to the device; decode_jpeg reads the bytes itself
        return self._replace(labels=self.labels.pin_memory())


def _collate_encoded(items):
    # one tensor, not a list: read_file's tensors fail to pass between processes one by one
    # (EBADF), and one shared-memory block per batch beats a file descriptor per image
    data, labels, seeds = zip(*items)
    return _EncodedBatch(torch.cat(data), [len(d) for d in data], torch.tensor(labels), list(seeds))


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

    def __len__(self):
        return -(-self.n // self.num_replicas)

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.n, generator=self.generator).tolist()
        else:
            order = list(range(self.n))
        epoch_seed = int(torch.randint(0, 2 ** 62, (1,), generator=self.generator))
        total = len(self) * self.num_replicas
        order = (order * (-(-total // self.n)))[:total][self.rank::self.num_replicas]
        return iter([(epoch_seed, i) for i in order])  # drawn now, not lazily in a prefetch


class ImageNetLoader:
    """A DataLoader whose batches arrive on `device` (common.data.DeviceLoader's contract)."""

    def __init__(self, dataset, *, batch_size, device, shuffle, seed, workers=0, drop_last=False,
                 num_replicas=1, rank=0, memory_format=torch.contiguous_format, collate_fn=None):
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.dataset, self.batch_size, self.drop_last = dataset, int(batch_size), bool(drop_last)
        self.memory_format = memory_format
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
        for batch in self.loader:
            yield self.to_device(batch)

    def to_device(self, batch):
        """A DataLoader batch -> (x, y) on the device."""
        x, y = batch
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        return x, y.to(self.device, non_blocking=True)

    def state_dict(self) -> dict:
        """The generator state (CPU uint8): restoring it replays the next epoch exactly."""
        return {"generator": self.sampler.generator.get_state().clone()}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.generator.set_state(state["generator"].cpu())


def spread(n, limit):
    """`limit` indices evenly spaced over 0..n-1 (ImageFolder sorts by class: every class shows)."""
    if limit is None or limit >= n:
        return None
    return torch.linspace(0, n - 1, int(limit)).round().long().tolist()


def imagenet_loaders(root, batch_size, workers, device, seed, image_size=224, eval_resize=256,
                     limit: Optional[int] = None, num_replicas=1, rank=0,
                     memory_format=torch.contiguous_format):
    """(train_loader, val_loader, num_classes) over `<root>/train` and `<root>/val`.

    `limit` keeps N images of each split, evenly spaced (so every class shows). The training
    loader shuffles from generator `seed`, the validation loader keeps file order."""
    train_folder, val_folder = train_and_val_folders(root, limit)
    train_data = _Augmented(train_folder, train_transform(image_size), spread(len(train_folder), limit))
    val_data = _Augmented(val_folder, eval_transform(image_size, eval_resize), spread(len(val_folder), limit))
    shared = dict(batch_size=batch_size, device=device, workers=workers, num_replicas=num_replicas,
                  rank=rank, memory_format=memory_format)
    # a last training batch of one image would break BatchNorm (the auxiliary head pools to 1x1)
    per_rank = -(-len(train_data) // num_replicas)
    train = ImageNetLoader(train_data, shuffle=True, seed=seed, drop_last=per_rank % batch_size == 1, **shared)
    val = ImageNetLoader(val_data, shuffle=False, seed=seed + 1, **shared)
    return train, val, len(train_folder.classes)


# ---- the "decode" backend: bytes from the workers, decoding and augmentation on the device


def decode_batch(data, device):
    """RGB uint8 CHW images on `device` from a list of encoded files: one batched decode_jpeg
    call (nvJPEG on CUDA); if it fails, file by file, each falling back to the CPU decoder."""
    from torchvision.io import ImageReadMode, decode_jpeg
    try:
        return decode_jpeg(data, device=device, mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError):
        return [_decode_one(d, device) for d in data]


def _decode_one(data, device):
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg
    try:
        return decode_jpeg(data, device=device, mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError):  # not a JPEG (PNG), or one the device decoder refuses (CMYK on nvJPEG)
        return decode_image(data, mode=ImageReadMode.RGB).to(device, non_blocking=True)


class RandomCropFlip:
    """search_augmentation on a decoded uint8 CHW tensor: the crop box and the flip are drawn on
    the CPU, under the same seeding and in the same order as the PIL path, so they are the same."""

    def __init__(self, image_size):
        self.crop, self.flip = search_augmentation(image_size)

    def draw(self, image, seed):
        """((top, left, height, width), flip): only the image's shape is read (no device sync)."""
        with image_rng(seed):
            box = self.crop.get_params(image, self.crop.scale, self.crop.ratio)
            flip = bool(torch.rand(1) < self.flip.p)  # as RandomHorizontalFlip.forward draws it
        return box, flip

    def __call__(self, image, seed):
        from torchvision.transforms.v2 import functional as F
        (top, left, height, width), flip = self.draw(image, seed)
        out = F.resized_crop(image, top, left, height, width, list(self.crop.size), antialias=True)
        return out.flip(-1) if flip else out


class ResizeCenterCrop:
    """eval_transform's Resize(shorter side) + CenterCrop on a decoded uint8 CHW tensor
    (torchvision's own tensor functions, so the same sizes and offsets as the PIL path)."""

    def __init__(self, image_size, eval_resize):
        self.image_size, self.eval_resize = image_size, eval_resize

    def __call__(self, image, seed=None):
        from torchvision.transforms.v2 import functional as F
        return F.center_crop(F.resize(image, [self.eval_resize], antialias=True), [self.image_size])


class DecodeLoader(ImageNetLoader):
    """ImageNetLoader whose workers only read file bytes: each batch is decoded on `device`
    (one decode_jpeg call), cropped by `crop(image, seed)` and normalised there."""

    def __init__(self, dataset, *, crop, **kwargs):
        super().__init__(dataset, collate_fn=_collate_encoded, **kwargs)
        self.crop = crop
        self.mean = torch.tensor(MEAN).view(1, 3, 1, 1).to(self.device)  # copied once
        self.std = torch.tensor(STD).view(1, 3, 1, 1).to(self.device)

    def to_device(self, batch):
        images = decode_batch(batch.files(), self.device)
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


def imagenet_search_loaders(root, batch_size, device, seed, *, workers=0, backend="auto",
                            image_size=224, eval_resize=256, limit: Optional[int] = None,
                            num_replicas=1, rank=0, memory_format=torch.contiguous_format):
    """(train_loader, arch_loader, valid_loader, num_classes) for the ImageNet search.

    train_loader: `<root>/train` (weights), search augmentation, shuffled from `seed`;
    arch_loader: `<root>/val` (architecture), the same augmentation, shuffled from `seed + 1`.
    An epoch of train_loader ends with its last partial batch (per rank, padded as
    DistributedSampler pads); arch_loader gives full batches only, unless the half is smaller
    than one batch. valid_loader: `<root>/val`, evaluation transform, file
    order, every image. `limit` keeps N evenly spaced images of each folder; `backend` as in
    the module docstring."""
    device = torch.device(device)
    backend = search_backend(backend, device)
    train_folder, val_folder = train_and_val_folders(root, limit)
    shared = dict(batch_size=batch_size, device=device, workers=workers, num_replicas=num_replicas,
                  rank=rank, memory_format=memory_format)

    def loader(folder, augment, **kwargs):
        indices = spread(len(folder), limit)
        if backend == "workers":
            transform = search_transform(image_size) if augment else eval_transform(image_size, eval_resize)
            return ImageNetLoader(_Augmented(folder, transform, indices), **kwargs, **shared)
        crop = RandomCropFlip(image_size) if augment else ResizeCenterCrop(image_size, eval_resize)
        return DecodeLoader(_Encoded(folder, indices), crop=crop, **kwargs, **shared)

    per_rank = -(-len(spread(len(val_folder), limit) or val_folder) // num_replicas)
    train = loader(train_folder, True, shuffle=True, seed=seed)
    arch = loader(val_folder, True, shuffle=True, seed=seed + 1, drop_last=per_rank >= batch_size)
    valid = loader(val_folder, False, shuffle=False, seed=seed + 2)
    return train, arch, valid, len(train_folder.classes)


def loader_images_per_second(loader, batches):
    """Images per second that `loader` delivers over `batches` batches (epochs restart as
    needed), after one untimed batch (worker start-up, decoder set-up); the clock is read
    once the device has finished the work queued for them."""
    from common.data import cycle

    if batches < 1:
        raise ValueError(f"batches must be at least 1, got {batches}")

    def synchronize(x):
        if x.is_cuda:
            torch.cuda.synchronize(x.device)

    stream = cycle(loader)
    x, _ = next(stream)
    synchronize(x)
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        x, _ = next(stream)
        images += len(x)
    synchronize(x)
    return images / (time.perf_counter() - start)
