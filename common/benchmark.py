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

Loading the file itself is common/benchmark_file.py's.
"""
from __future__ import annotations

import gc
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Callable, Iterable, Mapping


from common.checkpoint import atomic_write
from common.errors import UserError
from common.benchmark_file import DOWNLOAD_HINT, build_table, load_api
from common.results import METRICS  # the six metric names above, in this order

TABLE_SUFFIX = ".drnas-table.json"
_TABLE_FORMAT = "drnas-nas-bench-201-table"
_TABLE_VERSION = 1


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
            raise UserError(f"NAS-Bench-201 file {path} does not exist: {DOWNLOAD_HINT}")
        if not path.is_file():
            raise UserError(f"NAS-Bench-201 path {path} is not a file: {DOWNLOAD_HINT}")
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
                f"NAS-Bench-201 file {path} holds no 200-epoch results for the six metrics: {DOWNLOAD_HINT}"
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


def open_benchmark(args, note):
    """The query a search runs every epoch (genotype -> accuracies, None for a cell outside
    the table), or None (said once through `note`) without --api_path."""
    if args.api_path is None:
        note("no --api_path: the NAS-Bench-201 benchmark is not queried")
        return None
    bench = Benchmark201.load(args.api_path, log=note)

    def query(genotype):
        return bench.query(genotype) if genotype in bench else None

    return query
