"""A tiny NAS-Bench-201 benchmark file with known accuracies, for tests.

`write_tiny_benchmark(path)` builds a handful of architectures with the `nas_201_api`
package's own classes (`ResultsCount`, `ArchResults`) and saves, with `torch.save`, the
same structure the real NAS-Bench-201-v1_*.pth files hold:

    {'meta_archs': [arch_str, ...], 'arch2infos': {index: {'less': ArchResults state dict
     (hp '12'), 'full': ArchResults state dict (hp '200')}}, 'evaluated_indexes': {...},
     'total_archs': n, 'basestr': ...}

The 200-epoch ('full') results cover datasets cifar10-valid (eval sets x-valid, ori-test),
cifar10 (ori-test), cifar100 and ImageNet16-120 (x-valid, x-test, ori-test), two trials
(seeds 777 and 888) each, for 200 epochs. The two trials differ, and the other epochs,
the other eval sets and the 12-epoch ('less') results hold values that differ from the six
metrics, so a query that reads the wrong set, epoch, schedule or a single trial gets a
wrong number. FLOPs and params are numpy float64 scalars, as plain numpy values may be in
the real files.

Import it from tests as `from nb201_fixture import write_tiny_benchmark`.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch

# the benchmark's own classes write the file; where nas-bench-201 is not installed (a bare GPU
# machine), the tests that need it are skipped, not the whole suite stopped at collection
nas_201_api = pytest.importorskip("nas_201_api")
ArchResults, ResultsCount = nas_201_api.ArchResults, nas_201_api.ResultsCount

from common.bench.benchmark import METRICS

# The DrNAS paper's NAS-Bench-201 genotype first.
DRNAS_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
DEFAULT_ARCHS = [
    DRNAS_ARCH,
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
]
DEFAULT_ACCURACIES = {
    # the DrNAS paper's numbers for its genotype
    DEFAULT_ARCHS[0]: dict(zip(METRICS, (91.55, 94.36, 73.49, 73.51, 46.37, 46.34))),
    # best on some metrics, not on others: best() must maximise each metric on its own
    DEFAULT_ARCHS[1]: dict(zip(METRICS, (91.61, 94.12, 72.8, 73.02, 46.77, 47.31))),
    DEFAULT_ARCHS[2]: dict(zip(METRICS, (82.31, 85.6, 51.7, 52.01, 24.4, 23.96))),
    DEFAULT_ARCHS[3]: dict(zip(METRICS, (10.0, 10.0, 1.0, 1.0, 0.83, 0.83))),
    DEFAULT_ARCHS[4]: dict(zip(METRICS, (88.9, 91.72, 66.25, 66.48, 38.1, 38.35))),
}

SEEDS = (777, 888)
SEED_OFFSETS = (-0.25, 0.25)  # trial accuracy = metric + offset: only their mean is the metric
EPOCHS_FULL = 200
EPOCHS_LESS = 12
NUM_CLASSES = {"cifar10-valid": 10, "cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}


# Plausible ranges of the six metrics for made-up accuracies (all below the real optimum).
_DEFAULT_RANGES = ((70.0, 91.0), (73.0, 94.0), (40.0, 73.0), (40.0, 73.0), (15.0, 46.0), (15.0, 46.5))


def default_accuracies(i: int) -> dict[str, float]:
    """Made-up accuracies of the i-th architecture: in range and different for each i."""
    t = (i * 0.6180339887498949) % 1.0
    return {m: round(lo + (hi - lo) * t, 3) for m, (lo, hi) in zip(METRICS, _DEFAULT_RANGES)}


def final_eval_accuracies(acc: dict[str, float]) -> dict[str, dict[str, float]]:
    """dataset -> eval set -> last-epoch accuracy averaged over trials (before the seed offsets)."""
    return {
        "cifar10-valid": {"x-valid": acc["cifar10_valid"], "ori-test": acc["cifar10_test"] - 1.7},
        "cifar10": {"ori-test": acc["cifar10_test"]},
        "cifar100": {"x-valid": acc["cifar100_valid"], "x-test": acc["cifar100_test"],
                     "ori-test": (acc["cifar100_valid"] + acc["cifar100_test"]) / 2 - 0.3},
        "ImageNet16-120": {"x-valid": acc["imagenet16_valid"], "x-test": acc["imagenet16_test"],
                           "ori-test": (acc["imagenet16_valid"] + acc["imagenet16_test"]) / 2 - 0.3},
    }


def trial(arch_index: int, arch_str: str, dataset: str, seed: int, epochs: int,
          finals: dict[str, float], results_count=ResultsCount):
    """One trial (a `results_count`: nas_201_api's class or nats_bench's, same constructor):
    accuracies rise linearly to `finals` at the last epoch."""
    ramp = [(e + 1) / epochs * 0.9 for e in range(epochs - 1)] + [1.0]
    train_acc = min(99.5, max(finals.values()) + 3.0)
    train_accs = OrderedDict((e, train_acc * ramp[e]) for e in range(epochs))
    train_losses = OrderedDict((e, 2.5 * (1.0 - 0.8 * ramp[e])) for e in range(epochs))
    arch_config = {"channel": 16, "num_cells": 5, "arch_str": arch_str, "class_num": NUM_CLASSES[dataset]}
    result = results_count(
        dataset, None, train_accs, train_losses,
        np.float64(1.0 + 0.1 * arch_index), np.float64(100.0 + arch_index),  # params (MB), flop (M)
        arch_config, seed, epochs, [0.01 + 0.001 * arch_index],
    )
    result.update_train_info(train_accs, OrderedDict((e, min(100.0, train_accs[e] + 5)) for e in range(epochs)),
                             train_losses, OrderedDict((e, 12.5) for e in range(epochs)))
    accs, losses, times = {}, {}, {}
    for name, final in finals.items():
        for e in range(epochs):
            key = f"{name}@{e}"
            accs[key] = final * ramp[e]
            losses[key] = 3.0 * (1.0 - 0.7 * ramp[e])
            times[key] = 1.5
    result.update_eval(accs, losses, times)
    return result


def arch_results(index, arch_str, acc, epochs, *, archresults=ArchResults, results_count=ResultsCount,
                 shift=0.0):
    """The results of one architecture on the four datasets, two trials each, whose trial
    mean of the six metrics is `acc` (minus `shift`)."""
    results = archresults(index, arch_str)
    for dataset, finals in final_eval_accuracies(acc).items():
        for seed, offset in zip(SEEDS, SEED_OFFSETS):
            per_seed = {name: value + offset - shift for name, value in finals.items()}
            results.update(dataset, seed, trial(index, arch_str, dataset, seed, epochs, per_seed, results_count))
    return results


def six_accuracies(results, epochs):
    """What a correct query gives: the mean of the trials' last-epoch accuracies."""
    def mean_final(dataset, name):
        return float(np.mean([results.all_results[(dataset, s)].eval_acc1es[f"{name}@{epochs - 1}"] for s in SEEDS]))

    return {
        "cifar10_valid": mean_final("cifar10-valid", "x-valid"),
        "cifar10_test": mean_final("cifar10", "ori-test"),
        "cifar100_valid": mean_final("cifar100", "x-valid"),
        "cifar100_test": mean_final("cifar100", "x-test"),
        "imagenet16_valid": mean_final("ImageNet16-120", "x-valid"),
        "imagenet16_test": mean_final("ImageNet16-120", "x-test"),
    }


def write_tiny_benchmark(path, accuracies: dict[str, dict[str, float]] | None = None,
                         archs: list[str] | None = None, *, epochs: int = EPOCHS_FULL) -> dict:
    """Save a small NAS-Bench-201 benchmark to `path`; return {arch_str: {metric: percent}}.

    `accuracies` maps an architecture string to its six metrics (cifar10_valid,
    cifar10_test, cifar100_valid, cifar100_test, imagenet16_valid, imagenet16_test);
    `archs` lists the architectures (default: the keys of `accuracies`, or five fixed
    architectures, the DrNAS genotype first). Architectures without given accuracies get
    distinct made-up ones. The returned numbers are what a correct 200-epoch query gives:
    the mean of the two trials' last-epoch accuracies, which equals the given value up to
    float rounding (the returned value is the exact one).

    `epochs` is the length of the 200-epoch schedule's per-epoch records (200 as in the
    real files); a smaller number makes a file with many architectures faster to write and
    load (the file's size is about 0.28 MB per architecture at 200 epochs).
    """
    if epochs < 2:
        raise ValueError("write_tiny_benchmark: epochs must be at least 2")
    if archs is None:
        archs = list(accuracies) if accuracies else list(DEFAULT_ARCHS)
    archs = list(archs)
    if len(set(archs)) != len(archs):
        raise ValueError("write_tiny_benchmark: duplicate architecture strings")
    if accuracies is None:
        accuracies = {a: DEFAULT_ACCURACIES[a] for a in archs if a in DEFAULT_ACCURACIES}
    expected, arch2infos = {}, {}
    for index, arch_str in enumerate(archs):
        acc = dict(accuracies.get(arch_str) or default_accuracies(index))
        if set(acc) != set(METRICS):
            raise ValueError(f"write_tiny_benchmark: accuracies of {arch_str} need exactly {METRICS}")
        full = arch_results(index, arch_str, acc, epochs)
        # The 12-epoch schedule: cifar10-valid only (as in v1_0), lower accuracies.
        less = ArchResults(index, arch_str)
        less.update("cifar10-valid", SEEDS[0], trial(
            index, arch_str, "cifar10-valid", SEEDS[0], EPOCHS_LESS,
            {"x-valid": acc["cifar10_valid"] - 20.0, "ori-test": acc["cifar10_test"] - 21.0}))
        arch2infos[index] = {"less": less.state_dict(), "full": full.state_dict()}
        expected[arch_str] = six_accuracies(full, epochs)
    data = {
        "meta_archs": archs,
        "total_archs": len(archs),
        "basestr": "tiny NAS-Bench-201 test fixture",
        "arch2infos": arch2infos,
        "evaluated_indexes": set(range(len(archs))),
    }
    torch.save(data, str(path))
    return expected
