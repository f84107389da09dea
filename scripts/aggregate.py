"""Turn search runs' results.json files into the paper's NAS-Bench-201 tables (Markdown).

    python scripts/aggregate.py experiments/nb201_table --recursive [--out table.md]
    python scripts/aggregate.py RUN_DIR [RUN_DIR ...]

Reads only the final `benchmark`, `args`, `peak_memory_mb`, `stages` (and `finished`)
fields of every run and prints up to three tables, each only when there are runs for it:

(a) NAS-Bench-201 table: one row per method and search dataset; CIFAR-10, CIFAR-100 and
    ImageNet16-120 validation and test accuracy of the final architecture, mean ± std
    over the runs (seeds). Runs with the paper's plain setting only: k = 1, one stage,
    anchor `--reg_type l2 --reg_scale 1e-3`.
(b) Partial channels: one row per k (and "progressive" for runs with several stages);
    test accuracy on the searched dataset, mean ± std, and peak memory (MB), mean.
    Shown when some run has k > 1 or several stages; runs with the default anchor only.
(c) Anchor ablation: one row per lambda (`--reg_scale`, and `--reg_type` when it is not
    l2); test accuracy on the searched dataset. Shown when some run has a non-default
    anchor; runs with k = 1 and one stage only.

Every cell reads `mean ± std (n=N)`: std is the population standard deviation (ddof=0,
the paper's `± 0.00` for identical results), N the number of runs with a value. Only runs
that differ in the seed (and in where they ran) are pooled: runs of a row whose other flags
differ are split into rows of their own, labelled with the flags that tell them apart. Only
runs of a space with a benchmark (common/spaces.py; the results' `space` entry) count.
Unfinished runs (`finished` not true) are left out with a note on stderr, unless
`--include_unfinished`.
"""
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from common.errors import ArgumentParser, UserError, exit_on_user_error
from common.results import METHOD_TITLES, METRIC_TITLES, METRICS, RUN_PLUMBING
from common.run_records import (DEFAULT_REG_TYPE, dataset_of, default_anchor, is_nb201, is_progressive, k_of, load_runs,
                                method_of, plain_channels, reg_of, run_stages)

METHOD_ORDER = tuple(METHOD_TITLES)  # the paper's rows
DATASET_ORDER = ("cifar10", "cifar100", "imagenet16-120", "svhn")
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet16-120": "ImageNet16-120",
                 "svhn": "SVHN"}
# (column title, benchmark metric) of table (a), in the paper's order.
NB201_COLUMNS = tuple((METRIC_TITLES[name], name) for name in METRICS)
# The benchmark's test metric of a search dataset (tables b and c).
TEST_METRIC = {"cifar10": "cifar10_test", "cifar100": "cifar100_test",
               "imagenet16-120": "imagenet16_test"}
STD_NOTE = ("mean ± std over the runs (seeds); std is the population standard deviation "
            "(ddof=0), so identical results read ± 0.00; n = runs with a value in that cell.")


# ----------------------------------------------------------------------------- names

def method_name(method):
    return METHOD_TITLES.get(method, method)


def dataset_name(dataset):
    return DATASET_NAMES.get(dataset, dataset)


# Flags a table's rows already tell apart (the row key), beside the seed and the run plumbing.
KEYED = {"a": {"method", "dataset"},
         "b": {"method", "dataset", "k", "ks", "num_keeps", "train_epochs", "arch_start_epoch"},
         "c": {"method", "dataset", "reg_type", "reg_scale"}}


def setting(run, keyed):
    """The run's flags apart from the seed, the run plumbing and the row key, as a hashable value."""
    ignored = RUN_PLUMBING | keyed | {"seed"}
    return tuple(sorted((key, repr(value)) for key, value in run["args"].items() if key not in ignored))


def split_settings(groups, keyed):
    """{key: runs} -> [(key, label, runs)]: the runs of a key split by their other flags; the
    label names the flags that differ between the splits of the key ('' when there is one)."""
    out = []
    for key, runs in groups.items():
        splits = defaultdict(list)
        for run in runs:
            splits[setting(run, keyed)].append(run)
        differing = sorted({name for s in splits for name, value in s}
                           - {name for name, value in set.intersection(*(set(s) for s in splits))})
        for settings, group in splits.items():
            values = dict(settings)
            label = ", ".join(f"{name}={values.get(name, '-')}" for name in differing)
            out.append((key, label, group))
    return out


def labelled(name, label):
    return f"{name} ({label})" if label else name


def metric(run, name):
    bench = run.get("benchmark")
    if not isinstance(bench, dict):
        return None
    value = bench.get(name)
    return float(value) if isinstance(value, (int, float)) else None


def test_accuracy(run):
    name = TEST_METRIC.get(dataset_of(run))
    return metric(run, name) if name else None


def method_key(method):
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else -1, method)


def dataset_key(dataset):
    return (DATASET_ORDER.index(dataset) if dataset in DATASET_ORDER else len(DATASET_ORDER), dataset)


def fmt_number(x):
    return f"{x:g}"


def stage_label(run):
    stages = run_stages(run)
    ks = "→".join(str(s.get("k", "?")) for s in stages)
    keep = "→".join(str(s.get("num_keep", "?")) for s in stages)
    return f"progressive (k {ks}, ops {keep})"


# ----------------------------------------------------------------------------- statistics

def summarize(values):
    """(mean, population std, n) of the non-missing values; None when there are none."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=0)), len(values)


def fmt_cell(values, digits=2, with_std=True):
    """`mean ± std (n=N)` of the values (`mean (n=N)` without std); "—" when there are none."""
    stats = summarize(values)
    if stats is None:
        return "—"
    mean, std, n = stats
    spread = f" ± {std:.{digits}f}" if with_std else ""
    return f"{mean:.{digits}f}{spread} (n={n})"


def fmt_mean(values, digits=0):
    return fmt_cell(values, digits, with_std=False)


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- tables

def nb201_table(runs):
    """Table (a), or None without runs for it."""
    chosen = [r for r in runs if is_nb201(r) and plain_channels(r) and default_anchor(r)]
    if not chosen:
        return None
    groups = defaultdict(list)
    for run in chosen:
        groups[(method_of(run), dataset_of(run))].append(run)
    rows = []
    splits = split_settings(groups, KEYED["a"])
    for (method, dataset), label, group in sorted(splits, key=lambda s: (method_key(s[0][0]), dataset_key(s[0][1]), s[1])):
        rows.append([labelled(method_name(method), label), dataset_name(dataset)]
                    + [fmt_cell([metric(r, name) for r in group]) for _, name in NB201_COLUMNS])
    left_out = sum(1 for r in runs if is_nb201(r)) - len(chosen)
    notes = [STD_NOTE,
             "Accuracy (%) of the final (discretised) architecture in NAS-Bench-201 (200-epoch "
             "training): CIFAR-10 valid = 'cifar10-valid' x-valid, CIFAR-10 test = 'cifar10' "
             "ori-test; CIFAR-100 and ImageNet16-120 x-valid and x-test."]
    if left_out:
        notes.append(f"{left_out} run(s) with k > 1, several stages or a non-default anchor are "
                     "left out here (see the tables below).")
    return ("(a) NAS-Bench-201: accuracy of the searched cell",
            markdown_table(["method", "search dataset"] + [title for title, _ in NB201_COLUMNS], rows),
            notes)


def partial_channel_table(runs):
    """Table (b), or None when no run has k > 1 or several stages."""
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
    for (method, dataset, row_setting), label, group in sorted(split_settings(groups, KEYED["b"]),
                                                               key=lambda s: (order(s[0]), s[1])):
        rows.append([row_setting[1], labelled(method_name(method), label), dataset_name(dataset),
                     fmt_cell([test_accuracy(r) for r in group]),
                     fmt_mean([r.get("peak_memory_mb") for r in group])])
    devices = sorted({device_of(r) for r in chosen})
    notes = [STD_NOTE,
             "Test accuracy (%) in NAS-Bench-201 on the search dataset (CIFAR-10: 'cifar10' "
             "ori-test; CIFAR-100, ImageNet16-120: x-test).",
             "Peak memory: CUDA max allocated on a GPU, the process's peak resident set size "
             f"on a CPU; runs on: {', '.join(devices)}."]
    return ("(b) Partial channels and progressive learning",
            markdown_table(["setting", "method", "search dataset", "test accuracy (%)",
                            "peak memory (MB), mean"], rows),
            notes)


def anchor_table(runs):
    """Table (c), or None when every run has the default anchor."""
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
    for key, label, group in sorted(split_settings(groups, KEYED["c"]), key=lambda s: (order(s[0]), s[1])):
        method, dataset, (reg_type, scale) = key
        anchor = fmt_number(scale) + ("" if reg_type == DEFAULT_REG_TYPE else f" ({reg_type})")
        rows.append([anchor, labelled(method_name(method), label), dataset_name(dataset),
                     fmt_cell([test_accuracy(r) for r in group])])
    notes = [STD_NOTE,
             "λ = --reg_scale: Adam weight decay on alpha for --reg_type l2 (the default), the "
             "weight of the KL term for --reg_type kl. Test accuracy (%) in NAS-Bench-201 on the "
             "search dataset."]
    return ("(c) Anchor regulariser ablation",
            markdown_table(["λ (reg_scale)", "method", "search dataset", "test accuracy (%)"], rows),
            notes)


def device_of(run):
    versions = run.get("versions") if isinstance(run.get("versions"), dict) else {}
    return str(versions.get("cuda_device") or "CPU")


def render_markdown(runs):
    tables = [t for t in (nb201_table(runs), partial_channel_table(runs), anchor_table(runs)) if t]
    if not tables:
        return ""
    parts = [f"### {title}\n\n{table}\n\n" + "\n".join(f"- {note}" for note in notes)
             for title, table, notes in tables]
    return "\n\n".join(parts) + "\n"


def build_parser():
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="search run folders (each with results.json), or folders above them with --recursive")
    p.add_argument("--recursive", action="store_true",
                   help="use every results.json found in the folders below the given ones")
    p.add_argument("--out", default=None, metavar="FILE", help="write the tables here (default: stdout)")
    p.add_argument("--include_unfinished", action="store_true",
                   help="also use runs that have not finished (their latest values)")
    return p


@exit_on_user_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    runs = load_runs(args.runs, args.recursive, args.include_unfinished)
    text = render_markdown(runs)
    if not text:
        raise UserError(f"none of the {len(runs)} run(s) is a NAS-Bench-201 search: "
                        "these tables need NAS-Bench-201 runs")
    if args.out:
        out = Path(args.out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
        except OSError as err:
            raise UserError(f"cannot write {out}: {err.strerror or err}") from None
        print(f"wrote {out} ({len(runs)} runs)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return text


if __name__ == "__main__":
    main()
