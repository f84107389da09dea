"""The flags the scripts share, in groups; each script passes every default itself, so that it
shows its own flags and the authors' defaults: `add_weight_flags(p, batch_size=64, ...)`.
The flags of the search alone are in common/nas/search_flags.py.

Every numeric flag is checked when it is parsed: a value outside its range is one line
naming the range (exit 2), never a traceback later.
"""
import argparse
import dataclasses
import math

from common.device import MEMORY_FORMATS
from common.errors import ArgumentParser
from common.data.folder_data import TEST_PORTION

SEED_MAX = 2**32 - 1


def _number(kind, text):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def bounded(kind, low=None, high=None, *, low_open=False, high_open=False):
    """An argparse type: a finite `kind` within [low, high] (open ends where asked)."""
    def parse(text):
        value = _number(kind, text)
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            raise argparse.ArgumentTypeError(f"{text} is outside {left}{low if low is not None else '-inf'}, "
                                             f"{high if high is not None else 'inf'}{right}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = bounded(int, 1)
non_negative_int = bounded(int, 0)
non_negative_float = bounded(float, 0.0)
positive_float = bounded(float, 0.0, low_open=True)
seed_type = bounded(int, 0, SEED_MAX)
fraction = bounded(float, 0.0, 1.0, low_open=True, high_open=True)
probability = bounded(float, 0.0, 1.0, high_open=True)


def new_parser(doc):
    """A parser whose description is the script's first doc line, showing every default."""
    return ArgumentParser(description=doc.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_data_flags(p, *, data, dataset, datasets, data_help=None):
    if data_help is None:
        data_help = "folder holding the datasets" + (
            "; with --dataset folder, the dataset folder itself: DIR/<class>/<images>, or DIR/train/<class>/ "
            "and optionally DIR/val/<class>/" if "folder" in datasets else "")
    p.add_argument("--data", default=data, help=data_help)
    p.add_argument("--dataset", default=dataset, choices=datasets, help="the dataset to train on")
    if "folder" in datasets:
        add_folder_flags(p)


def add_folder_flags(p):
    """The flags of `--dataset folder` (common/data/folder_data.py), with --dataset in every script that offers it."""
    p.add_argument("--image_size", type=bounded(int, 4), default=None, metavar="N",
                   help="--dataset folder: resize every image to N x N (e.g. 32; bilinear, antialiased); "
                        "default: keep the images' own size, which all must share")
    p.add_argument("--test_portion", type=fraction, default=TEST_PORTION,
                   help="--dataset folder without DIR/val: this part of every class folder (drawn with a fixed "
                        "seed) is held out as train.py's test split and left out of searches too")


def add_cutout_flags(p, *, cutout_length):
    p.add_argument("--cutout", action="store_true", help="cutout augmentation")
    p.add_argument("--cutout_length", type=positive_int, default=cutout_length, help="side of the cut-out square")
    p.add_argument("--cutout_prob", type=bounded(float, 0.0, 1.0), default=1.0, metavar="P",
                   help="with --cutout, the chance that an image is cut out (the authors' flag; 1: every image)")


def add_weight_flags(p, *, batch_size, learning_rate, momentum, weight_decay, grad_clip, seed):
    """The network weights' SGD."""
    p.add_argument("--batch_size", type=positive_int, default=batch_size, help="the global batch (all processes)")
    p.add_argument("--learning_rate", type=positive_float, default=learning_rate, help="initial (peak) learning rate")
    p.add_argument("--momentum", type=bounded(float, 0.0, 1.0, high_open=True), default=momentum,
                   help="SGD momentum of the weights")
    p.add_argument("--weight_decay", type=non_negative_float, default=weight_decay,
                   help="SGD weight decay of the weights")
    p.add_argument("--grad_clip", type=positive_float, default=grad_clip, help="gradient-norm clip of the weights")
    p.add_argument("--seed", type=seed_type, default=seed, help="random seed of everything the run draws")


def add_cosine_flags(p, *, learning_rate_min):
    p.add_argument("--learning_rate_min", type=non_negative_float, default=learning_rate_min,
                   help="floor of the cosine schedule")


def add_speed_flags(p, *, memory_format):
    p.add_argument("--amp", action="store_true",
                   help="bfloat16 autocast of every forward pass (off by default: the authors' fp32 numerics)")
    p.add_argument("--memory_format", default=memory_format, choices=sorted(MEMORY_FORMATS),
                   help="layout of activations and conv weights: channels_last is faster on CPUs "
                        "(see docs/performance.md) and gives the same results to float tolerance")
    p.add_argument("--tf32", action="store_true",
                   help="TF32 tensor cores for fp32 convolutions and matrix products on a GPU (off by default: "
                        "IEEE fp32, the authors' numerics; recorded in results.json)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic GPU kernels and no cuDNN autotuning: two runs give the same numbers "
                        "(slower; a warning names any op that has no deterministic kernel)")


def add_run_flags(p, data_limit_help="use only the first N training images"):
    """Where a run goes, on what device, and how it stops and resumes: every script has these."""
    p.add_argument("--report_freq", type=positive_int, default=50,
                   help="a progress line and a point of TensorBoard's per-step curves every N steps")
    p.add_argument("--save", default="exp", help="experiment name, part of the output folder name")
    p.add_argument("--output_dir", default=None, help="output folder (default: experiments/<space>/<dataset>/...)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--gpu", type=non_negative_int, default=None, metavar="N",
                   help="the authors' flag: the same as --device cuda:N")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the run in this folder, with its own flags (given ones may extend it)")
    p.add_argument("--overwrite", action="store_true", help="start a new run in a folder that holds one")
    p.add_argument("--stop_after_epoch", type=positive_int, default=None,
                   help="stop cleanly after this epoch (e.g. a scheduler's time limit); --resume later")
    p.add_argument("--data_limit", type=positive_int, default=None, help=data_limit_help)


def training_epochs(text):
    """--epochs of a training: 0 would train nothing; counting the parameters is --count_params."""
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} epochs train nothing: at least 1 (to count the network's "
                                         "parameters without training, pass --count_params)")
    return value


training_epochs.__name__ = "int"


def add_count_flag(p):
    p.add_argument("--count_params", action="store_true",
                   help="print the network's parameter count and exit (no data is read, nothing is trained)")


def add_training_flags(p, *, epochs, init_channels, layers, auxiliary_weight, drop_path_prob, arch):
    """A network trained from scratch (train.py, train_imagenet.py)."""
    p.add_argument("--epochs", type=training_epochs, default=epochs, help="training epochs")
    p.add_argument("--init_channels", type=positive_int, default=init_channels, help="C: channels of the first stage")
    p.add_argument("--layers", type=bounded(int, 3), default=layers,
                   help="cells in the network (two of them reduction cells)")
    p.add_argument("--auxiliary", action="store_true", help="auxiliary head after the second reduction cell")
    p.add_argument("--auxiliary_weight", type=non_negative_float, default=auxiliary_weight,
                   help="weight of the auxiliary head's loss (with --auxiliary)")
    p.add_argument("--drop_path_prob", type=probability, default=drop_path_prob, help="final value of the linear ramp")
    p.add_argument("--arch", default=arch,
                   help="a genotype's name in genotypes.py, Genotype(...) text as the authors' logs print it, "
                        "a search's results.json or run folder, or a genotype JSON file")
    p.add_argument("--allow_unfinished", action="store_true",
                   help="take the genotype of a search that has not finished (an intermediate one)")
    add_count_flag(p)


def add_presets(p, flag, presets):
    """Other defaults that come with a value of `--flag`: `presets[value]` maps flag names to
    the values they take when `--flag value` is given and they are not (e.g. PC-DARTS's own
    settings with `--method pcdarts`). Shown in --help; applied by `apply_presets`."""
    p.presets = [*getattr(p, "presets", ()), (flag, presets)]
    shown = "; ".join(f"--{flag} {value}: " + ", ".join(f"--{name} {_shown(v)}" for name, v in values.items())
                      for value, values in presets.items())
    p.epilog = ((p.epilog + " ") if p.epilog else "") + f"Defaults that change with a flag ({shown})."


def _shown(value):
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def apply_presets(parser, args, given):
    """`args` with the presets of `parser` (add_presets) filled into every flag not in `given`."""
    for flag, presets in getattr(parser, "presets", ()):
        for name, value in presets.get(getattr(args, flag), {}).items():
            if name not in given:
                setattr(args, name, list(value) if isinstance(value, (list, tuple)) else value)
    return args


def config_from_flags(config_class, args, **derived):
    """A run's config dataclass: every field from the flag of the same name, the `derived` ones
    (values that are not a flag's, or a flag's turned into another form) as given; a field that
    is neither keeps its default. Adding a flag to a config is then one field, not a copy."""
    flags = vars(args)
    taken = {field.name: flags[field.name] for field in dataclasses.fields(config_class)
             if field.name in flags and field.name not in derived}
    return config_class(**taken, **derived)
