"""The runs a report reads: results.json files found and loaded, the settings that describe
a run, and the per-epoch series a figure draws. Shared by scripts/aggregate.py (the tables)
and scripts/plot_search.py (the figures); every reader tolerates missing or malformed
entries, so a run recorded by an older version still reads."""
import math
import sys
from pathlib import Path

from common.errors import UserError
from common.run.results import RESULTS_NAME, load_results, results_file
from common.spaces import SPACES
from reports.run_schema import first_error

DEFAULT_REG_SCALE = 1e-3  # the paper's anchor: --reg_type l2 --reg_scale 1e-3
DEFAULT_REG_TYPE = "l2"


# ----------------------------------------------------------------------------- finding and loading

def find_results(paths, recursive=False):
    """The results.json files of the given run folders (or results files), deduplicated."""
    found, seen = [], set()
    for raw in paths:
        path = Path(raw)
        if recursive and path.exists() and not path.is_file():
            files = sorted(path.rglob(RESULTS_NAME))
            if not files:
                raise UserError(f"no {RESULTS_NAME} anywhere under {path}")
        else:
            files = [results_file(path, "pass a search run folder, "
                                        "or add --recursive to search the folders below it")]
        for file in files:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                found.append(file)
    return found


def load_runs(paths, recursive=False, include_unfinished=False, note=None):
    """The runs under `paths`; unfinished ones and runs with a field of the wrong type are left
    out (said through `note`) unless asked."""
    note = note or (lambda text: print(text, file=sys.stderr))
    runs, unfinished = [], []
    for _, run in readable_runs(find_results(paths, recursive), load_results, note):
        if run.get("finished") is not True and not include_unfinished:
            unfinished.append(run)
        else:
            runs.append(run)
    if not runs:
        raise UserError(f"no finished run among the {len(unfinished)} found "
                        "(--include_unfinished to use unfinished runs' latest values)")
    for run in unfinished:
        note(f"note: leaving out {run['dir']}: the run has not finished "
             f"({run.get('epochs_done', len(run.get('epochs') or []))} epochs done; "
             "--include_unfinished to use its latest values)")
    return runs


def readable_runs(files, reader, note):
    """[(index in `files`, run)] of the results files that `reader` reads and whose fields a
    report may read (reports.run_schema); each other one is skipped with a line through `note`
    naming its file and field. None left is a UserError."""
    kept, skipped = [], []
    for index, file in enumerate(files):
        run, why = read_checked(file, reader)
        if why is None:
            kept.append((index, run))
        else:
            skipped.append(why)
    if not kept:
        more = f" ({len(skipped) - 1} more runs skipped likewise)" if len(skipped) > 1 else ""
        raise UserError(f"no run left to read: {skipped[0]}{more}")
    for why in skipped:
        note(f"note: skipping a run: {why}")
    return kept


def bad_field(run, file):
    """None, or "FILE: FIELD is X, not Y (...)" when a field a report reads has the wrong type
    (reports.run_schema): the run is skipped, not read."""
    error = first_error(run)
    return None if error is None else f"{file}: {error} (edited by hand? restore the field, or leave the run out)"


def read_checked(file, reader):
    """(run, None) of a results file `reader` reads and whose fields a report may read, or
    (None, why) when it does not read or has a field of the wrong type."""
    try:
        run = reader(file)
    except UserError as err:
        return None, str(err)
    why = bad_field(run, file)
    return (run, None) if why is None else (None, why)


def load_run(path):
    """The results of one run folder (or results.json path) with an 'epochs' list; bad
    input is a UserError. A missing or malformed 'args' reads as {}."""
    data = load_results(path, require=("epochs", list))
    if not isinstance(data.get("args"), dict):
        data["args"] = {}
    return data


# ----------------------------------------------------------------------------- settings of a run

def method_of(run):
    return str(run["args"].get("method", "dirichlet"))


def dataset_of(run):
    return str(run["args"].get("dataset", "cifar10"))


def run_stages(run):
    stages = run.get("stages")
    return stages if isinstance(stages, list) else []


def is_progressive(run):
    return len(run_stages(run)) > 1


def k_of(run):
    return int(run["args"].get("k", 1) or 1)


def reg_of(run):
    args = run["args"]
    scale = args.get("reg_scale", DEFAULT_REG_SCALE)
    return (str(args.get("reg_type", DEFAULT_REG_TYPE)),
            float(DEFAULT_REG_SCALE if scale is None else scale))


def default_anchor(run):
    reg_type, scale = reg_of(run)
    return reg_type == DEFAULT_REG_TYPE and math.isclose(scale, DEFAULT_REG_SCALE, rel_tol=1e-9)


def plain_channels(run):
    return k_of(run) == 1 and not is_progressive(run)


def is_search(run):
    """A search run (its results list its stages); the other kind is an evaluation run."""
    return isinstance(run.get("stages"), list)


def is_evaluation(run):
    """A training from scratch (201-space/train.py, DARTS-space/train.py, train_imagenet.py)."""
    return not is_search(run) and ("params_m" in run or "final_test_acc" in run)


def is_nb201(run):
    """A search of a space with a benchmark to fill these tables (NAS-Bench-201)."""
    space = SPACES.get(str(run.get("space")))
    return space is not None and space.benchmark and is_search(run)


def is_standin(run):
    """A search whose benchmark accuracies came from scripts/standin_benchmark.py: made up."""
    source = run.get("benchmark_source")
    return isinstance(source, dict) and source.get("standin") is True


# ----------------------------------------------------------------------------- per-epoch series

def epochs_of(run):
    """The run's epoch records (dicts with an int 'epoch'), in epoch order."""
    records = [e for e in run["epochs"] if isinstance(e, dict) and isinstance(e.get("epoch"), int)]
    return sorted(records, key=lambda e: e["epoch"])


def op_names(run, n_ops):
    """The run's recorded op names (results.json `op_names`), or op0, op1, ... without them."""
    names = run.get("op_names")
    if isinstance(names, list) and len(names) == n_ops:
        return [str(name) for name in names]
    return [f"op{i}" for i in range(n_ops)]


def edge_names(run, n_edges, cell):
    """The run's recorded edge labels of `cell` (results.json `edge_labels`, e.g. "2<-0", shown
    as 2←0), or "edge N" without them; the cell type leads when there are several."""
    prefix = "" if cell == "cell" else f"{cell} "
    labels = run.get("edge_labels", {})
    labels = labels.get(cell) if isinstance(labels, dict) else None
    if isinstance(labels, list) and len(labels) == n_edges:
        return [prefix + str(label).replace("<-", "←") for label in labels]
    return [f"{prefix}edge {e}" for e in range(n_edges)]


def stage_starts(epochs):
    """Epochs at which a new stage begins (progressive runs)."""
    starts, last = [], None
    for e in epochs:
        stage = e.get("stage")
        if last is not None and stage is not None and stage != last:
            starts.append(e["epoch"])
        last = stage if stage is not None else last
    return starts


def number(x):
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def exploration_series(run, metric):
    """(epochs, min, mean, max, distinct, mean-arch accuracy) lists; None without data."""
    rows = []
    for e in epochs_of(run):
        explo = e.get("exploration")
        if not isinstance(explo, dict):
            continue
        bench = explo.get("benchmark") if isinstance(explo.get("benchmark"), dict) else {}
        stats = bench.get(metric) if isinstance(bench.get(metric), dict) else {}
        mean_bench = e.get("benchmark") if isinstance(e.get("benchmark"), dict) else {}
        rows.append((e["epoch"], number(stats.get("min")), number(stats.get("mean")),
                     number(stats.get("max")), number(explo.get("distinct")),
                     number(mean_bench.get(metric))))
    if not rows:  # no --sample_archs; without a benchmark the distinct counts alone are drawn
        return None
    return [list(col) for col in zip(*rows)]


def softmax(values):
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [v / total for v in exps]


def edge_series(run, note, label):
    """{cell: (epochs, weights[epoch][edge][op])} from arch[cell]['mean'] (softmax of alpha
    when a record lacks the mean)."""
    out, said = {}, False
    for e in epochs_of(run):
        arch = e.get("arch")
        if not isinstance(arch, dict):
            continue
        for cell, params in arch.items():
            if not isinstance(params, dict):
                continue
            weights = params.get("mean")
            if weights is None and params.get("alpha") is not None:
                if not said:
                    note(f"note: {label}: no 'mean' in the arch records; edges.png shows softmax(alpha)")
                    said = True
                weights = [softmax(edge) for edge in params["alpha"]]
            if weights is None:
                continue
            epochs, values = out.setdefault(cell, ([], []))
            epochs.append(e["epoch"])
            values.append(weights)
    return out
