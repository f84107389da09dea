"""What every search script shares: its flags, its checks, its parts, its run.

A space's `train_search.py` declares a `Space` (its network, its op count, its folder
name and, for NAS-Bench-201, its benchmark), sets the authors' defaults on the parser
built here, and calls `run(args, stages, space)`.
"""
import argparse
import dataclasses
import functools
import itertools
from pathlib import Path
from typing import Callable, Optional

import torch

from common.arch import METHODS, annealed_tau
from common.architect import REG_TYPES, Architect
from common.checkpoint import check_same_settings, load_checkpoint
from common.data import DATASETS, DeviceLoader, load_dataset, search_split, subset
from common.distributed import QuietRun, ShardedLoader, global_to_local_batch
from common.errors import ArgumentParser, UserError
from common.progressive import apply_masks
from common.run import PROJECT_ROOT, Run, check_amp, default_output_dir, resolve_device, seed_everything
from common.schedule import STAGE_LR, EpochLR
from common.search import SearchParts, Stage, load_masks, restore, run_search

MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}

# Flags that may change between a run and its --resume (all others must match the checkpoint).
RESUME_MAY_DIFFER = {"resume", "device", "data", "api_path", "report_freq", "output_dir", "workers",
                     "stop_after_epoch", "save"}


@dataclasses.dataclass(frozen=True)
class Space:
    name: str  # output folder name, e.g. "201-space"
    num_ops: int
    build_network: Callable  # (args, num_classes, k) -> search model
    open_benchmark: Optional[Callable] = None  # (args, log) -> genotype -> accuracies, or None
    build_loaders: Optional[Callable] = None  # (args, device, dist) -> (num_classes, train, arch,
    # valid); default: search_loaders (a training set split in two halves)
    build_scheduler: Optional[Callable] = None  # (args, optimizer, stages) -> scheduler;
    # default: stage_schedule, the cosine from --learning_rate to --learning_rate_min


def build_parser(description, progressive, datasets=tuple(sorted(DATASETS))):
    """The flags every search script has; the space sets its defaults with `set_defaults`.

    `datasets`: the --dataset choices (the first is the default). The flags that split one
    training set in two halves (--train_portion, --cutout) exist only for the datasets that
    common.data reads; a search with its own loaders (Space.build_loaders) has neither."""
    split_flags = set(datasets) <= set(DATASETS)
    p = ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=str(PROJECT_ROOT / "data"), help="folder holding the datasets")
    p.add_argument("--dataset", default="cifar10" if "cifar10" in datasets else datasets[0], choices=datasets)
    p.add_argument("--method", default="dirichlet", choices=sorted(METHODS),
                   help="dirichlet (DrNAS), darts (softmax), snas (Gumbel-softmax), gdas (hard Gumbel)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--learning_rate", type=float, default=0.025, help="initial weight learning rate")
    p.add_argument("--learning_rate_min", type=float, default=0.001, help="cosine schedule floor")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight_decay", type=float, default=3e-4)
    p.add_argument("--init_channels", type=int, default=16, help="C: channels of the first stage")
    if progressive:
        p.add_argument("--ks", type=int, nargs="+", default=[4, 2], help="partial-channel k per stage")
        p.add_argument("--num_keeps", type=int, nargs="+", default=[5, 3], help="ops kept per edge per stage")
        p.add_argument("--train_epochs", type=int, nargs="+", default=[50, 50], help="epochs per stage")
        p.add_argument("--arch_start_epoch", type=int, default=10,
                       help="architecture updates start at this epoch of every stage (the authors' warm-up)")
        p.add_argument("--stage_lr", default="restart", choices=sorted(STAGE_LR),
                       help="restart: every stage restarts the cosine at --learning_rate (the authors' new "
                            "optimizer and loaded scheduler state); continue: one cosine over all stages")
    else:
        p.add_argument("--epochs", type=int, default=100)
        p.add_argument("--k", type=int, default=1, help="partial channels: ops see C/k channels")
    if split_flags:
        p.add_argument("--cutout", action="store_true", help="cutout on the search data")
        p.add_argument("--cutout_length", type=int, default=16)
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--grad_clip", type=float, default=5.0, help="gradient-norm clip of the weights")
    p.add_argument("--arch_grad_clip", type=float, default=0.0,
                   help="gradient-norm clip of the architecture parameters (0: none)")
    if split_flags:
        p.add_argument("--train_portion", type=float, default=0.5,
                       help="share of the training set for the weights; the rest trains the architecture")
    p.add_argument("--unrolled", action="store_true", help="second-order architecture step")
    p.add_argument("--arch_learning_rate", type=float, default=3e-4)
    p.add_argument("--tau_max", type=float, default=10.0, help="initial Gumbel temperature (snas, gdas)")
    p.add_argument("--tau_min", type=float, default=1.0, help="final Gumbel temperature (snas, gdas)")
    p.add_argument("--reg_type", default="l2", choices=REG_TYPES,
                   help="anchor regulariser: l2 = Adam weight decay on alpha, kl = KL to Dir(1)")
    p.add_argument("--reg_scale", type=float, default=1e-3, help="anchor strength lambda")
    p.add_argument("--sample_archs", type=int, default=0,
                   help="every epoch, sample N architectures from the distribution (paper figure 1)")
    p.add_argument("--hessian_freq", type=int, default=0,
                   help="every E epochs, the largest Hessian eigenvalue w.r.t. alpha (figures 4-5)")
    p.add_argument("--hessian_batches", type=int, default=2, help="validation batches for the eigenvalue")
    p.add_argument("--amp", action="store_true",
                   help="bfloat16 autocast of every forward pass (off by default: the authors' fp32 numerics)")
    p.add_argument("--valid_from_epoch", type=int, default=0,
                   help="evaluate on the architecture half from this (0-based) epoch on")
    p.add_argument("--memory_format", default="channels_last", choices=sorted(MEMORY_FORMATS),
                   help="layout of activations and conv weights: channels_last is faster on CPUs "
                        "(see docs/performance.md) and gives the same results to float tolerance")
    add_run_flags(p)
    return p


def add_run_flags(p):
    """Where a run goes, on what device, and how it stops and resumes: every script has these."""
    p.add_argument("--report_freq", type=int, default=50, help="log every N steps (non-terminal output)")
    p.add_argument("--save", default="exp", help="experiment name, part of the output folder name")
    p.add_argument("--output_dir", default=None, help="output folder (default: experiments/<space>/<dataset>/...)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in this folder")
    p.add_argument("--stop_after_epoch", type=int, default=None,
                   help="stop cleanly after this epoch (e.g. a scheduler's time limit); --resume later")
    p.add_argument("--data_limit", type=int, default=None, help="use only the first N training images")


def stages_of(args, num_ops):
    """The search's stages: one for a plain search, the progressive schedule otherwise."""
    if not hasattr(args, "ks"):
        return [Stage(args.epochs, args.k)]
    if len({len(args.ks), len(args.num_keeps), len(args.train_epochs)}) != 1:
        raise UserError(f"--ks {args.ks}, --num_keeps {args.num_keeps} and --train_epochs "
                        f"{args.train_epochs} must list one value per stage each")
    if any(b > a for a, b in zip(args.num_keeps, args.num_keeps[1:])):
        raise UserError(f"--num_keeps {args.num_keeps} must not grow from stage to stage")
    if any(b > a for a, b in zip(args.ks, args.ks[1:])):
        raise UserError(f"--ks {args.ks} must not grow from stage to stage (widening only)")
    if not 1 <= args.num_keeps[-1] <= args.num_keeps[0] <= num_ops:
        raise UserError(f"--num_keeps {args.num_keeps} must lie between 1 and {num_ops}")
    # the flags the rest of the code reads: the total length and the first stage's k
    args.epochs, args.k = sum(args.train_epochs), args.ks[0]
    return [Stage(epochs, k, keep, args.arch_start_epoch)
            for epochs, k, keep in zip(args.train_epochs, args.ks, args.num_keeps)]


def check_args(args, stages):
    for name in ("batch_size", "init_channels"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    for stage in stages:
        if stage.epochs < 1 or stage.k < 1:
            raise UserError(f"epochs and k must be at least 1, got {stage.epochs} and {stage.k}")
        if args.init_channels % stage.k:
            raise UserError(f"k={stage.k} does not divide --init_channels {args.init_channels}: "
                            "pick k among its divisors")
    if not 0 < getattr(args, "train_portion", 0.5) < 1:
        raise UserError(f"--train_portion must lie strictly between 0 and 1, got {args.train_portion}")
    if args.reg_type == "kl" and args.method != "dirichlet":
        raise UserError(f"--reg_type kl is the Dirichlet anchor KL(Dir(beta) || Dir(1)): it exists for "
                        f"--method dirichlet only, not {args.method}; use --reg_type l2")


def search_loaders(args, device, dist=None):
    """(num_classes, weight-half loader, architecture-half loader, plain architecture-half loader)
    of a training set split in two; under torchrun each loader is sharded over the ranks."""
    data = load_dataset(args.dataset, args.data, train=True)
    if args.data_limit:
        data = subset(data, range(min(args.data_limit, len(data))))
    weight_half, arch_half = search_split(len(data), args.train_portion)
    cutout = args.cutout_length if args.cutout else 0
    memory_format = MEMORY_FORMATS[args.memory_format]
    shared = dict(batch_size=args.batch_size, device=device, memory_format=memory_format)
    # An epoch ends with the last partial batch of the weight half (391 steps on a CIFAR half,
    # as the authors' DataLoader). The architecture stream draws full batches (the authors took
    # a fresh shuffled batch every step), or the whole half when it is smaller than a batch.
    loaders = [  # (loader, seed)
        (DeviceLoader.from_imageset(data, weight_half, train=True, seed=args.seed, cutout=cutout,
                                    **shared), args.seed),
        (DeviceLoader.from_imageset(data, arch_half, train=True, seed=args.seed + 1, cutout=cutout,
                                    drop_last=len(arch_half) >= args.batch_size, **shared), args.seed + 1),
        (DeviceLoader.from_imageset(data, arch_half, train=False, seed=args.seed + 2, **shared), args.seed + 2),
    ]
    if dist is not None and dist.distributed:  # --batch_size is the global batch
        return (data.num_classes, *(ShardedLoader(loader, dist.rank, dist.world_size, seed) for loader, seed in loaders))
    return (data.num_classes, *(loader for loader, _ in loaders))


def stage_schedule(args, optimizer, stages, warmup_epochs=0):
    """The per-epoch cosine from --learning_rate to --learning_rate_min over all stages,
    restarted at every stage (the authors') or continued (`--stage_lr`; common/schedule.py)."""
    starts = tuple(itertools.accumulate([0] + [stage.epochs for stage in stages[:-1]]))
    lr_of_epoch = functools.partial(
        STAGE_LR[getattr(args, "stage_lr", "restart")], lr=args.learning_rate, lr_min=args.learning_rate_min,
        total_epochs=sum(stage.epochs for stage in stages), stage_starts=starts, warmup_epochs=warmup_epochs)
    return EpochLR(optimizer, lr_of_epoch)


def build_search(args, stages, device, space, benchmark=None, k=None, masks=None, dist=None):
    """Model, optimizers and loaders; `k` and `masks` rebuild the network of a checkpoint."""
    num_classes, train, arch, valid = (space.build_loaders or search_loaders)(args, device, dist)
    memory_format = MEMORY_FORMATS[args.memory_format]
    model = space.build_network(args, num_classes, k or stages[0].k).to(device, memory_format=memory_format)
    if masks:
        load_masks(model, masks)
        apply_masks(model)
    weight_optimizer = torch.optim.SGD(model.weights(), args.learning_rate,
                                       momentum=args.momentum, weight_decay=args.weight_decay)
    total_epochs = sum(stage.epochs for stage in stages)
    scheduler = (space.build_scheduler or stage_schedule)(args, weight_optimizer, stages)
    tau = None
    if METHODS[args.method].uses_tau:  # SNAS, GDAS: annealed linearly over all epochs
        tau = functools.partial(annealed_tau, epochs=total_epochs, tau_max=args.tau_max, tau_min=args.tau_min)
    architect = Architect(model, lr=args.arch_learning_rate, reg_type=args.reg_type, reg_scale=args.reg_scale,
                          unrolled=args.unrolled, dist=dist, amp=args.amp, grad_clip=args.arch_grad_clip or None)
    return SearchParts(
        model=model, architect=architect, weight_optimizer=weight_optimizer,
        scheduler=scheduler, train_loader=train, arch_loader=arch, valid_loader=valid,
        stages=stages, grad_clip=args.grad_clip, report_freq=args.report_freq, tau=tau,
        benchmark=benchmark, sample_archs=args.sample_archs,
        hessian_freq=args.hessian_freq, hessian_batches=args.hessian_batches, memory_format=memory_format,
        amp=args.amp, batch_size=args.batch_size, seed=args.seed, valid_from_epoch=args.valid_from_epoch)


def prepare_run(args, default_dir, dist=None):
    """(device, checkpoint or None, output folder), seeded: --resume continues in the run's own
    folder with the checkpoint's settings; `default_dir()` names a new run's folder. Under
    torchrun (`dist` distributed) the device is cuda:LOCAL_RANK (or the CPU) and every rank
    takes rank 0's folder name (names carry a time stamp). One line, before anything is
    written, when the global batch does not divide among the ranks or --amp has no bfloat16."""
    if dist is not None:
        global_to_local_batch(args.batch_size, dist)
    device = resolve_device(args.device)
    checkpoint = None
    if args.resume:
        checkpoint = load_checkpoint(args.resume)
        check_same_settings(checkpoint["args"], vars(args), RESUME_MAY_DIFFER)
        out_dir = Path(args.resume) if Path(args.resume).is_dir() else Path(args.resume).parent
    else:
        out_dir = Path(args.output_dir or default_dir())
    if dist is not None and dist.distributed:
        device = dist.device
        out_dir = Path(dist.all_gather_objects(str(out_dir))[0])
    if args.amp:
        check_amp(device)
    seed_everything(args.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device, checkpoint, out_dir


def open_run(out_dir, args, device, dist=None, results=None):
    """The run's log, TensorBoard writer and results file on rank 0; a silent stand-in elsewhere."""
    if dist is None or dist.is_main:
        return Run(out_dir, vars(args), device, results=results)
    return QuietRun(out_dir, results)


def run(args, stages, space, dist=None):
    """A search (plain or progressive) with parsed flags; returns the final genotype.
    `dist` (common.distributed.Dist): data parallel over torchrun's processes."""
    check_args(args, stages)
    device, checkpoint, out_dir = prepare_run(
        args, lambda: default_output_dir(space.name, args.dataset, args.save, args.seed), dist)

    run = open_run(out_dir, args, device, dist, results=checkpoint["results"] if checkpoint else None)
    try:
        run.log.info(f"args {vars(args)}")
        run.results["stages"] = [dataclasses.asdict(stage) for stage in stages]
        benchmark = None
        if space.open_benchmark and (dist is None or dist.is_main):
            benchmark = space.open_benchmark(args, run.log)
        if checkpoint:
            parts = build_search(args, stages, device, space, benchmark, checkpoint["k"], checkpoint["masks"], dist)
            start = restore(parts, checkpoint)
            run.log.info(f"resumed from {out_dir} after epoch {start}")
        else:
            parts, start = build_search(args, stages, device, space, benchmark, dist=dist), 0
        n_weights = sum(p.numel() for p in parts.model.weights())
        run.log.info(f"device {device}; supernet weights {n_weights:,}; {len(parts.train_loader)} steps per epoch")
        if dist is not None and dist.distributed:
            run.log.info(f"data parallel over {dist.world_size} processes, "
                         f"{args.batch_size // dist.world_size} images per process and step")
        genotype = run_search(parts, run, start_epoch=start, stop_after_epoch=args.stop_after_epoch, dist=dist)
        run.log.info(f"found architecture: {genotype}")
        run.log.info(f"log {run.dir / 'log.txt'} | TensorBoard {run.dir / 'tb'} | results {run.results_path}")
        return genotype
    finally:
        run.close()
