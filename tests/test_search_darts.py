"""DARTS-space/train_search.py end to end on CPU: progressive stages, genotypes in the
results JSON, real images, bad input; and the step benchmark of both spaces."""
import json
from pathlib import Path

import pytest
import torch

from darts_space import train_search
from darts_space.genotypes import Genotype, genotype_from_json
from darts_space.model import NetworkCIFAR, resolve_genotype
from script_checks import expect_one_line_error, load_script, results

ROOT = Path(__file__).resolve().parents[1]
CIFAR10_MINI = ROOT.parent / "shared" / "data" / "cifar10-mini"
TINY = ["--dataset", "synthetic", "--data_limit", "64", "--batch_size", "16", "--init_channels", "8",
        "--layers", "3", "--ks", "4", "2", "--num_keeps", "7", "4", "--train_epochs", "1", "1",
        "--arch_start_epoch", "0", "--device", "cpu"]



@pytest.mark.parametrize("order", ["first", "second"])
def test_tiny_progressive_search_prunes_widens_and_writes_loadable_genotypes(tmp_path, order):
    extra = ["--unrolled"] if order == "second" else []
    genotype = train_search.main([*TINY, "--output_dir", str(tmp_path), *extra])
    data = results(tmp_path)
    assert [e["k"] for e in data["epochs"]] == [4, 2]
    assert data["genotype"] == genotype
    for epoch in data["epochs"]:
        assert isinstance(genotype_from_json(epoch["genotype"]), Genotype)
    final = genotype_from_json(data["genotype"])
    assert len(final.normal) == len(final.reduce) == 8
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["k"] == 2
    kept = state["masks"]["normal"] + state["masks"]["reduce"]
    assert len(kept) == 28 and all(len(ops) == 4 for ops in kept)
    # the derived ops are among the kept ones on their edges
    mean = data["epochs"][-1]["arch"]["normal"]["mean"]
    assert all(sum(w > 0 for w in row) == 4 for row in mean)
    # the evaluation network takes the search's folder (its results.json) as --arch does
    network = NetworkCIFAR(8, 10, 5, True, resolve_genotype(str(tmp_path)))
    network.eval()
    logits, _ = network(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)


@pytest.mark.skipif(not CIFAR10_MINI.is_dir(), reason="../shared/data/cifar10-mini is absent")
def test_tiny_search_on_real_cifar10_images(tmp_path):
    train_search.main([*TINY, "--dataset", "cifar10", "--data", str(CIFAR10_MINI), "--data_limit", "128",
                       "--output_dir", str(tmp_path)])
    assert results(tmp_path)["finished"]


def one_line_error(capsys, argv):
    return expect_one_line_error(capsys, train_search.main, argv)


def test_bad_input_is_one_line(tmp_path, capsys):
    base = [*TINY, "--output_dir", str(tmp_path / "run")]
    assert "invalid choice" in one_line_error(capsys, [*base, "--dataset", "imagenet"])
    assert "one value per stage" in one_line_error(capsys, [*base, "--ks", "6"])
    assert "must not grow" in one_line_error(capsys, [*base, "--num_keeps", "4", "7"])
    assert "between 1 and 7" in one_line_error(capsys, [*base, "--num_keeps", "8", "4"])
    assert "does not divide" in one_line_error(capsys, [*base, "--ks", "3", "1"])
    run = tmp_path / "done"
    train_search.main([*TINY, "--output_dir", str(run), "--stop_after_epoch", "1"])
    err = one_line_error(capsys, [*TINY, "--resume", str(run), "--init_channels", "12"])
    assert "--init_channels" in err


@pytest.mark.parametrize("space, extra", [("201", ["--num_cells", "1", "--init_channels", "4"]),
                                          ("darts", ["--layers", "3", "--init_channels", "8", "--k", "4",
                                                     "--num_keep", "4"])])
def test_step_benchmark_reports_time_and_memory(space, extra, capsys):
    bench = load_script("benchmark_search")
    report = bench.main(["--space", space, "--batch_size", "8", "--steps", "2", "--warmup", "1",
                         "--device", "cpu", *extra])
    printed = json.loads(capsys.readouterr().out)
    assert printed == pytest.approx(report)
    assert report["median_step_s"] > 0 and report["images_per_s"] == pytest.approx(8 / report["median_step_s"])
    assert report["peak_memory_mb"] >= report["setup_rss_mb"] > 0
