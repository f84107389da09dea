"""Reading a search run's results.json (written by common/run/run_folder.py), for the scripts that
summarise runs (scripts/aggregate.py, scripts/plot_search.py).

Torch-free on purpose: those scripts only read JSON. `METRICS` are the keys of a results
file's `benchmark` entries (what common/bench/benchmark.py's `BenchmarkTable.query` returns).
"""
import json
from pathlib import Path

from common.errors import UserError, one_line, regular_file

RESULTS_NAME = "results.json"

# Flags that say where and how a run goes, not what it computes: they may change at --resume,
# and runs that differ in them (and in the seed) are pooled in one table row.
RUN_PLUMBING = frozenset({"resume", "device", "data", "api_path", "report_freq", "output_dir", "workers",
                          "stop_after_epoch", "save", "overwrite", "allow_unfinished", "cuda_graph"})

# The six NAS-Bench-201 accuracies, in the paper's column order, and their titles.
METRICS = (
    "cifar10_valid",
    "cifar10_test",
    "cifar100_valid",
    "cifar100_test",
    "imagenet16_valid",
    "imagenet16_test",
)
METRIC_TITLES = {"cifar10_valid": "CIFAR-10 valid", "cifar10_test": "CIFAR-10 test",
                 "cifar100_valid": "CIFAR-100 valid", "cifar100_test": "CIFAR-100 test",
                 "imagenet16_valid": "ImageNet16-120 valid", "imagenet16_test": "ImageNet16-120 test"}

# The search methods (--method) by their titles, in the order of the paper's table rows.
METHOD_TITLES = {"darts": "DARTS", "snas": "SNAS", "gdas": "GDAS", "pcdarts": "PC-DARTS", "dirichlet": "DrNAS"}

_TYPE_NAMES = {dict: "object", list: "list"}


def benchmark_lines(row):
    """The log lines of one cell's benchmark figures: the six accuracies, then (NATS-Bench)
    the 12-epoch ones and the costs; a figure the benchmark lacks shows as n/a."""
    def show(names, label=lambda name: name):
        return " ".join(f"{label(n)} {'n/a' if row[n] is None else format(row[n], '.2f')}" for n in names)

    lines = ["benchmark " + show([m for m in METRICS if m in row])]
    short = [m + "_12ep" for m in METRICS if m + "_12ep" in row]
    if short:
        lines.append("benchmark after 12 epochs " + show(short, lambda name: name[:-len("_12ep")]))
    costs = [name for name in row if name not in METRICS and name not in short]
    if costs:
        lines.append("benchmark costs " + show(costs))
    return lines


def results_file(path, hint="pass the folder of a search run"):
    """The results.json of a run folder (or `path` itself, a results file).

    A path that does not exist, or a folder without results.json, is a UserError; `hint`
    ends the latter's message.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist: pass search run folders (holding {RESULTS_NAME})")
    file = path if path.is_file() else path / RESULTS_NAME
    if not file.is_file():
        raise UserError(f"{path} holds no {RESULTS_NAME}: {hint}")
    return file


def read_json(file, *, label="", expected="a results file", parse_hint=""):
    """The JSON value in `file`; a file that does not read, parse or nests too deeply is a
    one-line UserError naming it (`label` before the name, e.g. "--arch file ")."""
    try:
        regular_file(file, label.strip() or "JSON file")  # a named pipe would block the read
        with open(file, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as err:
        raise UserError(f"cannot read {label}{file}: {one_line(err.strerror or err)}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{label}{file} is not valid JSON ({one_line(err)}){parse_hint}") from None
    except RecursionError:
        raise UserError(f"{label}{file} nests too deeply to be {expected}") from None


def load_results(run_dir, require=("args", dict)):
    """One run's results.json as a dict, with `dir` (its folder) added.

    `run_dir` is a run folder or its results file. `require` is (key, type): the entry
    that marks a search results file. A missing file or folder, a file that does not read
    or parse, or JSON that is not an object with that entry is a UserError.
    """
    file = results_file(run_dir)
    data = read_json(file, parse_hint=": is the run still writing it?")
    key, kind = require
    if not isinstance(data, dict) or not isinstance(data.get(key), kind):
        raise UserError(f"{file} is not a search results file (no '{key}' {_TYPE_NAMES[kind]})")
    data["dir"] = str(file.parent)
    return data
