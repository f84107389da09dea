"""What a run of a table costs on a GPU: an ESTIMATE from the step times measured on one
NVIDIA H200 (docs/performance.md, "GPU: NVIDIA H200, beside the authors' code"), and the
running estimate of the time a table has left.

The estimate counts the training steps only, one run alone on its GPU, eager steps in fp32
(no `--cuda_graph`): an epoch is its images (the weights' share of the training set) divided
by the measured images per second of the step at the run's partial channels and ops. The
epoch-end evaluation, the benchmark queries, `--sample_archs`, `--hessian_freq` and the
start-up are left out. Runs without a measured figure (the trainings from scratch, the
ImageNet search) have no estimate and say so. The figures of the DARTS-space search are
1 + 1-epoch searches of 8 steps, warm-up and cuDNN autotuning included: an upper bound.
"""
import importlib
from dataclasses import dataclass

from common.errors import UserError
from common.run.flags import apply_presets

SOURCE = "H200 step times in docs/performance.md"
# images/s of the NAS-Bench-201 search step (batch 64, C 16, N 5, DrNAS, first order, eager)
# by (k, ops kept per edge): the median steps 234.0, 274.9, 249.9, 270.0 and 235.8 ms
NB201_IMAGES_PER_S = {(1, 5): 64 / 0.2340, (2, 5): 64 / 0.2749, (4, 5): 64 / 0.2499, (8, 5): 64 / 0.2700,
                      (2, 3): 64 / 0.2358}
# images/s of the DARTS-space CIFAR search per stage (k 6 with 7 ops; k 4 with 4 ops)
DARTS_IMAGES_PER_S = {(6, 7): 19.0, (4, 4): 28.0}
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257, "imagenet16-120": 151_700,
                "synthetic": 5_000}
# the scripts a table runs, by their repository path: the package module that parses their flags
SCRIPT_MODULES = {"201-space/train_search.py": "space201.train_search",
                  "201-space/train_search_progressive.py": "space201.train_search_progressive",
                  "201-space/train.py": "space201.train",
                  "DARTS-space/train_search.py": "darts_space.train_search",
                  "DARTS-space/train_search_imagenet.py": "darts_space.train_search_imagenet",
                  "DARTS-space/train.py": "darts_space.train",
                  "DARTS-space/train_imagenet.py": "darts_space.train_imagenet",
                  "scripts/sample_imagenet.py": None}


@dataclass(frozen=True)
class Estimate:
    hours: float = None  # GPU-hours, None without a measured figure
    basis: str = ""  # what it rests on, or why there is none


def parsed_flags(script, flags):
    """The run's flags as its script parses them, presets (e.g. --method pcdarts) applied."""
    module = importlib.import_module(SCRIPT_MODULES[script])
    parser = module.build_parser()

    def refuse(message):  # a table's flags that its script would refuse: one line, naming the script
        raise UserError(f"{script} {' '.join(flags)}: {message}")

    parser.error = refuse
    args = parser.parse_args(list(flags))
    given = {action.dest for action in parser._actions if any(opt in flags for opt in action.option_strings)}
    return apply_presets(parser, args, given)


def stages(args, num_ops):
    """[(epochs, k, ops kept)] of a search's flags."""
    if hasattr(args, "ks"):
        keeps = [keep or num_ops for keep in args.num_keeps]
        return list(zip(args.train_epochs, args.ks, keeps))
    return [(args.epochs, args.k, num_ops)]


def search_estimate(args, figures, num_ops, images):
    """GPU-hours of a search's steps at the measured images/s of each stage, or None."""
    seconds = 0.0
    for epochs, k, keep in stages(args, num_ops):
        speed = figures.get((k, keep)) or figures.get((k, num_ops))
        if speed is None:
            return Estimate(None, f"no step measured at k={k} with {keep} ops")
        seconds += epochs * images / speed
    return Estimate(seconds / 3600, SOURCE)


def estimate(script, flags):
    """The Estimate of one run of `script` with `flags` (see the module doc)."""
    if SCRIPT_MODULES.get(script) is None:
        return Estimate(0.0, "no GPU: reads and links files")
    args = parsed_flags(script, flags)
    if script.startswith("201-space/train_search"):
        dataset = args.dataset
        if dataset not in TRAIN_IMAGES:
            return Estimate(None, f"no image count for --dataset {dataset}")
        images = TRAIN_IMAGES[dataset] * args.train_portion
        if args.data_limit:
            images = min(images, args.data_limit * args.train_portion)
        found = search_estimate(args, NB201_IMAGES_PER_S, 5, images)
        if found.hours is not None and dataset == "imagenet16-120":
            found = Estimate(found.hours, SOURCE + " (32x32 steps: an upper bound for 16x16 images)")
        return found
    if script == "DARTS-space/train_search.py" and args.dataset in ("cifar10", "cifar100"):
        if args.init_channels != 36 or args.layers != 20:
            return Estimate(None, "no step measured for this network size")
        images = TRAIN_IMAGES[args.dataset] * args.train_portion
        found = search_estimate(args, DARTS_IMAGES_PER_S, 7, images)
        return Estimate(found.hours, found.basis + (" (1+1-epoch searches: an upper bound)" if found.hours else ""))
    return Estimate(None, "not yet measured on a GPU")


def format_hours(hours):
    return "—" if hours is None else f"{hours:.1f}"


# ----------------------------------------------------------------------------- time left

def expected_seconds(run, measured):
    """Seconds one run is expected to take: the mean wall time of the finished runs of its
    group when there are any, its estimate otherwise (None without either)."""
    done = measured.get(run.group)
    if done:
        return sum(done) / len(done)
    if run.cost is not None and run.cost.hours is not None:
        return run.cost.hours * 3600
    return None


def time_left(waiting, running, slots, measured):
    """(seconds left, runs without a figure): the expected seconds of the waiting runs and
    the rest of the running ones (`running`: [(run, fraction done)]), spread over `slots`."""
    total, unknown = 0.0, 0
    for run, fraction in [(run, 0.0) for run in waiting] + list(running):
        seconds = expected_seconds(run, measured)
        if seconds is None:
            unknown += 1
        else:
            total += seconds * (1.0 - min(max(fraction, 0.0), 1.0))
    return total / max(slots, 1), unknown


def format_duration(seconds):
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def fraction_done(results):
    """The share of a run's epochs done, from its results.json (0 when it does not say)."""
    if not isinstance(results, dict) or not isinstance(results.get("args"), dict):
        return 0.0
    args = results["args"]
    total = args.get("epochs")
    if isinstance(args.get("train_epochs"), list):
        total = sum(args["train_epochs"])
    done = results.get("epochs_done", 0)
    if not isinstance(total, int) or total <= 0 or not isinstance(done, int):
        return 0.0
    return min(done / total, 1.0)
