"""ImageNet (ILSVRC-2012) in the standard class-folder layout: the folders, the transforms,
and the per-image seeding that makes both loader backends (common/data/imagenet_loader.py) crop
and flip every image alike.

    <root>/train/<class>/*.JPEG
    <root>/val/<class>/*.JPEG     (the validation images sorted into class folders)

Training: RandomResizedCrop(224), horizontal flip, ColorJitter(0.4, 0.4, 0.4, 0.2) (the DARTS /
PC-DARTS ImageNet scripts), ToTensor, Normalize. Evaluation: Resize(256), CenterCrop(224),
ToTensor, Normalize. Search (data from scripts/sample_imagenet.py: train/ is the weight half,
val/ the architecture half): RandomResizedCrop(224) and flip without colour jitter, the
authors' search.

Every image's random augmentation is seeded from (epoch seed, image index) on the CPU
generator alone, so an epoch's batches do not depend on the number of worker processes.
"""
from contextlib import contextmanager, nullcontext
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from common.errors import UserError, one_line

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
        detail = one_line(err)
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


class Augmented(Dataset):
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


class Encoded(Augmented):
    """The "decode" backend's items: (file bytes as a uint8 tensor, label, the image's seed)."""

    def __init__(self, folder, indices=None):
        super().__init__(folder, None, indices)

    def __getitem__(self, item):
        from torchvision.io import read_file
        epoch_seed, i = item
        path, label = self.folder.samples[self.indices[i]]
        return read_file(path), label, image_seed(epoch_seed, i)


class EncodedBatch(NamedTuple):
    data: torch.Tensor  # the files' bytes end to end: one shared-memory block per batch
    sizes: list
    labels: torch.Tensor
    seeds: list

    def files(self):
        return list(self.data.split(self.sizes))

    def pin_memory(self, device=None):
        # only the labels are copied to the device; decode_jpeg reads the bytes itself
        return self._replace(labels=self.labels.pin_memory())


def collate_encoded(items):
    # one tensor, not a list: read_file's tensors fail to pass between processes one by one
    # (EBADF), and one shared-memory block per batch beats a file descriptor per image
    data, labels, seeds = zip(*items)
    return EncodedBatch(torch.cat(data), [len(d) for d in data], torch.tensor(labels), list(seeds))


def spread(n, limit):
    """`limit` indices evenly spaced over 0..n-1 (ImageFolder sorts by class: every class shows)."""
    if limit is None or limit >= n:
        return None
    return torch.linspace(0, n - 1, int(limit)).round().long().tolist()


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
