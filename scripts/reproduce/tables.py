"""The paper's tables as data: each table is a list of runs, a run a script of this
repository with its flags and its own folder; an evaluation names, through `inputs`, the search
whose folder its `--arch` reads (common/run/genotype_source.py takes that search's final genotype).
Each table is defined once, here; scripts/reproduce/run_table.py runs one on a box
(scripts/reproduce/table_runner.py) or as SLURM job arrays (scripts/reproduce/slurm_array.py). A table of your own is a
JSON file of the same runs (`load_table_file`).
"""
import re
from dataclasses import dataclass, field

from common.errors import UserError
from run_costs import SCRIPT_MODULES, Estimate, estimate

KINDS = ("search", "evaluation", "data")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a folder name, nothing more


@dataclass(frozen=True)
class Run:
    name: str  # its folder under the table's folder; unique in the table
    script: str  # a script of SCRIPT_MODULES, relative to the repository root
    flags: tuple = ()
    kind: str = "search"
    inputs: tuple = ()  # (flag, run name): the flag is given that run's folder; it must finish first
    gpus: int = 1  # several: one torchrun process per GPU (--batch_size is the global batch)
    output: str = "--output_dir"  # the flag that takes the run's folder; "": the last positional argument
    done_file: str = "results.json"  # the run is done when this file says so (or, not a results file, exists)
    fresh_flag: str = "--overwrite"  # starts it anew in a folder a killed first attempt left
    cost: Estimate = None

    @property
    def after(self):
        return tuple(name for _, name in self.inputs)

    @property
    def group(self):
        """Runs of a group take about as long: the script and its flags but the seed."""
        flags = list(self.flags)
        if "--seed" in flags:
            del flags[flags.index("--seed"):flags.index("--seed") + 2]
        return " ".join([self.script, *flags])


@dataclass(frozen=True)
class Table:
    name: str
    title: str  # what it reproduces, with its run counts
    runs: tuple
    per_gpu: int = 1  # runs at once on one GPU, by default (not yet measured on a GPU)
    notes: tuple = field(default_factory=tuple)

    def run(self, name):
        return next(run for run in self.runs if run.name == name)


@dataclass(frozen=True)
class TableOptions:
    seeds: tuple = None  # None: the table's own seeds
    api_path: str = None
    data: str = None
    imagenet: str = None
    search_flags: tuple = ()
    eval_flags: tuple = ()


def _run(options, name, script, flags, kind="search", **extra):
    more = options.search_flags if kind == "search" else options.eval_flags if kind == "evaluation" else ()
    flags = tuple(str(flag) for flag in (*flags, *more))
    return Run(name, script, flags, kind, cost=estimate(script, flags), **extra)


def _place(options, benchmark=False):
    """The flags that say where a run's data (and benchmark) are."""
    flags = ["--data", options.data] if options.data else []
    if benchmark:
        flags += ["--api_path", options.api_path or "<API_PATH>"]
    return flags


NB201_DATASETS = ("cifar10", "cifar100", "imagenet16-120")
NB201_METHODS = ("dirichlet", "darts", "snas", "gdas", "pcdarts")
ANCHOR_SCALES = ("0", "5e-4", "1e-3", "5e-3", "1e-2", "1e-1", "1")
PARTIAL_KS = (1, 2, 4, 8)
SEARCH_201 = "201-space/train_search.py"


def nb201(options):
    seeds = options.seeds or (0, 1, 2, 3)
    runs = []
    for dataset in NB201_DATASETS:
        for method in NB201_METHODS:
            # figure 1 (exploration) and figures 4-5 (sharpness) come from the CIFAR-10 runs
            figures = (["--sample_archs", 100, "--hessian_freq", 5]
                       if dataset == "cifar10" and method in ("dirichlet", "darts") else [])
            runs += [_run(options, f"{dataset}-{method}-seed{seed}", SEARCH_201,
                          ["--dataset", dataset, "--method", method, "--seed", seed, *figures,
                           *_place(options, True)]) for seed in seeds]
    return Table("nb201", f"NAS-Bench-201: {len(NB201_METHODS)} methods x {len(NB201_DATASETS)} datasets x "
                 f"{len(seeds)} seeds ({len(runs)} searches)", tuple(runs), per_gpu=4)


def partial_channels(options):
    seeds = options.seeds or (0, 1, 2, 3)
    runs = []
    for seed in seeds:
        place = ["--dataset", "cifar10", "--method", "dirichlet", "--seed", seed, *_place(options, True)]
        runs += [_run(options, f"cifar10-k{k}-seed{seed}", SEARCH_201, [*place[:4], "--k", k, *place[4:]])
                 for k in PARTIAL_KS]
        runs.append(_run(options, f"cifar10-progressive-seed{seed}", "201-space/train_search_progressive.py", place))
    return Table("partial_channels", f"partial channels on NAS-Bench-201 CIFAR-10: k = 1, 2, 4, 8 and progressive "
                 f"x {len(seeds)} seeds ({len(runs)} searches)", tuple(runs), per_gpu=4)


def anchor_ablation(options):
    seeds = options.seeds or (0, 1, 2, 3)
    runs = [_run(options, f"cifar10-lambda{scale}-seed{seed}", SEARCH_201,
                 ["--dataset", "cifar10", "--method", "dirichlet", "--seed", seed, "--reg_type", "l2",
                  "--reg_scale", scale, *_place(options, True)])
            for scale in ANCHOR_SCALES for seed in seeds]
    return Table("anchor_ablation", f"anchor regulariser on NAS-Bench-201 CIFAR-10: {len(ANCHOR_SCALES)} values of "
                 f"lambda x {len(seeds)} seeds ({len(runs)} searches)", tuple(runs), per_gpu=4)


def darts_cifar10(options):
    seeds = options.seeds or (0, 1, 2, 3)
    place, evaluation = _place(options), ["--dataset", "cifar10", "--cutout", "--auxiliary"]
    searches = [_run(options, f"search-seed{seed}", "DARTS-space/train_search.py",
                     ["--dataset", "cifar10", "--seed", seed, *place]) for seed in seeds]
    found = [_run(options, f"train-search-seed{seed}", "DARTS-space/train.py", [*evaluation, "--seed", seed, *place],
                  "evaluation", inputs=(("--arch", f"search-seed{seed}"),)) for seed in seeds]
    published = [_run(options, f"train-DrNAS_cifar10-seed{seed}", "DARTS-space/train.py",
                      [*evaluation, "--arch", "DrNAS_cifar10", "--seed", seed, *place], "evaluation") for seed in seeds]
    return Table("darts_cifar10", f"DARTS space, CIFAR-10: {len(seeds)} searches, 600-epoch training of each cell found "
                 f"and of the published DrNAS_cifar10 with {len(seeds)} seeds ({len(searches + found + published)} runs)",
                 tuple(searches + found + published), per_gpu=1,
                 notes=("the paper: 2.46 ± 0.03 % test error, 4.1 M parameters, 0.6 GPU-days of search",))


def imagenet(options):
    seeds = options.seeds or (0,)
    root = options.imagenet or "<IMAGENET>"
    data = ["--data", root]
    runs = [_run(options, "sample", "scripts/sample_imagenet.py", [f"{root}/train"], "data", output="",
                 done_file="manifest.json", fresh_flag="--force")]
    for seed in seeds:
        runs.append(_run(options, f"search-seed{seed}", "DARTS-space/train_search_imagenet.py", ["--seed", seed],
                         inputs=(("--data", "sample"),), gpus=8))
        runs.append(_run(options, f"train-search-seed{seed}", "DARTS-space/train_imagenet.py",
                         ["--auxiliary", "--seed", seed, *data], "evaluation",
                         inputs=(("--arch", f"search-seed{seed}"),), gpus=8))
        runs.append(_run(options, f"train-DrNAS_imagenet-seed{seed}", "DARTS-space/train_imagenet.py",
                         ["--auxiliary", "--arch", "DrNAS_imagenet", "--seed", seed, *data], "evaluation", gpus=8))
    return Table("imagenet", f"ImageNet: the search subset sampled, {len(seeds)} direct search(es), 250-epoch training "
                 f"of the cell found and of the published DrNAS_imagenet ({len(runs)} runs)", tuple(runs), per_gpu=1,
                 notes=("the paper: 23.7 % top-1 error, 5.7 M parameters, 4.6 GPU-days of search",))


TABLES = {"nb201": nb201, "partial_channels": partial_channels, "anchor_ablation": anchor_ablation,
          "darts_cifar10": darts_cifar10, "imagenet": imagenet}
NEEDS = {"nb201": "api_path", "partial_channels": "api_path", "anchor_ablation": "api_path", "imagenet": "imagenet"}


# ----------------------------------------------------------------------------- a table of your own

def load_table_file(path):
    """A Table from a JSON file: {"name": ..., "per_gpu": N, "runs": [{"name", "script", "flags",
    "kind", "inputs": [[flag, run name]], "gpus"}]}; every mistake is one line."""
    from common.run.results import read_json

    data = read_json(path, label="table file ", expected="a table")
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list) or not data["runs"]:
        raise UserError(f"table file {path}: expected an object with a non-empty 'runs' list")
    name = data.get("name", "table")
    if not isinstance(name, str) or not NAME.match(name):
        raise UserError(f"table file {path}: 'name' must be a folder name (letters, digits, . _ -)")
    runs, seen = [], set()
    for index, entry in enumerate(data["runs"]):
        runs.append(_run_from_json(path, index, entry, seen))
        seen.add(runs[-1].name)
    per_gpu = data.get("per_gpu", 1)
    if not isinstance(per_gpu, int) or isinstance(per_gpu, bool) or per_gpu < 1:
        raise UserError(f"table file {path}: 'per_gpu' must be a positive integer")
    return Table(name, f"{name} ({len(runs)} runs, from {path})", tuple(runs), per_gpu=per_gpu)


def _run_from_json(path, index, entry, earlier):
    where = f"table file {path}, run {index}"
    if not isinstance(entry, dict):
        raise UserError(f"{where}: expected an object")
    unknown = set(entry) - {"name", "script", "flags", "kind", "inputs", "gpus"}
    if unknown:
        raise UserError(f"{where}: unknown entries {sorted(unknown)}")
    name, script = entry.get("name"), entry.get("script")
    if not isinstance(name, str) or not NAME.match(name) or name in earlier:
        raise UserError(f"{where}: 'name' must be a new folder name (letters, digits, . _ -)")
    if script not in SCRIPT_MODULES or SCRIPT_MODULES[script] is None:
        runnable = ", ".join(s for s, module in SCRIPT_MODULES.items() if module)
        raise UserError(f"{where}: 'script' must be one of {runnable}")
    flags, inputs = entry.get("flags", []), entry.get("inputs", [])
    if not isinstance(flags, list) or not all(isinstance(f, (str, int, float)) for f in flags):
        raise UserError(f"{where}: 'flags' must be a list of strings")
    if not isinstance(inputs, list) or not all(
            isinstance(i, list) and len(i) == 2 and str(i[0]).startswith("--") and i[1] in earlier for i in inputs):
        raise UserError(f"{where}: 'inputs' must be [flag, name of an earlier run] pairs")
    kind, gpus = entry.get("kind", "search"), entry.get("gpus", 1)
    if kind not in KINDS[:2] or not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 1:
        raise UserError(f"{where}: 'kind' must be search or evaluation, 'gpus' a positive integer")
    flags = tuple(str(f) for f in flags)
    return Run(name, script, flags, kind, tuple((str(f), n) for f, n in inputs), gpus, cost=estimate(script, flags))


def build_table(name_or_file, options):
    """A built-in table by name, or a table file; a missing option a table needs is the caller's check."""
    if name_or_file in TABLES:
        return TABLES[name_or_file](options)
    if name_or_file.endswith(".json"):
        return load_table_file(name_or_file)
    raise UserError(f"no table {name_or_file!r}: pick one of {', '.join(TABLES)}, or a table file (.json)")

