"""Train a DARTS-space architecture from scratch on ImageNet (the paper's mobile setting).

    cd DARTS-space && python train_imagenet.py --auxiliary --arch DrNAS_imagenet --data /path/to/imagenet

The authors' defaults (DrNAS / PC-DARTS train_imagenet.py): 250 epochs, batch 768, SGD lr
0.5 (momentum 0.9, wd 3e-5), label smoothing 0.1, C 48, 14 layers, auxiliary weight 0.4,
gradient clip 5, no drop-path; the learning rate decays linearly (default; PC-DARTS's
`adjust_lr`, whose last 5 epochs have a smaller slope) or by cosine, after a 5-epoch linear
warm-up, lr * (epoch + 1) / 5, when the batch exceeds 256. The data is the class-folder
layout `<data>/train/<class>/*.JPEG`, `<data>/val/<class>/*.JPEG` (common/imagenet.py).
The results JSON holds every epoch's top-1 and top-5 validation accuracy, the final and best
top-1 and the parameter count. The loop and the run plumbing live in common/.
"""
import argparse
import functools
import math

import torch
import torch.nn.functional as F

from common.distributed import distributed_main, global_to_local_batch
from common.errors import ArgumentParser, UserError, exit_on_user_error
from common.imagenet import imagenet_loaders
from common.run import PROJECT_ROOT
from common.search_script import MEMORY_FORMATS
from common.train import TrainParts, train_from_flags
from darts_space.genotypes import genotype_to_json
from darts_space.model import NetworkImageNet, count_parameters, resolve_genotype
from darts_space.train import add_training_flags, check_training_args, eval_output_dir

DATASET = "imagenet"
SCHEDULERS = ("linear", "cosine")
WARMUP_ABOVE_BATCH = 256


def build_parser(description=__doc__.splitlines()[0]):
    p = ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=str(PROJECT_ROOT / "data" / "imagenet"),
                   help="ImageNet folder holding train/<class>/ and val/<class>/")
    add_training_flags(p, batch_size=768, learning_rate=0.5, weight_decay=3e-5, epochs=250, init_channels=48,
                       layers=14, drop_path_prob=0.0, arch="DrNAS_imagenet")
    p.add_argument("--label_smooth", type=float, default=0.1, help="label smoothing of the training loss")
    p.add_argument("--lr_scheduler", default="linear", choices=SCHEDULERS, help="decay after the warm-up")
    p.add_argument("--warmup_epochs", type=int, default=5,
                   help=f"linear warm-up epochs, only when --batch_size > {WARMUP_ABOVE_BATCH}")
    p.add_argument("--workers", type=int, default=4, help="DataLoader worker processes (JPEG decoding)")
    for action in p._actions:  # add_run_flags says "training images"; here it limits both splits
        if action.dest == "data_limit":
            action.help = "use only N images of each split (evenly spaced over the classes)"
    return p


def check_args(args):
    check_training_args(args)
    if not 0 <= args.label_smooth < 1:
        raise UserError(f"--label_smooth must lie in [0, 1), got {args.label_smooth}")
    if args.warmup_epochs < 0:
        raise UserError(f"--warmup_epochs must be at least 0, got {args.warmup_epochs}")
    if args.workers < 0:
        raise UserError(f"--workers must be at least 0, got {args.workers}")


def lr_factor(epoch, *, epochs, scheduler="linear", warmup_epochs=5, batch_size=768, floor=0.0):
    """The learning rate of `epoch` (0-based) as a multiple of the base rate.

    Warm-up (batch_size > 256 only): (epoch + 1) / warmup_epochs for the first epochs, as
    PC-DARTS overrides the schedule. Linear: PC-DARTS `adjust_lr`, (E - 5 - e) / (E - 5) while
    more than 5 epochs remain, then (E - e) / (5 (E - 5)) (a smaller slope, since lr / 250 is
    still large); runs of at most 5 epochs decay plainly, (E - e) / E. Cosine: (1 + cos(pi e / E)) / 2,
    from 1 to `floor` (the ImageNet search's lr_min / lr), as CosineAnnealingLR with eta_min."""
    if batch_size > WARMUP_ABOVE_BATCH and epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    if scheduler == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    tail = 5
    if epochs <= tail:
        return (epochs - epoch) / epochs
    if epochs - epoch > tail:
        return (epochs - tail - epoch) / (epochs - tail)
    return (epochs - epoch) / ((epochs - tail) * tail)


def build_scheduler(optimizer, args):
    """One LambdaLR (warm-up then decay), stepped once per epoch: its state is the epoch count."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(
        lr_factor, epochs=args.epochs, scheduler=args.lr_scheduler, warmup_epochs=args.warmup_epochs,
        batch_size=args.batch_size))


def build_parts(args, genotype, device, dist):
    """`--batch_size` is the global batch: each of the `dist.world_size` ranks loads its share."""
    memory_format = MEMORY_FORMATS[args.memory_format]
    train, val, num_classes = imagenet_loaders(
        args.data, global_to_local_batch(args.batch_size, dist), args.workers, device, args.seed,
        limit=args.data_limit, num_replicas=dist.world_size, rank=dist.rank, memory_format=memory_format)
    model = NetworkImageNet(args.init_channels, num_classes, args.layers, args.auxiliary, genotype)
    model = model.to(device, memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), args.learning_rate, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    return TrainParts(model=model, optimizer=optimizer, scheduler=build_scheduler(optimizer, args),
                      train_loader=train, test_loader=val, epochs=args.epochs,
                      drop_path_prob=args.drop_path_prob,
                      auxiliary_weight=args.auxiliary_weight if args.auxiliary else 0.0,
                      grad_clip=args.grad_clip,
                      criterion=functools.partial(F.cross_entropy, label_smoothing=args.label_smooth),
                      eval_criterion=F.cross_entropy, report_freq=args.report_freq)


def run(args, dist=None):
    """Train with parsed flags; returns the results dict. `dist`: common.distributed.Dist."""
    check_args(args)
    genotype = resolve_genotype(args.arch)
    return train_from_flags(
        args, dist, genotype=genotype, genotype_record=genotype_to_json(genotype), build_parts=build_parts,
        default_dir=lambda: eval_output_dir(DATASET, args.save, args.seed), count_params=count_parameters)


@exit_on_user_error
def main(argv=None):
    return distributed_main(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
