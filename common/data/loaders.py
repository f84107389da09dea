"""The loaders of a run, built from its flags: one result type from one factory signature,

    factory(args, device, dist) -> Loaders(num_classes, train, evaluation, arch, data, notes)

for every kind of run: a search (`train` the weight half, `arch` the architecture half,
`evaluation` the architecture half without augmentation: the per-epoch validation figure)
and a training (`train` the training set, `evaluation` the test set, `arch` None); `data`
(results.json's "data") and `notes` (log lines), when given, say what was read. Here the
flags pick the factory: in-memory datasets (common/data/memory_loaders.py) or `--dataset
folder` (common/data/folder_loaders.py); the ImageNet search's own factory is in
common/data/imagenet_loader.py. Under torchrun (`dist` distributed) each loader is sharded
over the ranks and `--batch_size` is the global batch.
"""
from common.data.datasets import load_dataset
from common.data.folder_loaders import folder_search_loaders, folder_training_loaders
from common.data.memory_loaders import Loaders, imageset_search_loaders, imageset_training_loaders, limited
from common.errors import UserError
from common.distributed import ONE_PROCESS

__all__ = ["Loaders", "search_loaders", "training_loaders"]


def _folder_flags_only_with_folder(args):
    if args.dataset != "folder" and getattr(args, "image_size", None):
        raise UserError(f"--image_size resizes the images of --dataset folder only, not {args.dataset}: leave it out")


def search_loaders(args, device, dist=ONE_PROCESS):
    """A training set split in two halves (`--train_portion`): the first trains the weights,
    the second the architecture (and gives the validation figure)."""
    _folder_flags_only_with_folder(args)
    if args.dataset == "folder":
        return folder_search_loaders(args, device, dist)
    return imageset_search_loaders(limited(load_dataset(args.dataset, args.data, train=True), args.data_limit),
                                   args, device, dist)


def training_loaders(args, device, dist=ONE_PROCESS):
    """The training split (augmented, cutout with `--cutout`) and the test split."""
    _folder_flags_only_with_folder(args)
    if args.dataset == "folder":
        return folder_training_loaders(args, device, dist)
    train_data = limited(load_dataset(args.dataset, args.data, train=True), args.data_limit)
    return imageset_training_loaders(train_data, load_dataset(args.dataset, args.data, train=False), args, device,
                                     dist)
