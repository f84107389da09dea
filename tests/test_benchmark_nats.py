"""NATS-Bench topology (tss) behind --api_path: exact figures, the cache, safe loading."""
import bz2
import pickle

import pytest

from common.bench.benchmark import BenchmarkTable
from common.bench.benchmark_nats import TABLE_METRICS
from common.errors import UserError
from nats_fixture import write_tiny_nats
from nb201_fixture import DEFAULT_ARCHS, DRNAS_ARCH
from script_checks import results
from space201 import train_search
from test_search_201 import search

FOLDER = "NATS-tss-v1_0-3ffb9-simple"


class Log(list):
    def __call__(self, line):
        assert "\n" not in str(line)
        self.append(str(line))


def forbid_nats(monkeypatch):
    """Fail the test if anything opens the benchmark itself."""
    import nats_bench.api_topology as topology

    def refuse(*args, **kwargs):
        raise AssertionError("the NATS-Bench files were read although the table exists")

    monkeypatch.setattr(topology, "NATStopology", refuse)
    monkeypatch.setattr(bz2, "BZ2File", refuse)


def test_figures_are_the_packages_own_answers(tmp_path):
    unevaluated = DEFAULT_ARCHS[3]
    expected = write_tiny_nats(tmp_path / FOLDER, epochs=5, unevaluated=[unevaluated])
    bench = BenchmarkTable.load(tmp_path / FOLDER, cache_dir=tmp_path / "cache", log=Log())
    assert bench.name == "NATS-Bench" and bench.metrics == tuple(TABLE_METRICS)
    assert len(bench) == 4 and unevaluated not in bench
    for arch, figures in expected.items():
        assert bench.query(arch) == figures  # exact: the trial means nats_bench computes
    drnas = bench.query(DRNAS_ARCH)
    assert drnas["cifar10_test"] == pytest.approx(94.36) and drnas["cifar10_test_12ep"] == pytest.approx(74.36)
    assert drnas["cifar100_params_mb"] == pytest.approx(1.0) and drnas["imagenet16_latency_ms"] == pytest.approx(10.0)


def test_one_epoch_search_records_the_exact_figures_and_a_second_run_reads_the_cache(tmp_path, monkeypatch):
    first = search(tmp_path / "first", "--epochs", "1", "--seed", "3")
    archs = [DRNAS_ARCH, first] if first != DRNAS_ARCH else [DRNAS_ARCH]
    expected = write_tiny_nats(tmp_path / FOLDER, archs, epochs=5)
    search(tmp_path / "run1", "--epochs", "1", "--seed", "3", "--api_path", str(tmp_path / FOLDER))
    run1 = results(tmp_path / "run1")
    assert run1["genotype"] == first and run1["benchmark"] == expected[first]
    assert run1["epochs"][0]["benchmark"] == expected[first]
    log = (tmp_path / "run1" / "log.txt").read_text()
    assert "benchmark after 12 epochs cifar10_valid" in log and "cifar10_params_mb" in log
    assert "cifar10_latency_ms" in log

    forbid_nats(monkeypatch)
    search(tmp_path / "run2", "--epochs", "1", "--seed", "3", "--api_path", str(tmp_path / FOLDER))
    assert results(tmp_path / "run2")["benchmark"] == expected[first]
    assert "read the table" in (tmp_path / "run2" / "log.txt").read_text()


def test_the_single_archive_loads_too(tmp_path):
    from nats_bench.api_utils import pickle_load, pickle_save

    expected = write_tiny_nats(tmp_path / FOLDER, epochs=3)
    arch2infos = {i: pickle_load(str(tmp_path / FOLDER / f"{i:06d}.pickle.pbz2")) for i in range(len(expected))}
    archive = tmp_path / "NATS-tss-v1_0-3ffb9.pickle"
    pickle_save({"meta_archs": list(expected), "arch2infos": arch2infos,
                 "evaluated_indexes": set(range(len(expected)))}, str(archive))
    bench = BenchmarkTable.load(tmp_path / "NATS-tss-v1_0-3ffb9.pickle.pbz2", cache_dir=tmp_path / "c", log=Log())
    assert {a: bench.query(a) for a in expected} == expected


class RunsCode:
    """Unpickling calls os.system: a benchmark file crafted to run code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("crafted", ["meta.pickle.pbz2", "000001.pickle.pbz2"])
def test_a_crafted_nats_file_is_refused_in_one_line_and_runs_nothing(tmp_path, crafted):
    write_tiny_nats(tmp_path / FOLDER, epochs=3)
    marker = tmp_path / "ran"
    with bz2.BZ2File(tmp_path / FOLDER / crafted, "wb") as fh:
        pickle.dump({"meta_archs": DEFAULT_ARCHS, "200": RunsCode(marker)}, fh)
    with pytest.raises(UserError) as excinfo:
        BenchmarkTable.load(tmp_path / FOLDER, cache_dir=tmp_path / "cache", log=Log())
    msg = str(excinfo.value)
    assert "\n" not in msg and "system" in msg and "refused" in msg and crafted in msg
    assert not marker.exists()
    assert not (tmp_path / (FOLDER + ".drnas-table.json")).exists()


def test_the_size_space_and_a_damaged_archive_are_one_line(tmp_path):
    sss = tmp_path / "NATS-sss-v1_0-50262-simple"
    sss.mkdir()
    with pytest.raises(UserError, match="size search space"):
        BenchmarkTable.load(sss, log=Log())
    damaged = tmp_path / "NATS-tss-v1_0-3ffb9.pickle.pbz2"
    damaged.write_bytes(b"BZh9" + bytes(100))
    with pytest.raises(UserError) as excinfo:
        BenchmarkTable.load(damaged, cache_dir=tmp_path / "c", log=Log())
    assert "does not load as NATS-Bench" in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_search_script_takes_a_nats_folder(tmp_path, capsys):
    from script_checks import expect_one_line_error

    folder = tmp_path / "empty-benchmark"
    folder.mkdir()
    err = expect_one_line_error(capsys, train_search.main, ["--dataset", "synthetic", "--output_dir", str(tmp_path / "r"),
                                                            "--api_path", str(folder)])
    assert "NATS-tss-v1_0-3ffb9-simple" in err and "not a benchmark" in err
