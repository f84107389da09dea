"""The cells, rows and labels of the Markdown tables of scripts/aggregate.py: `mean ± std (n=N)`
cells, the paper's row order, and rows split by the flags that tell runs apart."""
from collections import defaultdict

import numpy as np

from common.run.results import METHOD_TITLES, RUN_PLUMBING

METHOD_ORDER = tuple(METHOD_TITLES)  # the paper's rows
DATASET_ORDER = ("cifar10", "cifar100", "imagenet16-120", "svhn", "imagenet")
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet16-120": "ImageNet16-120",
                 "svhn": "SVHN", "imagenet": "ImageNet"}
STD_NOTE = ("mean ± std over the runs (seeds); std is the population standard deviation "
            "(ddof=0), so identical results read ± 0.00; n = runs with a value in that cell.")
LABEL_FLAGS = 3  # a row's label names at most this many differing flags, then counts the rest


def method_name(method):
    return METHOD_TITLES.get(method, method)


def dataset_name(dataset):
    return DATASET_NAMES.get(dataset, dataset)


def method_key(method):
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else -1, method)


def dataset_key(dataset):
    return (DATASET_ORDER.index(dataset) if dataset in DATASET_ORDER else len(DATASET_ORDER), dataset)


def fmt_number(x):
    return f"{x:g}"


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


def section(title, table, notes):
    return f"### {title}\n\n{table}\n\n" + "\n".join(f"- {note}" for note in notes)


def setting(run, keyed, extra=()):
    """The run's flags apart from the seed, the run plumbing and the row key (plus `extra`
    (name, value) pairs, e.g. a stand-in benchmark), as a hashable value."""
    ignored = RUN_PLUMBING | keyed | {"seed"}
    flags = [(key, repr(value)) for key, value in run["args"].items() if key not in ignored]
    return tuple(sorted(flags + list(extra)))


def short_label(names, values):
    """`name=value, ...` of the differing flags, at most LABEL_FLAGS of them named."""
    shown = [f"{name}={values.get(name, '-')}" for name in names[:LABEL_FLAGS]]
    if len(names) > LABEL_FLAGS:
        shown.append(f"+{len(names) - LABEL_FLAGS} other flags")
    return ", ".join(shown)


def split_settings(groups, keyed, extra=lambda run: ()):
    """{key: runs} -> [(key, label, runs)]: the runs of a key split by their other flags; the
    label names the flags that differ between the splits of the key ('' when there is one)."""
    out = []
    for key, runs in groups.items():
        splits = defaultdict(list)
        for run in runs:
            splits[setting(run, keyed, extra(run))].append(run)
        differing = sorted({name for s in splits for name, value in s}
                           - {name for name, value in set.intersection(*(set(s) for s in splits))})
        for settings, group in splits.items():
            out.append((key, short_label(differing, dict(settings)), group))
    return out


def labelled(name, label):
    return f"{name} ({label})" if label else name
