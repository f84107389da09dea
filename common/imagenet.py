"""ImageNet (ILSVRC-2012) in the standard class-folder layout, for train_imagenet.py.

    <root>/train/<class>/*.JPEG
    <root>/val/<class>/*.JPEG     (the validation images sorted into class folders)

Training: RandomResizedCrop(224), horizontal flip, ColorJitter(0.4, 0.4, 0.4, 0.2) (the
DARTS / PC-DARTS ImageNet scripts), ToTensor, Normalize. Evaluation: Resize(256),
CenterCrop(224), ToTensor, Normalize. Decoding runs in DataLoader worker processes.

The loaders keep the contract of common.data.DeviceLoader that common/train.run_training
relies on: iterating yields (x, y) already on the device, and they have `batch_size`,
`__len__` and `state_dict()` / `load_state_dict()`. The state is one generator: it draws
each epoch's permutation and the epoch's augmentation seed, and every image's random
augmentation is seeded from (epoch seed, image index). So an epoch's batches do not depend
on `workers` (0 or N, persistent or not), and a resumed run replays the next epoch exactly.
"""
from typing import Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from common.errors import UserError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
LAYOUT = "<root>/train/<class>/*.JPEG and <root>/val/<class>/*.JPEG"
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
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((epoch_seed + i * _SEED_MIX) % 2 ** 63)
            x = self.transform(image)
        return x, label


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
                 num_replicas=1, rank=0, memory_format=torch.contiguous_format):
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
                                 generator=base)

    @property
    def num_images(self) -> int:
        return len(self.sampler)

    def __len__(self) -> int:
        n, b = self.num_images, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            yield x, y.to(self.device, non_blocking=True)

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
    if limit is not None and limit < 1:
        raise UserError(f"--data_limit must be at least 1, got {limit}")
    train_folder = image_folder(root, "train")
    val_folder = image_folder(root, "val")
    if val_folder.classes != train_folder.classes:
        raise UserError(f"{root}/val has {len(val_folder.classes)} class folders, {root}/train "
                        f"{len(train_folder.classes)}, and they differ: both need the same class folders")
    train_data = _Augmented(train_folder, train_transform(image_size), spread(len(train_folder), limit))
    val_data = _Augmented(val_folder, eval_transform(image_size, eval_resize), spread(len(val_folder), limit))
    shared = dict(batch_size=batch_size, device=device, workers=workers, num_replicas=num_replicas,
                  rank=rank, memory_format=memory_format)
    # a last training batch of one image would break BatchNorm (the auxiliary head pools to 1x1)
    per_rank = -(-len(train_data) // num_replicas)
    train = ImageNetLoader(train_data, shuffle=True, seed=seed, drop_last=per_rank % batch_size == 1, **shared)
    val = ImageNetLoader(val_data, shuffle=False, seed=seed + 1, **shared)
    return train, val, len(train_folder.classes)
