"""Loading a NAS-Bench-201 benchmark file (`NAS-Bench-201-v1_0-e61699.pth`, 2.1 GB, or
`NAS-Bench-201-v1_1-096897.pth`, 4.7 GB) into the `nas_201_api` package's own API, and the
six accuracies of every architecture read through its query methods.

The package itself calls `torch.load` with the default `weights_only`, whose pure-Python
unpickler takes many minutes over these files, so this module loads the file itself, through
an allow-list unpickler (common/data/safe_pickle.py): the C unpickler's speed, and a file that
names anything but plain data is refused in one line, never loaded in full. The loaded dict
is handed to `NASBench201API(the_dict, verbose=False)`.
"""
from __future__ import annotations

import contextlib
import gc
import re
import warnings
from pathlib import Path
from typing import Callable

import torch

from common.data import safe_pickle
from common.errors import UserError, one_line
from common.run.results import METRICS

# (dataset given to get_more_info, the key of its result, the metric it fills). For
# 'cifar10-valid' get_more_info's 'valid-accuracy' is set 'x-valid'; for 'cifar10' its
# 'test-accuracy' is set 'ori-test'; for 'cifar100' and 'ImageNet16-120'
# 'valid-accuracy' is 'x-valid' and 'test-accuracy' is 'x-test'.
_QUERIES = (
    ("cifar10-valid", (("valid-accuracy", "cifar10_valid"),)),
    ("cifar10", (("test-accuracy", "cifar10_test"),)),
    ("cifar100", (("valid-accuracy", "cifar100_valid"), ("test-accuracy", "cifar100_test"))),
    ("ImageNet16-120", (("valid-accuracy", "imagenet16_valid"), ("test-accuracy", "imagenet16_test"))),
)
NAME = "NAS-Bench-201"
KIND = "nas-bench-201"
TABLE_METRICS = METRICS
OFFICIAL_FILES = ("NAS-Bench-201-v1_0-e61699.pth", "NAS-Bench-201-v1_1-096897.pth")
HINT = f"the NAS-Bench-201 file {OFFICIAL_FILES[0]} or {OFFICIAL_FILES[1]}"
ADVICE = f"pass {HINT} with --api_path"
# torch.save's zip format, and its legacy format (a protocol-2 pickle of a magic number)
_MAGIC = (b"PK\x03\x04", b"\x80\x02")
_REQUIRED_KEYS = ("meta_archs", "arch2infos", "evaluated_indexes")


def _short(err: BaseException) -> str:
    text = one_line(err)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    if not text:
        return type(err).__name__
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{type(err).__name__}: {text}"


@contextlib.contextmanager
def _no_gc():
    """The cyclic garbage collector off: unpickling creates ~10^8 containers, none of them
    garbage, and the collections it triggers would only scan them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _torch_load(path: Path, log):
    """torch.load the benchmark file through the allow-list unpickler (common/data/safe_pickle.py):
    the C unpickler's speed, and a file that names anything but plain data is refused."""
    bad = (f"NAS-Bench-201 file {path} does not load: it is truncated, not a torch file, or damaged "
           f"({{}}); {ADVICE}")
    with warnings.catch_warnings(), _no_gc():
        warnings.simplefilter("ignore")
        try:
            return torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=safe_pickle.TORCH_MODULE)
        except safe_pickle.UnsafeGlobal as err:
            raise safe_pickle.refusal(path, "NAS-Bench-201", err) from None
        except MemoryError:
            raise UserError(f"not enough memory to load NAS-Bench-201 file {path}: run on a machine "
                            "with more RAM once, the accuracy table it writes is small") from None
        except OSError as err:
            raise UserError(f"cannot read NAS-Bench-201 file {path}: {err.strerror or err}; "
                            "check its permissions") from None
        except Exception as err:  # torch raises many kinds for a damaged or foreign file
            raise UserError(bad.format(_short(err))) from None


class _SharedDict(dict):
    """A dict that `copy.deepcopy` returns as is.

    NASBench201API deep-copies the dict it is given; for a multi-gigabyte benchmark that
    doubles the memory and takes minutes. The loaded dict is ours and not reused, so
    sharing it is safe.
    """

    def __deepcopy__(self, memo):
        return self


def load_api(path, log: Callable[[str], object] = print):
    """A `nas_201_api.NASBench201API` for benchmark file `path` (loaded as described above)."""
    from nas_201_api import NASBench201API

    path = Path(path)
    data = _torch_load(path, log)
    wrong = f"NAS-Bench-201 file {path} loads but is not a NAS-Bench-201 benchmark ({{}}); {ADVICE}"
    if not isinstance(data, dict):
        raise UserError(wrong.format(f"it holds a {type(data).__name__}, not a dict"))
    missing = [key for key in _REQUIRED_KEYS if key not in data]
    if missing:
        raise UserError(wrong.format(f"no {', '.join(repr(k) for k in missing)} entry"))
    try:
        api = NASBench201API(_SharedDict(data), verbose=False)
    except Exception as err:
        raise UserError(wrong.format(_short(err))) from None
    api.filename = path.name
    return api


def accuracies(api, index, hp="200", suffix=""):
    """{metric + suffix: accuracy (percent, the mean over trials) or None} of one architecture,
    through the API's get_more_info (nas_201_api's and nats_bench's work alike)."""
    row = {}
    for dataset, wanted in _QUERIES:
        try:
            info = api.get_more_info(index, dataset, iepoch=None, hp=hp, is_random=False)
        except (KeyError, ValueError, IndexError, AssertionError, TypeError):
            info = {}  # no result of this schedule on this dataset
        for key, metric in wanted:
            value = info.get(key)
            row[metric + suffix] = None if value is None else float(value)
    return row


def recognise(path):
    """A NAS-Bench-201 file: named .pth, or a file in torch's zip or legacy format."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix == ".pth":
        return True
    with open(path, "rb") as fh:
        return fh.read(4).startswith(_MAGIC)


def build(path, log):
    """{arch string: the six 200-epoch accuracies} of every evaluated architecture."""
    api = load_api(path, log)
    table = {}
    for arch_str in list(api.meta_archs):
        index = api.query_index_by_arch(arch_str)
        if index < 0 or index not in api.arch2infos_dict:
            continue  # not evaluated
        row = accuracies(api, index)
        table[arch_str] = [row[m] for m in METRICS]
    return table
