"""Benchmark figures of a searched cell (the numbers of the paper's NAS-Bench-201 tables),
from any of the benchmark formats this project reads, through one cached table.

`BenchmarkTable.load(path)` recognises the format from the file's contents or name
(`FORMATS`): a NAS-Bench-201 `.pth` file (common/bench/benchmark_nb201.py) or NATS-Bench's topology
space, its fast-mode folder or archive (common/bench/benchmark_nats.py). Every format gives the six
accuracies (percent) the DrNAS paper reports for the 200-epoch schedule:

    cifar10_valid     dataset 'cifar10-valid', set 'x-valid'
    cifar10_test      dataset 'cifar10',       set 'ori-test'
    cifar100_valid    dataset 'cifar100',      set 'x-valid'
    cifar100_test     dataset 'cifar100',      set 'x-test'
    imagenet16_valid  dataset 'ImageNet16-120', set 'x-valid'
    imagenet16_test   dataset 'ImageNet16-120', set 'x-test'

each averaged over all trials (seeds), read through the benchmark package's own query
methods; NATS-Bench adds the 12-epoch accuracies and the cost figures. Every file is
unpickled through the allow-list (common/data/safe_pickle.py): plain data only, no code.

A benchmark takes minutes to load, so the first load builds a compact JSON table of every
architecture's figures and stores it beside the benchmark (`<file>.drnas-table.json`) or,
when that folder is not writable, in a cache folder (`cache_dir`, default
`$XDG_CACHE_HOME/drnas` or `~/.cache/drnas`). The table records the benchmark's name, size
and mtime (for a folder: its files' total size and latest mtime); later loads of the same
benchmark read only the table (about a second). A changed benchmark, or a table that does
not parse, is rebuilt.
"""
from __future__ import annotations

import gc
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Callable, Iterable, Mapping

from common.bench import benchmark_nats, benchmark_nb201
from common.run.checkpoint import atomic_write
from common.errors import UserError, regular_file
from common.run.results import METRICS  # the six metric names above, in this order

TABLE_SUFFIX = ".drnas-table.json"
_TABLE_FORMAT = "drnas-benchmark-table"
_TABLE_VERSION = 2

# Each format: NAME, KIND, HINT (what it is), ADVICE (pass it), TABLE_METRICS, recognise(path), build(path, log) -> table.
FORMATS = (benchmark_nb201, benchmark_nats)
ACCEPTED = "pass " + ", or ".join(f.HINT for f in FORMATS) + " with --api_path"


def identify(path: Path):
    """The format of benchmark `path`, or a one-line UserError naming the accepted ones."""
    for fmt in FORMATS:
        if fmt.recognise(path):
            return fmt
    raise UserError(f"{path} is not a benchmark this project reads: {ACCEPTED}")


class BenchmarkTable:
    """The benchmark figures of every architecture of a benchmark, by architecture string.

    Attributes:
        metrics: the names of the figures, the six accuracies (METRICS) first.
        name: the benchmark's name ("NAS-Bench-201", "NATS-Bench").
        from_table: True when read from the cached table, False when built from the benchmark.
        table_path: the table file read or written (None when it could not be written).
        source: the benchmark file or folder (a Path), or None for a table given directly.
        standin: True for a table of made-up figures (scripts/standin_benchmark.py).
    """

    def __init__(self, table: Mapping[str, Iterable[float | None]], metrics=METRICS, *, name="NAS-Bench-201",
                 source=None, from_table: bool = False, table_path=None, standin: bool = False):
        self.metrics = tuple(metrics)
        self._table = {}
        for arch, values in table.items():
            values = tuple(None if v is None else float(v) for v in values)
            if len(values) != len(self.metrics):
                raise ValueError(f"{arch}: expected {len(self.metrics)} figures, got {len(values)}")
            self._table[str(arch)] = values
        self.name = name
        self.source = None if source is None else Path(source)
        self.from_table = bool(from_table)
        self.table_path = None if table_path is None else Path(table_path)
        self.standin = bool(standin)

    def query(self, arch_str) -> dict[str, float]:
        """{metric: figure} of an architecture given as a benchmark-format string (or an
        object with `tostr()`). A figure the benchmark lacks is None; an architecture that is
        not in the benchmark (a malformed string, another space) raises KeyError."""
        key = arch_str.tostr() if hasattr(arch_str, "tostr") else arch_str
        try:
            values = self._table[key]
        except (KeyError, TypeError):
            raise KeyError(
                f"architecture {key!r} is not in the {self.name} table ({len(self._table)} architectures); "
                "expected a string like '|nor_conv_3x3~0|+|...~0|...~1|+|...~0|...~1|...~2|'"
            ) from None
        return dict(zip(self.metrics, values))

    def __contains__(self, arch_str) -> bool:
        key = arch_str.tostr() if hasattr(arch_str, "tostr") else arch_str
        return key in self._table

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self):
        origin = "table" if self.from_table else "benchmark"
        return f"BenchmarkTable({self.name}, {len(self)} architectures, from {origin}, source={self.source})"

    @classmethod
    def load(cls, path, cache_dir=None, log: Callable[[str], object] = print) -> "BenchmarkTable":
        """The figures of benchmark `path`, from its cached table when valid. `cache_dir` is
        where the table goes when the benchmark's folder is not writable; `log` gets one-line
        messages. Raises UserError for a missing, unrecognised or damaged benchmark."""
        path = Path(os.path.expanduser(str(path)))
        if not path.exists():
            raise UserError(f"benchmark {path} does not exist: {ACCEPTED}")
        if not path.is_dir():
            regular_file(path, "benchmark")  # a named pipe would block the first read for ever
        fmt = identify(path)
        signature = _signature(path)
        for table_path in table_locations(path, cache_dir):
            payload = _read_table(table_path, signature, fmt, log)
            if payload is not None:
                table = payload["archs"]
                log(f"{fmt.NAME}: read the table of {path.name} from {table_path} ({len(table)} architectures)")
                return cls(table, fmt.TABLE_METRICS, name=fmt.NAME, source=path, from_table=True,
                           table_path=table_path, standin=payload.get("standin") is True)
        log(f"{fmt.NAME}: loading {path} to build its table (first use of this benchmark: "
            "minutes; later runs read the small table)")
        table = fmt.build(path, log)
        gc.collect()  # the API held gigabytes; it is no longer referenced
        if not any(v is not None for values in table.values() for v in values[:len(METRICS)]):
            raise UserError(f"{fmt.NAME} benchmark {path} holds no 200-epoch results for the six metrics: "
                            f"{fmt.ADVICE}")
        written = write_table(path, table, fmt, cache_dir, log)
        return cls(table, fmt.TABLE_METRICS, name=fmt.NAME, source=path, from_table=False, table_path=written)


def write_table(path, table, fmt=benchmark_nb201, cache_dir=None, log: Callable[[str], object] = print,
                standin=False):
    """Write the compact table of benchmark `path` to the first writable location; returns
    where it went, or None (said in one log line) when no location is writable. `standin`
    marks a table of made-up figures; the runs that read it record so."""
    path = Path(path)
    payload = {"format": _TABLE_FORMAT, "version": _TABLE_VERSION, "kind": fmt.KIND, "source": _signature(path),
               "metrics": list(fmt.TABLE_METRICS), "archs": table}
    if standin:
        payload["standin"] = True
    errors = []
    for table_path in table_locations(path, cache_dir):
        try:
            _write_json_atomic(table_path, payload)
        except OSError as err:
            errors.append(f"{table_path.parent}: {err.strerror or err}")
            continue
        log(f"{fmt.NAME}: wrote the table ({len(table)} architectures) to {table_path}")
        return table_path
    log(f"{fmt.NAME}: could not write the table (" + "; ".join(errors)
        + "); the next run loads the benchmark again (pass a writable cache folder)")
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


def _signature(path: Path) -> dict:
    """What tells two versions of a benchmark apart without reading it."""
    if path.is_dir():
        stats = [entry.stat() for entry in os.scandir(path) if entry.is_file()]
        return {"name": path.name, "size": sum(s.st_size for s in stats),
                "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}
    st = path.stat()
    return {"name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_table(table_path: Path, signature: dict, fmt, log) -> dict | None:
    """The payload stored at `table_path` when it is valid and made from this very benchmark."""
    try:
        with open(table_path, "r", encoding="utf-8") as fh:
            payload = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        log(f"{fmt.NAME}: ignoring the unreadable table {table_path} ({type(err).__name__}); rebuilding it")
        return None
    if not _valid_table(payload, fmt):
        log(f"{fmt.NAME}: ignoring the corrupt or outdated table {table_path}; rebuilding it")
        return None
    if payload["source"] != signature:
        log(f"{fmt.NAME}: the table {table_path} was made from another version of "
            f"{signature['name']} (size or modification time differ); rebuilding it")
        return None
    return payload


def _valid_table(payload, fmt) -> bool:
    if not isinstance(payload, dict):
        return False
    if (payload.get("format"), payload.get("version"), payload.get("kind")) != (_TABLE_FORMAT, _TABLE_VERSION,
                                                                                fmt.KIND):
        return False
    if payload.get("metrics") != list(fmt.TABLE_METRICS):
        return False
    source = payload.get("source")
    if not isinstance(source, dict) or set(source) != {"name", "size", "mtime_ns"}:
        return False
    archs = payload.get("archs")
    if not isinstance(archs, dict) or not archs:
        return False
    return all(_valid_row(values, len(fmt.TABLE_METRICS)) for values in archs.values())


def _valid_row(values, n) -> bool:
    if not isinstance(values, list) or len(values) != n:
        return False
    return all(v is None or (not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v))
               for v in values)


def _write_json_atomic(target: Path, payload: dict) -> None:
    """Write `payload` to `target` atomically (temporary file in the same folder, then replace)."""
    target.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, separators=(",", ":"))

    atomic_write(target, write)


def open_benchmark(args, note):
    """The query a search runs every epoch (genotype -> figures, None for a cell outside the
    table), or None (said once through `note`) without --api_path."""
    if args.api_path is None:
        note("no --api_path: no benchmark is queried")
        return None
    bench = BenchmarkTable.load(args.api_path, log=note)

    def query(genotype):
        return bench.query(genotype) if genotype in bench else None

    # what results.json records as `benchmark_source`: a stand-in's figures are made up
    query.source = {"name": bench.name, "path": str(bench.source), "standin": bench.standin}
    return query
