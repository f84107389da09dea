"""Train a DARTS-space architecture from scratch on CIFAR-10/100 or SVHN (the paper's evaluation).

    cd DARTS-space && python train.py --auxiliary --cutout --arch DrNAS_cifar10

The authors' defaults: 600 epochs, batch 64, SGD lr 0.025 (momentum 0.9, wd 3e-4) with
cosine annealing to 0, C 36, 20 layers, auxiliary weight 0.4, cutout 16 px, drop-path 0.3
ramped linearly, gradient clip 5. `--arch` takes a published genotype name (see
darts_space/genotypes.py), a search's results.json (or its run folder) or a genotype JSON.
Training uses the whole training set, evaluation the test split; the results JSON holds
every epoch's test accuracy, the final and best test accuracy and the parameter count.
`--device`, `--resume`, `--output_dir`, `--stop_after_epoch`, `--data_limit` and
`--memory_format` are additions. The loop and the run plumbing live in common/.

Data parallel on several GPUs (or CPU processes), same flags, `--batch_size` the global batch:

    torchrun --nproc_per_node=4 train.py --auxiliary --cutout --arch DrNAS_cifar10
"""
import argparse

import torch
import torch.nn.functional as F

from common.data import DATASETS, DeviceLoader, load_dataset, subset
from common.distributed import ShardedLoader, distributed_main, global_to_local_batch
from common.errors import ArgumentParser, UserError, exit_on_user_error
from common.run import PROJECT_ROOT, default_output_dir
from common.search_script import MEMORY_FORMATS, add_run_flags
from common.train import TrainParts, train_from_flags
from darts_space.genotypes import genotype_to_json
from darts_space.model import NetworkCIFAR, count_parameters, resolve_genotype

SPACE = "DARTS-space"
# 32x32 datasets only: ImageNet16-120's 16x16 images are too small for the CIFAR network's auxiliary head
DATASET_CHOICES = [name for name in sorted(DATASETS) if name != "imagenet16-120"]


def add_training_flags(p, *, batch_size, learning_rate, weight_decay, epochs, init_channels, layers,
                       drop_path_prob, arch):
    """The flags train.py and train_imagenet.py share, with each script's defaults."""
    p.add_argument("--batch_size", type=int, default=batch_size, help="the global batch (all processes)")
    p.add_argument("--learning_rate", type=float, default=learning_rate, help="initial (peak) learning rate")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight_decay", type=float, default=weight_decay)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--init_channels", type=int, default=init_channels, help="C: channels of the first stage")
    p.add_argument("--layers", type=int, default=layers, help="cells in the network")
    p.add_argument("--auxiliary", action="store_true", help="auxiliary head after the second reduction cell")
    p.add_argument("--auxiliary_weight", type=float, default=0.4)
    p.add_argument("--drop_path_prob", type=float, default=drop_path_prob, help="final value of the linear ramp")
    p.add_argument("--arch", default=arch,
                   help="published genotype name, a search's results.json or run folder, or a genotype JSON")
    p.add_argument("--grad_clip", type=float, default=5.0, help="gradient-norm clip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory_format", default="contiguous", choices=sorted(MEMORY_FORMATS),
                   help="layout of activations and conv weights (channels_last: faster on most GPUs)")
    p.add_argument("--amp", action="store_true",
                   help="bfloat16 autocast (off by default: default runs keep the authors' fp32 numerics)")
    add_run_flags(p)


def build_parser(description=__doc__.splitlines()[0]):
    p = ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=str(PROJECT_ROOT / "data"), help="folder holding the datasets")
    p.add_argument("--dataset", default="cifar10", choices=DATASET_CHOICES)
    add_training_flags(p, batch_size=64, learning_rate=0.025, weight_decay=3e-4, epochs=600, init_channels=36,
                       layers=20, drop_path_prob=0.3, arch="DrNAS_cifar10")
    p.add_argument("--cutout", action="store_true")
    p.add_argument("--cutout_length", type=int, default=16)
    return p


def check_training_args(args):
    """The checks train.py and train_imagenet.py share."""
    for name in ("batch_size", "init_channels", "epochs"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.layers < 3:
        raise UserError(f"--layers must be at least 3 (two of them are reduction cells), got {args.layers}")
    if not 0 <= args.drop_path_prob < 1:
        raise UserError(f"--drop_path_prob must lie in [0, 1), got {args.drop_path_prob}")
    if args.data_limit is not None and args.data_limit < 1:
        raise UserError(f"--data_limit must be at least 1, got {args.data_limit}")


def eval_output_dir(dataset, save, seed):
    search_dir = default_output_dir(SPACE, dataset, save, seed)  # .../search-<save>-<stamp>-<seed>
    return search_dir.with_name("eval-" + search_dir.name[len("search-"):])


def build_parts(args, genotype, device, dist=None):
    memory_format = MEMORY_FORMATS[args.memory_format]
    train_data = load_dataset(args.dataset, args.data, train=True)
    if args.data_limit:
        train_data = subset(train_data, range(min(args.data_limit, len(train_data))))
    test_data = load_dataset(args.dataset, args.data, train=False)
    if test_data.num_classes != train_data.num_classes:
        raise UserError(f"the {args.dataset} test split has {test_data.num_classes} classes, "
                        f"the training split {train_data.num_classes}: check the files in {args.data}")
    # a last training batch of one image would break BatchNorm (the auxiliary head pools to 1x1)
    drop_last = len(train_data) % args.batch_size == 1
    cutout = args.cutout_length if args.cutout else 0  # every dataset (the authors' code crashed on cifar100)
    train = DeviceLoader.from_imageset(train_data, train=True, batch_size=args.batch_size, device=device,
                                       seed=args.seed, cutout=cutout, drop_last=drop_last,
                                       memory_format=memory_format)
    test = DeviceLoader.from_imageset(test_data, train=False, batch_size=args.batch_size, device=device,
                                      seed=args.seed + 1, memory_format=memory_format)
    if dist is not None and dist.distributed:  # each rank takes its share of every global batch
        global_to_local_batch(args.batch_size, dist)
        train = ShardedLoader(train, dist.rank, dist.world_size, args.seed)
        test = ShardedLoader(test, dist.rank, dist.world_size, args.seed + 1)
    model = NetworkCIFAR(args.init_channels, train_data.num_classes, args.layers, args.auxiliary, genotype)
    model = model.to(device, memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), args.learning_rate, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs)  # to 0, as DARTS
    return TrainParts(model=model, optimizer=optimizer, scheduler=scheduler, train_loader=train,
                      test_loader=test, epochs=args.epochs, drop_path_prob=args.drop_path_prob,
                      auxiliary_weight=args.auxiliary_weight if args.auxiliary else 0.0,
                      grad_clip=args.grad_clip, criterion=F.cross_entropy, report_freq=args.report_freq)


def run(args, dist=None):
    """Train with parsed flags; returns the results dict. `dist`: common.distributed.Dist."""
    check_training_args(args)
    genotype = resolve_genotype(args.arch)
    return train_from_flags(
        args, dist, genotype=genotype, genotype_record=genotype_to_json(genotype), build_parts=build_parts,
        default_dir=lambda: eval_output_dir(args.dataset, args.save, args.seed), count_params=count_parameters)


@exit_on_user_error
def main(argv=None):
    return distributed_main(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
