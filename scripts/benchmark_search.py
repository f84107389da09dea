"""Time the search step (architecture step + weight step) and measure its peak memory.

    python scripts/benchmark_search.py --space 201 --k 1 --batch_size 64 --device cpu
    python scripts/benchmark_search.py --space 201 --compare        # one row per option set
    python scripts/benchmark_search.py --space 201 --memory_table   # the paper's k table
    python scripts/benchmark_search.py --space imagenet --batch_size 8 --loader_data DIR
    python scripts/benchmark_search.py --space 201 --device cuda --concurrent 4   # 4 searches on one GPU

Runs `--warmup` steps, then times `--steps` steps of `common.nas.search.search_step` on random
batches of the space's input shape (data loading is not part of the step) and prints JSON:
median and mean step time, images per second (weight batch / median step) and peak memory:
CUDA max allocated on a GPU; on a CPU the process's peak resident set size, beside the
resident size after set-up so the step's own share can be read off.

Spaces: 201 (NAS-Bench-201, CIFAR 32x32), darts (the DARTS-space CIFAR search network) and
imagenet (the direct ImageNet search network: C 48, 14 layers, 224x224, 1000 classes).
`--reference` runs the mixed ops literally (common.nas.fused.reference_computation: the
authors' computation); `--compare` runs every option set in its own process and prints a
Markdown table. `--loader_data` (a sampled ImageNet folder, train/ and val/) adds the
images per second of the search loader for each backend (common/data/imagenet_loader.py). `--concurrent N`
runs N copies at once on the device, each in its own process, timing their steps together
after a barrier, and prints their total images/s (scripts/bench_processes.py).
"""
import argparse
import contextlib
import json
import platform
import resource
import statistics
import sys
import time

import torch

from common.nas.architect import Architect
from bench_processes import run_concurrently, run_rows, wait_at_barrier
from common.nas.cuda_graph import StepGraph
from common.device import MEMORY_FORMATS, check_amp, configure_backends, memory_mb, resolve_device, seed_everything
from common.errors import ArgumentParser, UserError, exit_on_user_error
from common.nas.fused import reference_computation
from common.nas.progressive import load_masks
from common.nas.search import search_step
from common.spaces import SPACES


def network_flags(args):
    """The network flags of the chosen space, ours where given, the registry's defaults otherwise."""
    return SPACES[args.space].network_flags({"init_channels": args.init_channels, "num_cells": args.num_cells,
                                             "layers": args.layers, "method": args.method})


def build(args, device, k):
    """The space's search network (pruned to --num_keep ops per edge), its architect and SGD."""
    space = SPACES[args.space]
    model = space.build(network_flags(args), num_classes=space.num_classes, k=k)
    model = model.to(device, memory_format=MEMORY_FORMATS[args.memory_format])
    if args.num_keep:  # a later progressive stage; kept: the last (costliest) ops of every edge
        num_ops = len(space.op_names)
        load_masks(model, {name: [list(range(num_ops - args.num_keep, num_ops))] * arch.num_edges
                           for name, arch in model.arch_distributions().items()})
    architect = Architect(model, lr=3e-4, reg_scale=1e-3, unrolled=args.unrolled, amp=args.amp,
                          capturable=args.cuda_graph)
    optimizer = torch.optim.SGD(model.weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    return model, architect, optimizer


def build_parser():
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="201", choices=sorted(SPACES), help="a search space of common/spaces.py")
    p.add_argument("--k", type=int, default=None, help="default: the space's first stage (1 for 201, 6 for darts, imagenet)")
    p.add_argument("--num_keep", type=int, default=None,
                   help="ops kept per edge (a progressive stage after pruning; default: all)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--init_channels", type=int, default=None, help="default: the space's (16, 36, 48)")
    p.add_argument("--num_cells", type=int, default=None, help="N of the 201 space (default 5)")
    p.add_argument("--layers", type=int, default=None, help="cells of the DARTS space (default 20; imagenet 14)")
    p.add_argument("--method", default="dirichlet")
    p.add_argument("--unrolled", action="store_true")
    p.add_argument("--memory_format", default="channels_last", choices=sorted(MEMORY_FORMATS))
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast, as the search's --amp")
    p.add_argument("--tf32", action="store_true", help="TF32 convolutions and matrix products, as the search's --tf32")
    p.add_argument("--cuda_graph", action="store_true", help="the step replayed from a CUDA graph, as the search's")
    p.add_argument("--reference", action="store_true",
                   help="the mixed ops computed literally, as the authors' code does (no fast paths)")
    p.add_argument("--loader_data", default=None, metavar="DIR",
                   help="a sampled ImageNet folder: also time the search loader's backends on it")
    p.add_argument("--loader_batches", type=int, default=10, help="batches timed per loader backend")
    p.add_argument("--workers", type=int, default=2, help="loader worker processes")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory_table", action="store_true",
                   help="a table, each row in its own process, as Markdown: for 201, k = 1, 2, 4, 8 "
                        "and the progressive second stage (k=2, 3 ops); for darts and imagenet, the two stages")
    p.add_argument("--hessian_batches", type=int, default=0,
                   help="also time one sharpness computation (--hessian_freq's) over N batches")
    p.add_argument("--epoch_steps", type=int, default=391,
                   help="steps per search epoch, to state the sharpness cost as a share of an epoch "
                        "(391: a CIFAR half at batch 64)")
    p.add_argument("--compare", action="store_true",
                   help="a table, each option set in its own process: the authors' computation, each "
                        "optimisation alone, all of them (the default), and --amp")
    p.add_argument("--concurrent", type=int, default=None, metavar="N",
                   help="N copies at once on the device, timed together: their total images/s")
    p.add_argument("--barrier", default=None, help=argparse.SUPPRESS)  # where --concurrent's copies meet
    p.add_argument("--barrier_count", type=int, default=1, help=argparse.SUPPRESS)
    return p


# (label, extra flags, the paper's GPU memory in MB or None) per space: for NAS-Bench-201 the
# paper's partial-channel table (CIFAR-10, batch 64); for the DARTS space the two stages of
# the progressive CIFAR search
MEMORY_ROWS = {
    "201": [("k=1", ["--k", "1"], 2437), ("k=2", ["--k", "2"], 1583), ("k=4", ["--k", "4"], 1159),
            ("k=8", ["--k", "8"], 949), ("progressive, stage 2 (k=2, 3 ops)", ["--k", "2", "--num_keep", "3"], 949)],
    "darts": [("stage 1 (k=6, 7 ops)", ["--k", "6"], None),
              ("stage 2, widened (k=4, 4 ops)", ["--k", "4", "--num_keep", "4"], None)],
    "imagenet": [("stage 1 (k=6, 7 ops)", ["--k", "6"], None),
                 ("stage 2, widened (k=3, 4 ops)", ["--k", "3", "--num_keep", "4"], None)],
}

# (label, flags) of --compare: from the authors' computation to everything this code does
OPTION_SETS = [
    ("literal mixed ops, contiguous (the authors' computation)", ["--reference", "--memory_format", "contiguous"]),
    ("literal mixed ops, channels_last", ["--reference", "--memory_format", "channels_last"]),
    ("fast mixed ops, contiguous", ["--memory_format", "contiguous"]),
    ("fast mixed ops, channels_last (the default)", ["--memory_format", "channels_last"]),
    ("default + --amp (bfloat16)", ["--memory_format", "channels_last", "--amp"]),
]


def memory_table(argv):
    space = build_parser().parse_args([a for a in argv if a != "--memory_table"]).space
    run_rows(__file__, argv, "--memory_table", MEMORY_ROWS[space], paper_column=space == "201")


def compare(argv):
    run_rows(__file__, argv, "--compare", [(label, flags, None) for label, flags in OPTION_SETS], same_k=True)


def loader_speed(args, device):
    """Images per second of the ImageNet search loader (its training half), per backend."""
    from common.data.device_loader import loader_images_per_second
    from common.data.imagenet_loader import streamed_search_loaders

    speeds = {}
    for backend in ("workers", "decode"):
        loaders = streamed_search_loaders(args.loader_data, args.batch_size, device, args.seed, workers=args.workers,
                                        backend=backend, memory_format=MEMORY_FORMATS[args.memory_format])
        speeds[backend] = loader_images_per_second(loaders.train, args.loader_batches)
    return speeds


def hessian_cost(model, batches, median_step, epoch_steps, device):
    """Time one `--hessian_freq` computation (Lanczos at the expected mixing weights) over
    `batches`, and its share of a search epoch of `epoch_steps` steps at the median step."""
    from common.nas.hessian import arch_hessian_eigenvalues

    synchronize(device)
    start = time.perf_counter()
    values = arch_hessian_eigenvalues(model, batches, weights="mean")
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"hessian_batches": len(batches), "hessian_products": values.products, "hessian_s": seconds,
            "hessian_s_per_product": seconds / values.products,
            "hessian_share_of_epoch": seconds / (epoch_steps * median_step)}


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_batches(args, space, device, count=4):
    """(weight batch, architecture batch) pairs of random images of the space's input shape."""
    g = torch.Generator().manual_seed(args.seed)

    def batch():
        x = torch.randn(args.batch_size, *space.input_shape, generator=g).to(device)
        x = x.contiguous(memory_format=MEMORY_FORMATS[args.memory_format])
        return x, torch.randint(0, space.num_classes, (args.batch_size,), generator=g).to(device)

    return [(batch(), batch()) for _ in range(count)]


def step_times(args, model, architect, optimizer, batches, device):
    """The seconds of each timed step (after the untimed warm-up steps; with --cuda_graph the
    graph's own warm-up and capture come first, untimed) and the timed window (start, end)."""
    def step(x, y, arch_x, arch_y):
        return search_step(model, architect, optimizer, (x, y), (arch_x, arch_y), update_arch=True, grad_clip=5.0,
                           amp=args.amp)

    graph = StepGraph() if args.cuda_graph else None
    warmup = args.warmup + (graph.warmup_steps + 1 if graph else 0)
    times, window = [], [None, None]
    with reference_computation() if args.reference else contextlib.nullcontext():
        for index in range(warmup + args.steps):
            if index == warmup:
                if args.barrier:  # --concurrent: the copies time their steps together
                    wait_at_barrier(args.barrier, args.barrier_count)
                window[0] = time.time()
            tensors = (*batches[index % len(batches)][0], *batches[index % len(batches)][1])
            synchronize(device)
            start = time.perf_counter()
            if graph is None:
                step(*tensors)
            else:
                graph(optimizer.param_groups[0]["lr"], tensors, step)
            synchronize(device)
            if index >= warmup:
                times.append(time.perf_counter() - start)
    window[1] = time.time()
    return times, window


def report_of(args, k, model, times, device, setup_rss):
    median = statistics.median(times)
    report = {
        "space": args.space, "k": k, "num_keep": args.num_keep, "batch_size": args.batch_size,
        **network_flags(args), "unrolled": args.unrolled,
        "memory_format": args.memory_format, "amp": args.amp, "reference": args.reference,
        "device": str(device), "threads": torch.get_num_threads(),
        "steps": args.steps, "median_step_s": median, "mean_step_s": statistics.fmean(times),
        "images_per_s": args.batch_size / median,
        "weights": sum(p.numel() for p in model.weight_parameters()),
        "torch": str(torch.__version__), "cpu": platform.processor() or platform.machine(),
    }
    if device.type == "cuda":
        report["memory_mb"] = memory_mb(device)  # allocated, reserved, device used (context included)
        report["peak_memory_mb"] = report["memory_mb"]["allocated"]
        report["gpu"] = torch.cuda.get_device_name(device)
        report.update(tf32=args.tf32, cuda_graph=args.cuda_graph)
    else:
        report["peak_memory_mb"] = rss_mb()
        report["setup_rss_mb"] = setup_rss
    return report


@exit_on_user_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.memory_table:
        return memory_table(sys.argv[1:] if argv is None else list(argv))
    if args.compare:
        return compare(sys.argv[1:] if argv is None else list(argv))
    if args.concurrent:
        report = run_concurrently(__file__, sys.argv[1:] if argv is None else list(argv), args.concurrent)
        json.dump(report, sys.stdout, indent=1)
        return report
    space, device = SPACES[args.space], resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    configure_backends(device, tf32=args.tf32)  # what runs set: cuDNN autotuning on a GPU
    k = args.k or space.k
    if args.amp:
        check_amp(device)
    if network_flags(args)["init_channels"] % k:
        raise UserError(f"--k {k} does not divide --init_channels {network_flags(args)['init_channels']}")
    model, architect, optimizer = build(args, device, k)
    batches = random_batches(args, space, device)
    setup_rss = rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, (window_start, window_end) = step_times(args, model, architect, optimizer, batches, device)
    report = report_of(args, k, model, times, device, setup_rss)
    report.update(window_start=window_start, window_end=window_end)  # wall clock, for --concurrent
    if args.loader_data:
        report["loader_images_per_s"] = loader_speed(args, device)
    if args.hessian_batches:
        hessian_batches = [train for train, _ in batches][:args.hessian_batches]
        report.update(hessian_cost(model, hessian_batches, report["median_step_s"], args.epoch_steps, device))
    json.dump(report, sys.stdout, indent=1)
    print()
    return report


if __name__ == "__main__":
    main()
