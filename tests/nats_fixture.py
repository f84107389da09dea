"""A tiny NATS-Bench topology (tss) benchmark in fast mode, built with the `nats_bench`
package's own classes (`ArchResults`, `ResultsCount`, `pickle_save`), for tests.

`write_tiny_nats(folder)` writes what `NATS-tss-v1_0-3ffb9-simple` holds:

    meta.pickle.pbz2          {'meta_archs': [arch_str, ...]}
    000000.pickle.pbz2, ...   per architecture {'12': ArchResults state dict, '200': ...}

Both schedules cover the four datasets with two trials each, with other accuracies after 12
epochs than after 200, so a query of the wrong schedule gets a wrong number. The cost figures
(params in MB, FLOPs in M, latency) differ per architecture. Architectures listed in
`unevaluated` get no file, as cells a benchmark lacks.
"""
from __future__ import annotations

from pathlib import Path

import pytest

api_utils = pytest.importorskip("nats_bench.api_utils")  # skipped, not a collection error, without it
ArchResults, ResultsCount, pickle_save = api_utils.ArchResults, api_utils.ResultsCount, api_utils.pickle_save

from common.bench.benchmark_nats import COST_DATASETS
from nb201_fixture import DEFAULT_ACCURACIES, DEFAULT_ARCHS, arch_results, default_accuracies, six_accuracies

SHORT_SCHEDULE = 12
SHORT_SHIFT = 20.0  # the 12-epoch accuracies are this much lower


def _costs(index):
    """The cost figures nb201_fixture.trial gives architecture `index`, as the table holds them."""
    params, flops, latency_ms = 1.0 + 0.1 * index, 100.0 + index, (0.01 + 0.001 * index) * 1000.0
    return {f"{name}_{cost}": value for _, name in COST_DATASETS
            for cost, value in (("params_mb", params), ("flops_m", flops), ("latency_ms", latency_ms))}


def write_tiny_nats(folder, archs=None, *, epochs=200, unevaluated=()) -> dict:
    """Write the fast-mode folder; return {arch_str: {figure: value}} of the evaluated cells:
    the six accuracies, the six after 12 epochs (`..._12ep`) and the cost figures."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    archs = list(archs or DEFAULT_ARCHS)
    pickle_save({"meta_archs": archs}, str(folder / "meta.pickle"))
    expected = {}
    for index, arch_str in enumerate(archs):
        if arch_str in unevaluated:
            continue
        acc = dict(DEFAULT_ACCURACIES.get(arch_str) or default_accuracies(index))
        kinds = dict(archresults=ArchResults, results_count=ResultsCount)
        full = arch_results(index, arch_str, acc, epochs, **kinds)
        short = arch_results(index, arch_str, acc, SHORT_SCHEDULE, shift=SHORT_SHIFT, **kinds)
        pickle_save({"12": short.state_dict(), "200": full.state_dict()}, str(folder / f"{index:06d}.pickle"))
        short_figures = {f"{m}_12ep": v for m, v in six_accuracies(short, SHORT_SCHEDULE).items()}
        expected[arch_str] = {**six_accuracies(full, epochs), **short_figures, **_costs(index)}
    return expected
