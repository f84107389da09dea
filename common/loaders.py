"""The loaders of a run, built from its flags: one result type from one factory signature,

    factory(args, device, dist) -> Loaders(num_classes, train, evaluation, arch, data, notes)

for every kind of run: a search (`train` the weight half, `arch` the architecture half,
`evaluation` the architecture half without augmentation: the per-epoch validation figure)
and a training (`train` the training set, `evaluation` the test set, `arch` None); `data`
(results.json's "data") and `notes` (log lines), when given, say what was read. The
loaders of in-memory datasets are here; those of `--dataset folder` are in
common/folder_loaders.py, the ImageNet ones in common/imagenet_loader.py.
Under torchrun (`dist` distributed) each loader is sharded over the ranks and
`--batch_size` is the global batch.
"""
from typing import NamedTuple, Optional

from common.datasets import load_dataset, search_split
from common.device import MEMORY_FORMATS
from common.device_loader import DeviceLoader
from common.errors import UserError
from common.imageset import subset


class Loaders(NamedTuple):
    num_classes: int
    train: object  # augmented, shuffled: the weights' batches
    evaluation: object  # plain, in order: the figure of every epoch
    arch: Optional[object] = None  # augmented, shuffled: the architecture's batches (searches)
    data: Optional[dict] = None  # what was read, for results.json's "data" (e.g. a folder dataset's classes)
    notes: tuple = ()  # lines for the run's log (e.g. how a folder dataset is read)


def _shards(dist):
    if dist is None or not dist.distributed:
        return {}
    return {"rank": dist.rank, "world_size": dist.world_size}


def limited(data, limit):
    """The first `limit` images (`--data_limit`), or all of them."""
    return subset(data, range(min(limit, len(data)))) if limit else data


def _folder_flags_only_with_folder(args):
    if args.dataset != "folder" and getattr(args, "image_size", None):
        raise UserError(f"--image_size resizes the images of --dataset folder only, not {args.dataset}: leave it out")


def search_loaders(args, device, dist=None):
    """A training set split in two halves (`--train_portion`): the first trains the weights,
    the second the architecture (and gives the validation figure)."""
    _folder_flags_only_with_folder(args)
    if args.dataset == "folder":
        from common.folder_loaders import folder_search_loaders
        return folder_search_loaders(args, device, dist)
    return imageset_search_loaders(limited(load_dataset(args.dataset, args.data, train=True), args.data_limit),
                                   args, device, dist)


def imageset_search_loaders(data, args, device, dist=None):
    """search_loaders of the training set `data` (an ImageSet)."""
    weight_half, arch_half = search_split(len(data), args.train_portion)
    cutout = args.cutout_length if args.cutout else 0
    shared = dict(batch_size=args.batch_size, device=device, memory_format=MEMORY_FORMATS[args.memory_format],
                  **_shards(dist))
    # An epoch ends with the last partial batch of the weight half (391 steps on a CIFAR half,
    # as the authors' DataLoader). The architecture stream draws full batches (the authors took
    # a fresh shuffled batch every step), or the whole half when it is smaller than a batch.
    train = DeviceLoader.from_imageset(data, weight_half, train=True, seed=args.seed, cutout=cutout,
                                       cutout_prob=args.cutout_prob, **shared)
    arch = DeviceLoader.from_imageset(data, arch_half, train=True, seed=args.seed + 1, cutout=cutout,
                                      cutout_prob=args.cutout_prob, drop_last=len(arch_half) >= args.batch_size,
                                      **shared)
    evaluation = DeviceLoader.from_imageset(data, arch_half, train=False, seed=args.seed + 2, **shared)
    return Loaders(data.num_classes, train, evaluation, arch)


def training_loaders(args, device, dist=None):
    """The training split (augmented, cutout with `--cutout`) and the test split."""
    _folder_flags_only_with_folder(args)
    if args.dataset == "folder":
        from common.folder_loaders import folder_training_loaders
        return folder_training_loaders(args, device, dist)
    train_data = limited(load_dataset(args.dataset, args.data, train=True), args.data_limit)
    return imageset_training_loaders(train_data, load_dataset(args.dataset, args.data, train=False), args, device,
                                     dist)


def imageset_training_loaders(train_data, test_data, args, device, dist=None):
    """training_loaders of the ImageSets `train_data` and `test_data`."""
    if test_data.num_classes != train_data.num_classes:
        raise UserError(f"the {args.dataset} test split has {test_data.num_classes} classes, "
                        f"the training split {train_data.num_classes}: check the files in {args.data}")
    shared = dict(batch_size=args.batch_size, device=device, memory_format=MEMORY_FORMATS[args.memory_format],
                  **_shards(dist))
    # a last training batch of one image would break BatchNorm (the auxiliary head pools to 1x1)
    drop_last = len(train_data) % args.batch_size == 1
    cutout = args.cutout_length if args.cutout else 0  # every dataset (the authors' code crashed on cifar100)
    train = DeviceLoader.from_imageset(train_data, train=True, seed=args.seed, cutout=cutout, drop_last=drop_last,
                                       cutout_prob=args.cutout_prob, **shared)
    test = DeviceLoader.from_imageset(test_data, train=False, seed=args.seed + 1, **shared)
    return Loaders(train_data.num_classes, train, test)
