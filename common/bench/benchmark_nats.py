"""NATS-Bench's topology search space (tss): the NAS-Bench-201 cells again (the same 15,625
cells and op names), read through the `nats_bench` package's own API.

Accepted: the fast-mode directory `NATS-tss-v1_0-3ffb9-simple` (its `meta.pickle.pbz2` and one
`<index>.pickle.pbz2` per architecture), or the single archive `NATS-tss-v1_0-3ffb9.pickle.pbz2`.
Per architecture the table holds the six 200-epoch accuracies (the same queries as for
NAS-Bench-201), the same six after the 12-epoch schedule (`..._12ep`), and the cost figures of
the benchmark (parameters in MB, FLOPs in M, latency in ms) on CIFAR-10, CIFAR-100 and
ImageNet16-120.

Every file nats_bench unpickles goes through the allow-list (common/data/safe_pickle.py): its own
`pickle_load` is swapped for the safe one while the table is built, so a crafted archive is
refused in one line and runs nothing.
"""
from __future__ import annotations

import bz2
import contextlib
from pathlib import Path

from common.data import safe_pickle
from common.bench.benchmark_nb201 import accuracies
from common.errors import UserError, one_line
from common.run.results import METRICS

NAME = "NATS-Bench"
KIND = "nats-tss"
ARCHIVE = "NATS-tss-v1_0-3ffb9"
META = "meta.pickle.pbz2"
HINT = f"NATS-Bench's topology folder {ARCHIVE}-simple (fast mode) or archive {ARCHIVE}.pickle.pbz2"
ADVICE = f"pass {HINT} with --api_path"
COST_DATASETS = (("cifar10", "cifar10"), ("cifar100", "cifar100"), ("ImageNet16-120", "imagenet16"))
COSTS = (("params", "params_mb"), ("flops", "flops_m"), ("latency", "latency_ms"))
TABLE_METRICS = (list(METRICS) + [f"{m}_12ep" for m in METRICS]
                + [f"{name}_{cost}" for _, name in COST_DATASETS for _, cost in COSTS])


def recognise(path):
    """A NATS-Bench tss fast-mode folder (it holds meta.pickle.pbz2), or a bzip2 archive
    (named .pickle.pbz2 or starting with bzip2's magic); a size-space one is refused."""
    path = Path(path)
    if "sss" in path.name.lower() and "nats" in path.name.lower():
        raise UserError(f"{path} is NATS-Bench's size search space (sss), not the NAS-Bench-201 cells: {ADVICE}")
    if path.is_dir():
        return (path / META).is_file()
    if path.name.endswith(".pickle.pbz2"):
        return True
    with open(path, "rb") as fh:
        return fh.read(3) == b"BZh"


def safe_load(file_path, ext=".pbz2"):
    """nats_bench's pickle_load, through the allow-list."""
    file_path = str(file_path)
    path = file_path if Path(file_path).is_file() else file_path + ext
    try:
        with bz2.BZ2File(path, "rb") as handle:
            return safe_pickle.load(handle)
    except safe_pickle.UnsafeGlobal as err:
        raise safe_pickle.refusal(path, "NATS-Bench", err) from None


@contextlib.contextmanager
def safe_nats():
    """nats_bench, with every unpickling it does going through `safe_load`."""
    import nats_bench.api_topology as topology
    import nats_bench.api_utils as utils

    saved = utils.pickle_load, topology.pickle_load
    utils.pickle_load = topology.pickle_load = safe_load
    try:
        yield topology
    finally:
        utils.pickle_load, topology.pickle_load = saved


def costs(api, index):
    row = {}
    for dataset, name in COST_DATASETS:
        try:
            info = api.get_cost_info(index, dataset, hp="200")
        except (KeyError, ValueError, IndexError, AssertionError, TypeError):
            info = {}
        for key, cost in COSTS:
            value = info.get(key)
            if value is not None and key == "latency":
                value *= 1000.0  # seconds -> ms
            row[f"{name}_{cost}"] = None if value is None else float(value)
    return row


def build(path, log):
    """{arch string: TABLE_METRICS} of a NATS-Bench tss folder or archive."""
    path = Path(path)
    with safe_nats() as topology:
        try:
            if path.is_dir():
                api = topology.NATStopology(str(path), fast_mode=True, verbose=False)
            else:
                api = topology.NATStopology(safe_load(path), fast_mode=False, verbose=False)
        except UserError:
            raise
        except Exception as err:  # a damaged or foreign file
            raise UserError(f"{path} does not load as NATS-Bench (tss) ({type(err).__name__}: "
                            f"{one_line(err)[:120]}): {ADVICE}") from None
        table = {}
        for index, arch_str in enumerate(list(api.meta_archs)):
            row = {**accuracies(api, index), **accuracies(api, index, hp="12", suffix="_12ep"), **costs(api, index)}
            api.arch2infos_dict.pop(index, None)  # one architecture in memory at a time
            if any(row[m] is not None for m in METRICS):
                table[arch_str] = [row[m] for m in TABLE_METRICS]
    log(f"NATS-Bench: {len(table)} of {len(api.meta_archs)} architectures have results")
    return table
