"""The tables of search runs (scripts/aggregate.py): the paper's three NAS-Bench-201 tables and,
for the DARTS space, the searches' cost. Each returns (title, Markdown table, notes), or None
without runs for it.

(a) NAS-Bench-201: one row per method and search dataset, the six benchmark accuracies of the
    final cell. Runs with the paper's plain setting only: k = 1, one stage, anchor l2 1e-3.
(b) Partial channels: one row per k (and "progressive"); test accuracy on the searched
    dataset and peak memory. Shown when some run has k > 1 or several stages.
(c) Anchor ablation: one row per lambda (`--reg_scale`, and `--reg_type` when not l2). Shown
    when some run has another anchor; runs with k = 1 and one stage only.
(e) DARTS-space searches: one row per space, dataset and method; search cost in GPU-days
    (wall time x processes), the supernet's final validation accuracy, peak memory.

Accuracies from a stand-in benchmark (scripts/standin_benchmark.py) are made up: such runs are
rows of their own, and the title of every table holding one says so.
"""
from collections import defaultdict

from common.run.results import METRIC_TITLES, METRICS
from reports.run_records import (DEFAULT_REG_TYPE, dataset_of, default_anchor, epochs_of, is_nb201, is_progressive,
                                is_search, is_standin, k_of, method_of, plain_channels, reg_of, run_stages)
from reports.table_format import (STD_NOTE, dataset_key, dataset_name, fmt_cell, fmt_mean, fmt_number, labelled,
                                 markdown_table, method_key, method_name, split_settings)

NB201_COLUMNS = tuple((METRIC_TITLES[name], name) for name in METRICS)
TEST_METRIC = {"cifar10": "cifar10_test", "cifar100": "cifar100_test", "imagenet16-120": "imagenet16_test"}
KEYED = {"a": {"method", "dataset"},
         "b": {"method", "dataset", "k", "ks", "num_keeps", "train_epochs", "arch_start_epoch"},
         "c": {"method", "dataset", "reg_type", "reg_scale"},
         "e": {"method", "dataset"}}
STANDIN_TITLE = " — STAND-IN benchmark: made-up accuracies, not NAS-Bench-201"
STANDIN_NOTE = ("Rows marked benchmark=stand-in (the whole table when the title says so) read a stand-in "
                "benchmark written by scripts/standin_benchmark.py: their accuracies are made up.")


def benchmark_kind(run):
    """A pseudo-flag that keeps a stand-in's runs apart from those of a benchmark file."""
    if is_standin(run):
        return (("benchmark", "stand-in"),)
    return (("benchmark", "file"),) if run.get("benchmark_source") else ()


def marked(title, runs, notes):
    """The title and notes of a table, marked when any of its runs read a stand-in benchmark."""
    if any(is_standin(run) for run in runs):
        return title + STANDIN_TITLE, notes + [STANDIN_NOTE]
    return title, notes


def metric(run, name):
    bench = run.get("benchmark")
    value = bench.get(name) if isinstance(bench, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def test_accuracy(run):
    name = TEST_METRIC.get(dataset_of(run))
    return metric(run, name) if name else None


def stage_label(run):
    stages = run_stages(run)
    ks = "→".join(str(s.get("k", "?")) for s in stages)
    keep = "→".join(str(s.get("num_keep", "?")) for s in stages)
    return f"progressive (k {ks}, ops {keep})"


def device_of(run):
    versions = run.get("versions") if isinstance(run.get("versions"), dict) else {}
    return str(versions.get("cuda_device") or "CPU")


def nb201_table(runs):
    chosen = [r for r in runs if is_nb201(r) and plain_channels(r) and default_anchor(r)]
    if not chosen:
        return None
    groups = defaultdict(list)
    for run in chosen:
        groups[(method_of(run), dataset_of(run))].append(run)
    rows = []
    splits = split_settings(groups, KEYED["a"], benchmark_kind)
    for (method, dataset), label, group in sorted(splits, key=lambda s: (method_key(s[0][0]), dataset_key(s[0][1]), s[1])):
        rows.append([labelled(method_name(method), label), dataset_name(dataset)]
                    + [fmt_cell([metric(r, name) for r in group]) for _, name in NB201_COLUMNS])
    left_out = sum(1 for r in runs if is_nb201(r)) - len(chosen)
    notes = [STD_NOTE,
             "Accuracy (%) of the final (discretised) architecture in the benchmark (200-epoch training): "
             "CIFAR-10 valid = 'cifar10-valid' x-valid, CIFAR-10 test = 'cifar10' ori-test; CIFAR-100 and "
             "ImageNet16-120 x-valid and x-test."]
    if left_out:
        notes.append(f"{left_out} run(s) with k > 1, several stages or a non-default anchor are "
                     "left out here (see the tables below).")
    title, notes = marked("(a) NAS-Bench-201: accuracy of the searched cell", chosen, notes)
    return title, markdown_table(["method", "search dataset"] + [t for t, _ in NB201_COLUMNS], rows), notes


def partial_channel_table(runs):
    chosen = [r for r in runs if is_nb201(r) and default_anchor(r)]
    if not any(not plain_channels(r) for r in chosen):
        return None
    groups = defaultdict(list)
    for run in chosen:
        row_setting = (1, stage_label(run)) if is_progressive(run) else (0, f"k={k_of(run)}", k_of(run))
        groups[(method_of(run), dataset_of(run), row_setting)].append(run)

    def order(key):
        method, dataset, row_setting = key
        return (dataset_key(dataset), method_key(method), row_setting)

    rows = []
    for (method, dataset, row_setting), label, group in sorted(split_settings(groups, KEYED["b"], benchmark_kind),
                                                               key=lambda s: (order(s[0]), s[1])):
        rows.append([row_setting[1], labelled(method_name(method), label), dataset_name(dataset),
                     fmt_cell([test_accuracy(r) for r in group]), fmt_mean([r.get("peak_memory_mb") for r in group])])
    devices = sorted({device_of(r) for r in chosen})
    notes = [STD_NOTE,
             "Test accuracy (%) in the benchmark on the search dataset (CIFAR-10: 'cifar10' ori-test; "
             "CIFAR-100, ImageNet16-120: x-test).",
             "Peak memory: CUDA max allocated on a GPU, the process's peak resident set size "
             f"on a CPU; runs on: {', '.join(devices)}."]
    title, notes = marked("(b) Partial channels and progressive learning", chosen, notes)
    return title, markdown_table(["setting", "method", "search dataset", "test accuracy (%)",
                                  "peak memory (MB), mean"], rows), notes


def anchor_table(runs):
    chosen = [r for r in runs if is_nb201(r) and plain_channels(r)]
    if all(default_anchor(r) for r in chosen):
        return None
    groups = defaultdict(list)
    for run in chosen:
        groups[(method_of(run), dataset_of(run), reg_of(run))].append(run)

    def order(key):
        method, dataset, (reg_type, scale) = key
        return (dataset_key(dataset), method_key(method), reg_type != DEFAULT_REG_TYPE, reg_type, scale)

    rows = []
    for key, label, group in sorted(split_settings(groups, KEYED["c"], benchmark_kind),
                                    key=lambda s: (order(s[0]), s[1])):
        method, dataset, (reg_type, scale) = key
        anchor = fmt_number(scale) + ("" if reg_type == DEFAULT_REG_TYPE else f" ({reg_type})")
        rows.append([anchor, labelled(method_name(method), label), dataset_name(dataset),
                     fmt_cell([test_accuracy(r) for r in group])])
    notes = [STD_NOTE,
             "λ = --reg_scale: Adam weight decay on alpha for --reg_type l2 (the default), the "
             "weight of the KL term for --reg_type kl. Test accuracy (%) in the benchmark on the search dataset."]
    title, notes = marked("(c) Anchor regulariser ablation", chosen, notes)
    return title, markdown_table(["λ (reg_scale)", "method", "search dataset", "test accuracy (%)"], rows), notes


def gpu_days(run):
    """The run's own cost: its wall time x its processes (one without torchrun), in days."""
    seconds = run.get("wall_time_s")
    if not isinstance(seconds, (int, float)):
        return None
    processes = run.get("processes") if isinstance(run.get("processes"), int) else 1
    return seconds * processes / 86400


def final_valid_accuracy(run):
    values = [e.get("valid_acc") for e in epochs_of(run) if isinstance(e.get("valid_acc"), (int, float))]
    return values[-1] if values else None


def darts_search_table(runs):
    """(e): the searches of the spaces without a benchmark (the DARTS space, on CIFAR or ImageNet)."""
    chosen = [r for r in runs if is_search(r) and not is_nb201(r)]
    if not chosen:
        return None
    groups = defaultdict(list)
    for run in chosen:
        groups[(str(run.get("space")), method_of(run), dataset_of(run))].append(run)
    rows = []
    for (space, method, dataset), label, group in sorted(split_settings(groups, KEYED["e"]),
                                                         key=lambda s: (s[0][0], dataset_key(s[0][2]), s[1])):
        rows.append([labelled(method_name(method), label), space, dataset_name(dataset), str(len(group)),
                     fmt_cell([gpu_days(r) for r in group], 3), fmt_cell([final_valid_accuracy(r) for r in group]),
                     fmt_mean([r.get("peak_memory_mb") for r in group])])
    notes = [STD_NOTE,
             "Search cost: each search's own wall time (results.json `wall_time_s`) times its processes, "
             "in days; a run that shared its GPU with others (run_table.py --per_gpu above 1) counts its "
             "whole wall time, so its cost reads high.",
             "Validation accuracy of the supernet at the last epoch that evaluated it (%). The cells found "
             "are trained from scratch in the evaluation table."]
    return ("(e) DARTS-space searches: cost", markdown_table(
        ["method", "space", "search dataset", "searches", "search cost (GPU-days)", "supernet valid accuracy (%)",
         "peak memory (MB), mean"], rows), notes)
