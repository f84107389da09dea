"""common.bench.benchmark: NAS-Bench-201 queries, the cached accuracy table, and user errors."""
import tempfile
import collections
import json
import os
import stat

import pytest
import torch

import common.bench.benchmark as benchmark
from common.bench.benchmark import METRICS, BenchmarkTable, table_locations
from common.errors import UserError
from nb201_fixture import DEFAULT_ACCURACIES, DRNAS_ARCH, write_tiny_benchmark


class Log(list):
    """A `log` callable that keeps the lines."""

    def __call__(self, line):
        assert "\n" not in str(line)
        self.append(str(line))


@pytest.fixture
def bench(tmp_path):
    folder = tmp_path / "bench"
    folder.mkdir()
    path = folder / "NAS-Bench-201-v1_0-e61699.pth"
    expected = write_tiny_benchmark(path)
    return path, expected


def one_line_user_error(excinfo):
    msg = str(excinfo.value)
    assert msg.strip() and "\n" not in msg and "\r" not in msg
    return msg


def make_unwritable(folder, monkeypatch):
    """Make `folder` refuse new files (chmod; for root, which ignores it, fail mkstemp there)."""
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    probe = folder / ".probe"
    try:
        probe.write_text("x")
    except OSError:
        return
    probe.unlink()
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and os.path.samefile(dir, folder):
            raise PermissionError(13, "Permission denied", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def forbid_benchmark_file(monkeypatch, path):
    """Fail the test if anything loads or opens the benchmark file."""
    def no_load(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_load)
    import nas_201_api

    monkeypatch.setattr(nas_201_api, "NASBench201API", no_load)
    real_open = open
    opened = []

    def spy_open(file, *args, **kwargs):
        opened.append(os.fspath(file) if isinstance(file, (str, os.PathLike)) else file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy_open)
    return opened


def test_query_returns_the_accuracies_put_in(bench, tmp_path):
    path, expected = bench
    log = Log()
    b = BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=log)
    assert b.from_table is False
    assert len(b) == len(expected) == 5
    for arch, metrics in expected.items():
        got = b.query(arch)
        assert list(got) == list(METRICS)
        assert got == metrics  # exactly the mean of the two trials' last-epoch accuracies
    # ... which are the nominal numbers given to the fixture (the DrNAS paper's, here)
    assert b.query(DRNAS_ARCH) == pytest.approx(DEFAULT_ACCURACIES[DRNAS_ARCH], abs=1e-9)
    assert b.query(DRNAS_ARCH)["cifar10_test"] == pytest.approx(94.36, abs=1e-9)
    assert not any("warning" in line for line in log)  # numpy scalars load with weights_only=True


def test_custom_accuracies_and_archs(tmp_path):
    arch = "|nor_conv_1x1~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    acc = dict(zip(METRICS, (12.5, 25.0, 37.5, 50.0, 62.5, 75.0)))
    path = tmp_path / "b.pth"
    expected = write_tiny_benchmark(path, accuracies={arch: acc})
    assert expected == {arch: acc}  # binary-exact numbers survive the two-trial mean
    b = BenchmarkTable.load(path, cache_dir=tmp_path / "c", log=Log())
    assert len(b) == 1 and arch in b
    assert b.query(arch) == acc


def test_first_load_builds_table_second_reads_it(bench, tmp_path, monkeypatch):
    path, expected = bench
    first = BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=Log())
    table = path.with_name(path.name + ".drnas-table.json")
    assert first.from_table is False and first.table_path == table and table.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, table.name])  # no temp left
    payload = json.loads(table.read_text())
    assert payload["source"]["name"] == path.name and payload["source"]["size"] == path.stat().st_size
    assert not (tmp_path / "cache").exists()

    opened = forbid_benchmark_file(monkeypatch, path)
    log = Log()
    second = BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=log)
    assert second.from_table is True and second.table_path == table
    assert all(os.fspath(path) != f for f in opened) and os.fspath(table) in opened
    for arch, metrics in expected.items():
        assert second.query(arch) == metrics
    assert len(second) == len(first)
    assert any("read the table" in line for line in log)


def test_changed_size_invalidates_table(bench, tmp_path):
    path, expected = bench
    BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=Log())
    old = path.stat()
    archs = list(expected)[:3]
    new_expected = write_tiny_benchmark(path, archs=archs)
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))  # same mtime, other size
    assert path.stat().st_size != old.st_size
    log = Log()
    b = BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=log)
    assert b.from_table is False and len(b) == 3
    assert {a: b.query(a) for a in archs} == new_expected
    assert any("another version" in line for line in log)
    assert BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=Log()).from_table is True


def test_changed_mtime_invalidates_table(bench, tmp_path):
    path, expected = bench
    BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=Log())
    old = path.stat()
    arch = DRNAS_ARCH
    acc = {m: v + 1.0 for m, v in DEFAULT_ACCURACIES[arch].items()}
    new_expected = write_tiny_benchmark(path, accuracies={**DEFAULT_ACCURACIES, arch: acc})
    new_mtime = old.st_mtime_ns + 7_000_000_000  # explicit: no reliance on the clock's resolution
    os.utime(path, ns=(new_mtime, new_mtime))
    assert path.stat().st_size == old.st_size  # only the mtime tells the files apart
    b = BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=Log())
    assert b.from_table is False
    assert b.query(arch) == new_expected[arch] == pytest.approx(acc, abs=1e-9)
    assert b.query(arch) != expected[arch]


def test_unwritable_folder_puts_table_in_cache_dir(bench, tmp_path, monkeypatch):
    path, expected = bench
    cache = tmp_path / "my-cache"
    make_unwritable(path.parent, monkeypatch)
    try:
        first = BenchmarkTable.load(path, cache_dir=cache, log=Log())
        assert first.from_table is False
        assert first.table_path == table_locations(path, cache)[1]
        assert first.table_path.parent == cache and first.table_path.is_file()
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
        assert [p.name for p in cache.iterdir()] == [first.table_path.name]  # no temp left

        opened = forbid_benchmark_file(monkeypatch, path)
        second = BenchmarkTable.load(path, cache_dir=cache, log=Log())
        assert second.from_table is True and second.table_path == first.table_path
        assert os.fspath(path) not in opened
        assert {a: second.query(a) for a in expected} == expected
    finally:
        path.parent.chmod(0o755)


def test_default_cache_dir_follows_xdg(bench, tmp_path, monkeypatch):
    path, expected = bench
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    make_unwritable(path.parent, monkeypatch)
    try:
        b = BenchmarkTable.load(path, log=Log())
    finally:
        path.parent.chmod(0o755)
    assert b.table_path is not None and b.table_path.parent == tmp_path / "xdg" / "drnas"
    assert b.table_path.is_file()


def test_failed_table_write_leaves_no_files(bench, tmp_path, monkeypatch):
    path, expected = bench

    def broken_dump(obj, fh, **kwargs):
        fh.write('{"format": "drnas')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(benchmark.json, "dump", broken_dump)
    log = Log()
    b = BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=log)
    assert b.from_table is False and b.table_path is None
    assert {a: b.query(a) for a in expected} == expected
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert list((tmp_path / "cache").iterdir()) == []
    assert any("could not write" in line for line in log)


@pytest.mark.parametrize("content", [
    b"\x00\xff not json at all",
    b"[]",
    b"half",  # replaced below by the first half of a real table
    b"bad-values",  # replaced below by a real table with a damaged row
])
def test_corrupt_table_is_rebuilt(bench, tmp_path, content):
    path, expected = bench
    first = BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=Log())
    table = first.table_path
    good = table.read_bytes()
    if content == b"half":
        content = good[: len(good) // 2]
    elif content == b"bad-values":
        payload = json.loads(good)
        payload["archs"][DRNAS_ARCH] = ["94.36", None]
        content = json.dumps(payload).encode()
    table.write_bytes(content)
    log = Log()
    b = BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=log)
    assert b.from_table is False
    assert {a: b.query(a) for a in expected} == expected
    assert len([line for line in log if str(table) in line and "rebuild" in line]) == 1
    assert json.loads(table.read_bytes()) == json.loads(good)
    assert BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=Log()).from_table is True


def test_unknown_architecture_raises_keyerror(bench, tmp_path):
    path, expected = bench
    b = BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=Log())
    unknown = "|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|"  # valid, not in the tiny file
    assert unknown not in b and DRNAS_ARCH in b
    with pytest.raises(KeyError, match="not in the NAS-Bench-201 table"):
        b.query(unknown)
    with pytest.raises(KeyError):
        b.query("nor_conv_3x3")


def test_query_accepts_genotype_with_tostr(bench, tmp_path):
    path, expected = bench
    b = BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=Log())

    class Genotype:
        def tostr(self):
            return DRNAS_ARCH

    assert b.query(Genotype()) == expected[DRNAS_ARCH]


def test_a_file_needing_other_globals_is_refused_not_loaded_in_full(bench, tmp_path):
    path, _ = bench
    data = torch.load(path, weights_only=False)
    data["evaluated_indexes"] = collections.deque(sorted(data["evaluated_indexes"]))
    torch.save(data, path)
    with pytest.raises(UserError) as excinfo:
        BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=Log())
    msg = one_line_user_error(excinfo)
    assert "collections.deque" in msg and "refused" in msg and path.name in msg


class RunsCode:
    """Unpickling calls os.system: a benchmark file crafted to run code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_crafted_benchmark_file_does_not_run_code(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "NAS-Bench-201-v1_0-e61699.pth"
    torch.save({"meta_archs": [], "arch2infos": RunsCode(marker), "evaluated_indexes": set()}, path)
    with pytest.raises(UserError) as excinfo:
        BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=Log())
    assert "system" in one_line_user_error(excinfo)
    assert not marker.exists()


def test_missing_file(tmp_path):
    with pytest.raises(UserError) as excinfo:
        BenchmarkTable.load(tmp_path / "nope.pth", cache_dir=tmp_path / "cache", log=Log())
    msg = one_line_user_error(excinfo)
    assert "nope.pth" in msg and "does not exist" in msg
    assert "NAS-Bench-201-v1_0-e61699.pth" in msg and "NAS-Bench-201-v1_1-096897.pth" in msg
    assert "--api_path" in msg


@pytest.mark.parametrize("make", ["folder", "text"])
def test_an_unrecognised_benchmark_names_the_accepted_formats(tmp_path, make):
    path = tmp_path / "bench"
    if make == "folder":
        path.mkdir()
    else:
        path.write_text("accuracies, one per line\n")
    with pytest.raises(UserError) as excinfo:
        BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=Log())
    msg = one_line_user_error(excinfo)
    assert "not a benchmark this project reads" in msg
    assert "NAS-Bench-201-v1_0-e61699.pth" in msg and "NATS-tss-v1_0-3ffb9-simple" in msg


def test_a_torch_file_is_recognised_by_its_contents(bench, tmp_path):
    path, expected = bench
    renamed = tmp_path / "nb201.bin"
    renamed.write_bytes(path.read_bytes())
    assert BenchmarkTable.load(renamed, cache_dir=tmp_path / "cache", log=Log()).query(DRNAS_ARCH) == expected[DRNAS_ARCH]


def _truncated(path, good):
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])


def _text(path, good):
    path.write_text("this is not a torch file\n" * 20)


def _empty(path, good):
    path.write_bytes(b"")


def _zeros(path, good):
    path.write_bytes(bytes(4096))


@pytest.mark.parametrize("damage", [_truncated, _text, _empty, _zeros], ids=lambda f: f.__name__.strip("_"))
def test_damaged_file_raises_user_error(tmp_path, damage):
    good = tmp_path / "good.pth"
    write_tiny_benchmark(good)
    path = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    damage(path, good)
    log = Log()
    with pytest.raises(UserError) as excinfo:
        BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=log)
    msg = one_line_user_error(excinfo)
    assert str(path) in msg and "does not load" in msg
    assert not any("weights_only=False" in line for line in log)
    assert not (tmp_path / "cache").exists()
    assert not path.with_name(path.name + ".drnas-table.json").exists()


@pytest.mark.parametrize("content", [
    {"state_dict": {"w": torch.zeros(2)}},
    [1, 2, 3],
    {"meta_archs": ["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"], "arch2infos": {0: {"full": {}}},
     "evaluated_indexes": [0]},
], ids=["checkpoint", "list", "broken-arch2infos"])
def test_torch_file_with_wrong_content_raises_user_error(tmp_path, content):
    path = tmp_path / "model.pth"
    torch.save(content, path)
    with pytest.raises(UserError) as excinfo:
        BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=Log())
    msg = one_line_user_error(excinfo)
    assert str(path) in msg and "not a NAS-Bench-201 benchmark" in msg


def test_fixture_makes_plausible_accuracies_for_many_archs(tmp_path):
    from itertools import islice, product

    ops = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
    archs = ["|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*c) for c in islice(product(ops, repeat=6), 200)]
    path = tmp_path / "many.pth"
    expected = write_tiny_benchmark(path, archs=archs, epochs=3)
    assert list(expected) == archs
    assert all(0.0 < v < 100.0 for metrics in expected.values() for v in metrics.values())
    assert len({metrics["cifar10_valid"] for metrics in expected.values()}) == len(archs)
    b = BenchmarkTable.load(path, cache_dir=tmp_path / "cache", log=Log())
    assert {a: b.query(a) for a in archs} == expected
