"""A search built from its script's flags: the stages, the checks, the objects and the task.

The space script supplies its registry entry (common/spaces.py), its space's architect
(`<space folder>/architect.py`'s `build`), its loaders factory (common/data/loaders.py's
signature) and, for NAS-Bench-201, its benchmark; everything else is read from the flags
(common/run/flags.py).
"""
import functools
import itertools

import torch

from common.run import launch
from common.nas.cuda_graph import graph_refusal
from common.device import MEMORY_FORMATS
from common.distributed import ONE_PROCESS
from common.errors import UserError
from common.nas.mixing import METHODS
from common.nas.progressive import Stage, arch_warnings, load_masks
from common.run.flags import config_from_flags
from common.run.run_folder import default_output_dir
from common.run.schedule import STAGE_LR, EpochLR
from common.nas.search import SearchConfig, SearchObjects, SearchTask, TauSchedule


def stages_from_flags(args, num_ops):
    """The search's stages: one for a plain search (`--epochs`, `--k`), the progressive schedule
    otherwise (`--ks`, `--num_keeps`, `--train_epochs`, `--arch_start_epoch`)."""
    if not hasattr(args, "ks"):
        return (Stage(args.epochs, args.k, None, args.arch_start_epoch),)
    if len({len(args.ks), len(args.num_keeps), len(args.train_epochs)}) != 1:
        raise UserError(f"--ks {args.ks}, --num_keeps {args.num_keeps} and --train_epochs "
                        f"{args.train_epochs} must list one value per stage each")
    if any(b > a for a, b in zip(args.num_keeps, args.num_keeps[1:])):
        raise UserError(f"--num_keeps {args.num_keeps} must not grow from stage to stage")
    if any(b > a for a, b in zip(args.ks, args.ks[1:])):
        raise UserError(f"--ks {args.ks} must not grow from stage to stage (widening only)")
    if not 1 <= args.num_keeps[-1] <= args.num_keeps[0] <= num_ops:
        raise UserError(f"--num_keeps {args.num_keeps} must lie between 1 and {num_ops}")
    return tuple(Stage(epochs, k, keep, args.arch_start_epoch)
                 for epochs, k, keep in zip(args.train_epochs, args.ks, args.num_keeps))


def check_search_flags(args, stages):
    """The checks that span several flags (each flag alone is checked when parsed)."""
    for stage in stages:
        if args.init_channels % stage.k:
            raise UserError(f"k={stage.k} does not divide --init_channels {args.init_channels}: "
                            "pick k among its divisors")
    if args.reg_type == "kl" and args.method != "dirichlet":
        raise UserError(f"--reg_type kl is the Dirichlet anchor KL(Dir(beta) || Dir(1)): it exists for "
                        f"--method dirichlet only, not {args.method}; use --reg_type l2")


def check_cuda_graph(args, device, dist):
    """--cuda_graph needs a GPU and flags whose step has no host reads (common/nas/cuda_graph.py)."""
    if not args.cuda_graph:
        return
    reason = graph_refusal(args, dist.distributed)
    if reason:
        raise UserError(f"--cuda_graph cannot capture this search: {reason}; leave --cuda_graph out")
    if device.type != "cuda":
        raise UserError(f"--cuda_graph captures the step on a GPU; this run is on {device}: leave it out")


def stage_schedule(args, optimizer, stages, warmup_epochs=0):
    """The per-epoch cosine from --learning_rate to --learning_rate_min over all stages,
    restarted at every stage (the authors') or continued (`--stage_lr`; common/run/schedule.py)."""
    starts = tuple(itertools.accumulate([0] + [stage.epochs for stage in stages[:-1]]))
    lr_of_epoch = functools.partial(
        STAGE_LR[getattr(args, "stage_lr", "restart")], lr=args.learning_rate, lr_min=args.learning_rate_min,
        total_epochs=sum(stage.epochs for stage in stages), stage_starts=starts, warmup_epochs=warmup_epochs)
    return EpochLR(optimizer, lr_of_epoch)


def search_config(args, space, stages):
    tau = None
    if METHODS[args.method].uses_tau:  # SNAS, GDAS: annealed linearly over all epochs
        tau = TauSchedule(sum(stage.epochs for stage in stages), args.tau_max, args.tau_min,
                          args.first_epoch_tau)
    return config_from_flags(SearchConfig, args, space=space.name, stages=tuple(stages), tau=tau,
                             memory_format=MEMORY_FORMATS[args.memory_format],
                             unsampled_ops=args.unsampled_ops if METHODS[args.method].hard else None)


def build_search(args, space, stages, device, *, architect, loaders_factory, dist=ONE_PROCESS, checkpoint=None,
                 benchmark=None, schedule=stage_schedule):
    """The SearchTask of the flags; with a `checkpoint` the network is rebuilt at its k and
    masks (the caller restores the state)."""
    check_cuda_graph(args, device, dist)
    loaders = loaders_factory(args, device, dist)
    memory_format = MEMORY_FORMATS[args.memory_format]
    k = checkpoint["k"] if checkpoint else stages[0].k
    model = space.build(vars(args), num_classes=loaders.num_classes, k=k).to(device, memory_format=memory_format)
    if checkpoint:
        load_masks(model, checkpoint["masks"])
    weight_optimizer = torch.optim.SGD(model.weight_parameters(), args.learning_rate,
                                       momentum=args.momentum, weight_decay=args.weight_decay)
    scheduler = schedule(args, weight_optimizer, stages)
    objects = SearchObjects(model, architect(model, args, dist), weight_optimizer, scheduler, loaders, benchmark)
    return SearchTask(objects, search_config(args, space, stages), dist)


def search(args, space, *, architect, loaders_factory, dist=ONE_PROCESS, open_benchmark=None, schedule=stage_schedule):
    """A search script's body: its parsed flags, its space, its architect builder `(model, args,
    dist) -> Architect`, its loaders factory and (NAS-Bench-201) its benchmark, run by
    common.run.launch; returns the final genotype."""
    stages = stages_from_flags(args, len(space.op_names))
    check_search_flags(args, stages)
    run = launch.prepare(args, lambda: search_folder(args, space, stages), dist)
    run.notes.extend(arch_warnings(stages, args.arch_start_epoch))
    benchmark = open_benchmark(args, run.notes.append) if open_benchmark and dist.is_main else None
    task = build_search(args, space, stages, run.device, architect=architect, loaders_factory=loaders_factory,
                        dist=dist, checkpoint=run.checkpoint, benchmark=benchmark, schedule=schedule)
    return launch.run_task(args, run, task, dist)["genotype"]


def search_folder(args, space, stages):
    """A new search's folder, named as the authors named theirs: experiments/<space folder>/
    <dataset>/<method>-search[-progressive]-<save>-<time>-<seed>[-unrolled]-pc-<k>."""
    kind = f"{args.method}-search" + ("-progressive" if len(stages) > 1 else "")
    suffix = ("-unrolled" if args.unrolled else "") + f"-pc-{stages[0].k}"
    return default_output_dir(space.folder, args.dataset, args.save, args.seed, kind=kind, suffix=suffix)
