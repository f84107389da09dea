"""The loaders of in-memory datasets (ImageSets), and the one result type every loader factory
returns (`Loaders`; common/data/loaders.py picks the factory of a run's flags). Under torchrun
(`dist` distributed) each loader is sharded over the ranks and `--batch_size` is the global batch.
"""
from typing import NamedTuple, Optional

from common.device import MEMORY_FORMATS
from common.data.device_loader import DeviceLoader
from common.errors import UserError
from common.data.datasets import search_split
from common.data.imageset import subset
from common.distributed import ONE_PROCESS


class Loaders(NamedTuple):
    num_classes: int
    train: object  # augmented, shuffled: the weights' batches
    evaluation: object  # plain, in order: the figure of every epoch
    arch: Optional[object] = None  # augmented, shuffled: the architecture's batches (searches)
    data: Optional[dict] = None  # what was read, for results.json's "data" (e.g. a folder dataset's classes)
    notes: tuple = ()  # lines for the run's log (e.g. how a folder dataset is read)


def _shards(dist):
    if not dist.distributed:
        return {}
    return {"rank": dist.rank, "world_size": dist.world_size}


def limited(data, limit):
    """The first `limit` images (`--data_limit`), or all of them."""
    return subset(data, range(min(limit, len(data)))) if limit else data


def imageset_search_loaders(data, args, device, dist=ONE_PROCESS):
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


def imageset_training_loaders(train_data, test_data, args, device, dist=ONE_PROCESS):
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
