"""The tables of evaluation runs, the architectures trained from scratch (201-space/train.py,
DARTS-space/train.py, train_imagenet.py), one table per space (scripts/aggregate.py).

A row is one architecture, named by where it came from: a search (its folder, method and
seed: what `--arch` pointed at), a published genotype (`DrNAS_cifar10`), or a cell string.
Trainings of one architecture with other seeds are pooled in its row; trainings whose other
flags differ are rows of their own. Then, per dataset and search method with two or more
searches, one row pools the cells of all of them: the paper's figure, a mean over searches.
Columns: test error (top-1; top-5 on ImageNet) as `mean ± std (n)`, parameters (millions,
auxiliary head excluded) and the search's own cost in GPU-days.
"""
import re
from collections import defaultdict
from pathlib import Path

from common.errors import UserError
from common.run.results import load_results
from reports.run_records import dataset_of, is_evaluation, is_search, method_of
from reports.search_tables import gpu_days
from reports.table_format import (STD_NOTE, dataset_key, dataset_name, fmt_cell, fmt_mean, labelled, markdown_table,
                                 method_name, split_settings)

PUBLISHED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # a genotype's name in genotypes.py
KEYED = {"arch", "dataset"}
ORIGIN_ORDER = {"search": 0, "searches": 1, "published": 2, "file": 3, "cell": 4}
TITLES = {"201": "(d) NAS-Bench-201 space: cells trained from scratch (201-space/train.py)",
          "darts": "(f) DARTS space: architectures trained from scratch (train.py, train_imagenet.py)"}


def resolved(path):
    try:
        return str(Path(path).resolve())
    except OSError:
        return str(path)


def search_at(folder):
    """The search run in `folder`, read from its results.json; None when there is none."""
    try:
        run = load_results(folder)
    except UserError:
        return None
    return run if is_search(run) else None


def origin(run, searches):
    """(kind, identity, label, search run or None) of what an evaluation run trained."""
    arch = str(run["args"].get("arch", ""))
    if "/" in arch or arch.endswith(".json"):
        path = Path(arch)
        folder = path.parent if path.suffix == ".json" else path
        search = searches.get(resolved(folder)) or search_at(folder)
        if search is None:
            return "file", resolved(path), f"genotype file: {path.name}", None
        return "search", resolved(folder), search_label(folder.name, search), search
    if PUBLISHED.match(arch):
        return "published", arch, f"published: {arch}", None
    return "cell", arch, f"cell: {arch}", None


def search_label(name, search):
    return f"searched: {name} ({method_name(method_of(search))}, seed {search['args'].get('seed', '?')})"


def errors(runs, key):
    return [100.0 - r[key] if isinstance(r.get(key), (int, float)) else None for r in runs]


def row(label, dataset, group, costs, top5):
    cells = [label, dataset_name(dataset), str(len(group)), fmt_cell(errors(group, "final_test_acc"))]
    if top5:
        cells.append(fmt_cell(errors(group, "final_test_top5")))
    return cells + [fmt_mean([r.get("params_m") for r in group], 2), cost_cell(costs)]


def cost_cell(costs):
    """One search's cost as it is; several searches' as mean ± std (n); "—" without one."""
    if len(costs) == 1 and costs[0] is not None:
        return f"{costs[0]:.3f}"
    return fmt_cell(costs, 3) if any(c is not None for c in costs) else "—"


def pooled_rows(rows_by_search, top5):
    """One row per (dataset, search method, setting label) over the cells of two or more searches."""
    pools = defaultdict(list)
    for (dataset, label), group, search in rows_by_search:
        pools[(dataset, method_of(search), label)].append((group, search))
    out = []
    for (dataset, method, label), members in pools.items():
        if len(members) < 2:
            continue
        trainings = [run for group, _ in members for run in group]
        costs = [gpu_days(search) for _, search in members]
        name = labelled(f"all searched cells ({method_name(method)}, {len(members)} searches)", label)
        out.append(((dataset_key(dataset), ORIGIN_ORDER["searches"], name),
                    row(name, dataset, trainings, costs, top5)))
    return out


def evaluation_table(runs, space):
    """The evaluation table of one space ("201" or "darts"), or None without its runs."""
    chosen = [r for r in runs if is_evaluation(r) and str(r.get("space")) == space]
    if not chosen:
        return None
    searches = {resolved(r["dir"]): r for r in runs if is_search(r)}
    groups, found = defaultdict(list), {}
    for run in chosen:
        kind, identity, label, search = origin(run, searches)
        groups[(dataset_of(run), kind, identity)].append(run)
        found[(kind, identity)] = (label, search)
    top5 = any(dataset == "imagenet" for dataset, _, _ in groups)
    rows, by_search = [], []
    for (dataset, kind, identity), setting, group in split_settings(groups, KEYED):
        label, search = found[(kind, identity)]
        costs = [gpu_days(search)] if search is not None else []
        name = labelled(label, setting)
        rows.append(((dataset_key(dataset), ORIGIN_ORDER[kind], name), row(name, dataset, group, costs, top5)))
        if search is not None:
            by_search.append(((dataset, setting), group, search))
    rows += pooled_rows(by_search, top5)
    header = ["architecture", "dataset", "trainings", "test error (%)"] + (["top-5 error (%)"] if top5 else [])
    header += ["parameters (M)", "search cost (GPU-days)"]
    notes = [STD_NOTE,
             "Test error: 100 − the test accuracy after the last epoch (results.json `final_test_acc`); "
             "parameters in millions without the auxiliary head.",
             "searched: the final genotype of that search folder (what --arch read); its cost is the search's "
             "own wall time times its processes, in days (— when the search's results.json is not found)."]
    return TITLES.get(space, f"Space {space}: trained from scratch"), markdown_table(
        header, [cells for _, cells in sorted(rows, key=lambda item: item[0])]), notes

