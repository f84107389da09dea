"""NAS-Bench-201 accuracies of a searched genotype (the numbers of the paper's 201 tables).

`Benchmark201.load(path)` gives, for every architecture of the NAS-Bench-201 space, the
six accuracies (percent) the DrNAS paper reports for the 200-epoch schedule:

    cifar10_valid     dataset 'cifar10-valid', set 'x-valid'
    cifar10_test      dataset 'cifar10',       set 'ori-test'
    cifar100_valid    dataset 'cifar100',      set 'x-valid'
    cifar100_test     dataset 'cifar100',      set 'x-test'
    imagenet16_valid  dataset 'ImageNet16-120', set 'x-valid'
    imagenet16_test   dataset 'ImageNet16-120', set 'x-test'

each averaged over all trials (seeds) of that architecture, as the package's own printout
does. They come from the `nas_201_api` package's query methods
(`query_index_by_arch`, then `get_more_info(index, dataset, iepoch=None, hp='200',
is_random=False)` and its 'valid-accuracy' / 'test-accuracy' entries), never from its
printed text.

The benchmark file is 2.1 GB (v1_0) or 4.7 GB (v1_1) and takes minutes to load, so the
first load builds a compact JSON table of all architectures' six accuracies and stores it
beside the benchmark file (`<file>.drnas-table.json`) or, when that folder is not
writable, in a cache folder (`cache_dir`, default `$XDG_CACHE_HOME/drnas` or
`~/.cache/drnas`). The table records the benchmark file's name, size and mtime; later
loads of the same file read only the table (about a second) and never open the `.pth`.
A changed benchmark file, or a table that does not parse, is rebuilt from the file.

The package itself calls `torch.load` with the default `weights_only` (True since torch
2.6), which the real files may not satisfy, so this module loads the file itself: first
with `weights_only=True`, allow-listing a few plain numpy types, and only if the file
needs other globals, in full (`weights_only=False`) with a one-line warning. The loaded
dict is handed to `NASBench201API(the_dict, verbose=False)`.
"""
from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch

from common.checkpoint import atomic_write
from common.errors import UserError
from common.results import METRICS  # the six metric names above, in this order

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

OFFICIAL_FILES = ("NAS-Bench-201-v1_0-e61699.pth", "NAS-Bench-201-v1_1-096897.pth")
TABLE_SUFFIX = ".drnas-table.json"
_TABLE_FORMAT = "drnas-nas-bench-201-table"
_TABLE_VERSION = 1
_REQUIRED_KEYS = ("meta_archs", "arch2infos", "evaluated_indexes")
_DOWNLOAD_HINT = f"download {OFFICIAL_FILES[0]} or {OFFICIAL_FILES[1]} and pass its path with --api_path"


class Benchmark201:
    """The six NAS-Bench-201 accuracies (percent) of every architecture in a benchmark file.

    Attributes:
        from_table: True when this object was read from the cached table, False when it
            was built from the benchmark file itself (first load, changed file, corrupt table).
        table_path: the table file read or written (None when it could not be written).
        source: the benchmark file (a Path), or None for a table given directly.
    """

    def __init__(self, table: Mapping[str, Iterable[float | None]], *, source=None,
                 from_table: bool = False, table_path=None):
        self._table = {}
        for arch, values in table.items():
            values = tuple(None if v is None else float(v) for v in values)
            if len(values) != len(METRICS):
                raise ValueError(f"{arch}: expected {len(METRICS)} accuracies, got {len(values)}")
            self._table[str(arch)] = values
        self.source = None if source is None else Path(source)
        self.from_table = bool(from_table)
        self.table_path = None if table_path is None else Path(table_path)

    # ------------------------------------------------------------------ queries
    def query(self, arch_str) -> dict[str, float]:
        """The six METRICS of an architecture given as a benchmark-format string.

        An object with a `tostr()` method (a genotype) is accepted too. A metric the file
        holds no result for is None. An architecture that is not in the benchmark (a
        malformed string, another search space) raises KeyError.
        """
        key = arch_str.tostr() if hasattr(arch_str, "tostr") else arch_str
        try:
            values = self._table[key]
        except (KeyError, TypeError):
            raise KeyError(
                f"architecture {key!r} is not in the NAS-Bench-201 table ({len(self._table)} "
                "architectures); expected a string like '|nor_conv_3x3~0|+|...~0|...~1|+|...~0|...~1|...~2|'"
            ) from None
        return dict(zip(METRICS, values))

    def __contains__(self, arch_str) -> bool:
        key = arch_str.tostr() if hasattr(arch_str, "tostr") else arch_str
        return key in self._table

    def __len__(self) -> int:
        return len(self._table)

    @property
    def archs(self) -> list[str]:
        return list(self._table)

    def best(self) -> dict[str, float]:
        """The highest value of each metric over all architectures (the paper's 'optimal' row).

        Each metric is maximised on its own, as in the NAS-Bench-201 and DrNAS tables, so
        the six numbers may come from different architectures.
        """
        best = {}
        for i, name in enumerate(METRICS):
            values = [v[i] for v in self._table.values() if v[i] is not None]
            best[name] = max(values) if values else None
        return best

    def to_table(self) -> dict[str, list[float | None]]:
        return {arch: list(values) for arch, values in self._table.items()}

    def __repr__(self):
        origin = "table" if self.from_table else "file"
        return f"Benchmark201({len(self)} architectures, from {origin}, source={self.source})"

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path, cache_dir=None, log: Callable[[str], object] = print) -> "Benchmark201":
        """Load the accuracies of benchmark file `path`, from its cached table when valid.

        `cache_dir` is where the table goes when the benchmark's folder is not writable
        (default `$XDG_CACHE_HOME/drnas` or `~/.cache/drnas`). `log` gets one-line messages.
        Raises UserError for a missing file or one that does not load as a NAS-Bench-201 file.
        """
        path = Path(os.path.expanduser(str(path)))
        if not path.exists():
            raise UserError(f"NAS-Bench-201 file {path} does not exist: {_DOWNLOAD_HINT}")
        if not path.is_file():
            raise UserError(f"NAS-Bench-201 path {path} is not a file: {_DOWNLOAD_HINT}")
        signature = _file_signature(path)
        candidates = table_locations(path, cache_dir)

        for table_path in candidates:
            table = _read_table(table_path, signature, log)
            if table is not None:
                log(f"NAS-Bench-201: read the accuracy table of {path.name} from {table_path} "
                    f"({len(table)} architectures)")
                return cls(table, source=path, from_table=True, table_path=table_path)

        log(f"NAS-Bench-201: loading {path} to build its accuracy table "
            "(first use of this file: 2 to 25 minutes; later runs read the small table)")
        table = build_table(load_api(path, log))
        gc.collect()  # the API holds gigabytes; it is no longer referenced
        if not any(v is not None for values in table.values() for v in values):
            raise UserError(
                f"NAS-Bench-201 file {path} holds no 200-epoch results for the six metrics: {_DOWNLOAD_HINT}"
            )
        written = write_table(path, table, cache_dir, log)
        return cls(table, source=path, from_table=False, table_path=written)


# ---------------------------------------------------------------------- helpers
def write_table(path, table, cache_dir=None, log: Callable[[str], object] = print):
    """Write the compact table of benchmark file `path` to the first writable location;
    returns where it went, or None (said in one log line) when no location is writable."""
    path = Path(path)
    payload = {"format": _TABLE_FORMAT, "version": _TABLE_VERSION, "source": _file_signature(path),
               "metrics": list(METRICS), "archs": table}
    errors = []
    for table_path in table_locations(path, cache_dir):
        try:
            _write_json_atomic(table_path, payload)
        except OSError as err:
            errors.append(f"{table_path.parent}: {err.strerror or err}")
            continue
        log(f"NAS-Bench-201: wrote the accuracy table ({len(table)} architectures) to {table_path}")
        return table_path
    log("NAS-Bench-201: could not write the accuracy table (" + "; ".join(errors)
        + "); the next run loads the benchmark file again (pass a writable cache folder)")
    return None


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "drnas"


def table_locations(path, cache_dir=None) -> list[Path]:
    """Where the table of benchmark `path` is looked for and written, in order."""
    path = Path(path)
    beside = path.with_name(path.name + TABLE_SUFFIX)
    folder = Path(os.path.expanduser(str(cache_dir))) if cache_dir is not None else default_cache_dir()
    digest = hashlib.sha1(str(path.resolve()).encode("utf-8")).hexdigest()[:12]
    return [beside, folder / f"{path.name}.{digest}{TABLE_SUFFIX}"]


def _file_signature(path: Path) -> dict:
    st = path.stat()
    return {"name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_table(table_path: Path, signature: dict, log) -> dict | None:
    """The table stored at `table_path` when it is valid and made from this very file."""
    try:
        with open(table_path, "r", encoding="utf-8") as fh:
            payload = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        log(f"NAS-Bench-201: ignoring the unreadable table {table_path} ({type(err).__name__}); "
            "rebuilding it from the benchmark file")
        return None
    if not _valid_table(payload):
        log(f"NAS-Bench-201: ignoring the corrupt table {table_path}; rebuilding it from the benchmark file")
        return None
    if payload["source"] != signature:
        log(f"NAS-Bench-201: the table {table_path} was made from another version of "
            f"{signature['name']} (size or modification time differ); rebuilding it")
        return None
    return payload["archs"]


def _valid_table(payload) -> bool:
    if not isinstance(payload, dict):
        return False
    if payload.get("format") != _TABLE_FORMAT or payload.get("version") != _TABLE_VERSION:
        return False
    if payload.get("metrics") != list(METRICS):
        return False
    source = payload.get("source")
    if not isinstance(source, dict) or set(source) != {"name", "size", "mtime_ns"}:
        return False
    archs = payload.get("archs")
    if not isinstance(archs, dict) or not archs:
        return False
    n = len(METRICS)
    for values in archs.values():
        if not isinstance(values, list) or len(values) != n:
            return False
        for v in values:
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                return False
    return True


def _write_json_atomic(target: Path, payload: dict) -> None:
    """Write `payload` to `target` atomically (temporary file in the same folder, then replace)."""
    target.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, separators=(",", ":"))

    atomic_write(target, write)


def _numpy_safe_globals() -> list:
    """The plain numpy types (scalars, dtypes, arrays) a benchmark pickle may contain."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency of nas_201_api
        return []
    core = getattr(np, "_core", None) or np.core
    multiarray = core.multiarray
    allowed = [np.dtype, np.ndarray]
    for name in ("scalar", "_reconstruct"):
        fn = getattr(multiarray, name)
        # Files written with numpy 1.x name 'numpy.core.multiarray', with numpy 2.x 'numpy._core.multiarray'.
        allowed += [(fn, f"numpy.core.multiarray.{name}"), (fn, f"numpy._core.multiarray.{name}")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in dir(dtypes):
            obj = getattr(dtypes, name)
            if name.endswith("DType") and isinstance(obj, type):
                allowed.append((obj, f"numpy.dtypes.{name}"))
    return allowed


_UNSAFE_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split())
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    if not text or text.startswith("Weights only load failed"):
        return type(err).__name__
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{type(err).__name__}: {text}"


def _torch_load(path: Path, log):
    """torch.load the benchmark file: weights_only first, in full only if it needs other globals."""
    bad = (f"NAS-Bench-201 file {path} does not load: it is truncated, not a torch file, or damaged "
           f"({{}}); {_DOWNLOAD_HINT}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.serialization.safe_globals(_numpy_safe_globals()):
                return torch.load(str(path), map_location="cpu", weights_only=True)
        except MemoryError:
            raise UserError(f"not enough memory to load NAS-Bench-201 file {path}: run on a machine "
                            "with more RAM once, the accuracy table it writes is small") from None
        except OSError as err:
            raise UserError(f"cannot read NAS-Bench-201 file {path}: {err.strerror or err}; "
                            "check its permissions") from None
        except Exception as err:  # torch raises many kinds for a damaged or foreign file
            match = _UNSAFE_GLOBAL.search(str(err))
            if match is None:
                raise UserError(bad.format(_short(err))) from None
            needed = match.group(1)
        log(f"warning: {path.name} needs {needed}, which torch.load(weights_only=True) refuses; "
            "unpickling it in full (weights_only=False), which can run code from the file: "
            "do this only with the official NAS-Bench-201 file")
        try:
            return torch.load(str(path), map_location="cpu", weights_only=False)
        except MemoryError:
            raise UserError(f"not enough memory to load NAS-Bench-201 file {path}: run on a machine "
                            "with more RAM once, the accuracy table it writes is small") from None
        except Exception as err:
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
    wrong = f"NAS-Bench-201 file {path} loads but is not a NAS-Bench-201 benchmark ({{}}); {_DOWNLOAD_HINT}"
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


def build_table(api) -> dict[str, list[float | None]]:
    """Every evaluated architecture's six METRICS, through the API's query methods.

    A metric the file holds no result for (a dataset an architecture was not trained on)
    is None.
    """
    table = {}
    for arch_str in list(api.meta_archs):
        index = api.query_index_by_arch(arch_str)
        if index < 0 or index not in api.arch2infos_dict:
            continue  # not evaluated
        row = dict.fromkeys(METRICS)
        for dataset, wanted in _QUERIES:
            try:
                info = api.get_more_info(index, dataset, iepoch=None, hp="200", is_random=False)
            except (KeyError, ValueError, IndexError, AssertionError, TypeError):
                continue  # no 200-epoch result on this dataset
            for key, metric in wanted:
                value = info.get(key)
                row[metric] = None if value is None else float(value)
        table[arch_str] = [row[m] for m in METRICS]
    return table
