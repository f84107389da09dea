"""Time the first load of a NAS-Bench-201-sized benchmark file, and its peak memory.

    scripts/with_venv.sh python scripts/qa/benchmark_load_time.py /tmp/nb201-sized.pth
    scripts/with_venv.sh python scripts/qa/benchmark_load_time.py /tmp/small.pth --archs 500

The first command writes (once; it is kept) a file with the structure and size of
NAS-Bench-201-v1_0-e61699.pth: 15,625 architectures, each with its 12-epoch ('less') and
200-epoch ('full') results as the `nas_201_api` package's `ArchResults` state dicts, nested per
dataset (cifar10-valid, cifar10, cifar100, ImageNet16-120) and per seed, with per-epoch
train and evaluation records, in torch's legacy format (as the 2020 files were saved). The
real accuracies cannot be downloaded here, so every architecture holds one of a few made-up
result sets; the unpickling work is that of the real file. The file is streamed to disk one
architecture at a time, so writing it needs little memory.

Then, in a fresh process, it times `BenchmarkTable.load` as a search's first use of the file
does it (the allow-list unpickler, the package's API, the six queries per architecture, the
cached table written beside it), reports the peak resident memory of that process, and times
the second load (from the table). Prints a Markdown table for docs/performance.md.
"""
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

REAL_ARCHS = 15625
VARIANTS = 16  # distinct made-up result sets, cycled over the architectures
# Per-seed trials of the 200-epoch schedule, (dataset, seeds); with the 12-epoch cifar10-valid
# trial this gives about 0.14 MB per architecture, 2.1-2.2 GB in all, as the real v1_0 file.
FULL_TRIALS = (("cifar10-valid", (777,)), ("cifar10", (777,)), ("cifar100", (777,)), ("ImageNet16-120", (777,)))


def _variant(index):
    """The 'less' and 'full' ArchResults state dicts of made-up architecture `index`."""
    from nas_201_api import ArchResults

    from nb201_fixture import DRNAS_ARCH, default_accuracies, final_eval_accuracies, trial

    acc = default_accuracies(index)
    full = ArchResults(index, DRNAS_ARCH)
    for dataset, seeds in FULL_TRIALS:
        for seed in seeds:
            full.update(dataset, seed, trial(index, DRNAS_ARCH, dataset, seed, 200, final_eval_accuracies(acc)[dataset]))
    less = ArchResults(index, DRNAS_ARCH)
    less.update("cifar10-valid", 777, trial(index, DRNAS_ARCH, "cifar10-valid", 777, 12,
                                            {"x-valid": acc["cifar10_valid"] - 20, "ori-test": acc["cifar10_test"] - 21}))
    return {"less": less.state_dict(), "full": full.state_dict()}


def _arch_strings(count):
    from itertools import islice, product

    from space201.model_search import OPS, genotype_string

    return [genotype_string(list(ops)) for ops in islice(product(range(len(OPS)), repeat=6), count)]


def _fragment(obj):
    """The body of a protocol-2 pickle of `obj`, without its PROTO header and STOP; pickles
    concatenated this way load as one (each fragment's memo entries are set before use)."""
    data = pickle.dumps(obj, protocol=2)
    assert data[:2] == pickle.PROTO + b"\x02" and data[-1:] == pickle.STOP
    return data[2:-1]


def _set_arch(state, index, arch_str):
    for part in state.values():
        part["arch_index"], part["arch_str"] = index, arch_str
        for result in part["all_results"].values():
            result["arch_config"] = {**result["arch_config"], "arch_str": arch_str}
    return state


def write_sized_file(path, count):
    """Stream a legacy-format torch file of `count` architectures to `path`."""
    import torch.serialization as ts

    archs = _arch_strings(count)
    variants = [_variant(i) for i in range(VARIANTS)]
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as fh:
        for header in (ts.MAGIC_NUMBER, ts.PROTOCOL_VERSION,
                       {"protocol_version": ts.PROTOCOL_VERSION, "little_endian": sys.byteorder == "little",
                        "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(header, fh, protocol=2)
        fh.write(pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + pickle.MARK)
        for key, value in (("meta_archs", archs), ("total_archs", count), ("evaluated_indexes", set(range(count)))):
            fh.write(_fragment(key) + _fragment(value))
        fh.write(_fragment("arch2infos") + pickle.EMPTY_DICT)
        for index, arch_str in enumerate(archs):
            fh.write(pickle.MARK + _fragment(index) + _fragment(_set_arch(variants[index % VARIANTS], index, arch_str))
                     + pickle.SETITEMS)
        fh.write(pickle.SETITEMS + pickle.STOP)
        pickle.dump([], fh, protocol=2)  # the storage keys: the file holds no tensors
    os.replace(tmp, path)


_CHILD = """
import json, resource, sys, time
sys.path[:0] = {paths!r}
from common.bench.benchmark import BenchmarkTable
start = time.perf_counter()
bench = BenchmarkTable.load({path!r}, log=lambda line: None)
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "archs": len(bench), "from_table": bench.from_table,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def timed_load(path):
    """BenchmarkTable.load(path) in a fresh process: its time, size and peak memory."""
    code = _CHILD.format(paths=[str(ROOT), str(ROOT / "tests")], path=str(path))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path", help="the generated benchmark file (written when absent, then kept)")
    p.add_argument("--archs", type=int, default=REAL_ARCHS, help="architectures in the generated file")
    args = p.parse_args(argv)
    path = Path(args.path)
    if not path.is_file():
        start = time.perf_counter()
        write_sized_file(path, args.archs)
        print(f"wrote {path}: {args.archs} architectures, {path.stat().st_size / 1e9:.2f} GB, "
              f"{time.perf_counter() - start:.0f} s")
    table = path.with_name(path.name + ".drnas-table.json")
    table.unlink(missing_ok=True)
    first = timed_load(path)
    second = timed_load(path)
    cores = os.cpu_count()
    print(f"| file | first load | peak memory | second load (table) |\n| --- | --- | --- | --- |\n"
          f"| {first['archs']} architectures, {path.stat().st_size / 1e9:.2f} GB | {first['seconds']:.0f} s "
          f"| {first['peak_rss_mb'] / 1024:.1f} GB | {second['seconds']:.2f} s ({second['peak_rss_mb']:.0f} MB) |")
    print(f"({cores} CPU cores; first load through the allow-list unpickler, table from_table={second['from_table']})")
    return first, second


if __name__ == "__main__":
    main()
