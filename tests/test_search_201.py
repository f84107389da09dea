"""201-space/train_search.py end to end on CPU: results, resume, real data, bad input."""
import math
from pathlib import Path

import pytest
import torch

from space201 import train_search
from script_checks import expect_one_line_error, results

CIFAR10_MINI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-mini"
TINY = ["--dataset", "synthetic", "--data_limit", "256", "--batch_size", "32", "--init_channels", "4",
        "--num_cells", "1", "--device", "cpu", "--report_freq", "2"]


def search(out_dir, *extra):
    return train_search.main([*TINY, "--output_dir", str(out_dir), *extra])



def final_alpha(out_dir):
    state = torch.load(Path(out_dir) / "checkpoint.pt", weights_only=True)
    return state["model"]["arch.cell.alpha"]


def test_one_epoch_search_writes_results_log_and_events(tmp_path, capsys):
    genotype = search(tmp_path, "--epochs", "1")
    data = results(tmp_path)
    assert data["genotype"] == genotype and genotype.count("~") == 6
    epoch = data["epochs"][0]
    for key in ("train_loss", "train_acc", "valid_loss", "valid_acc", "genotype", "arch", "lr"):
        assert key in epoch
    beta = torch.tensor(epoch["arch"]["cell"]["beta"])
    assert beta.shape == (6, 5) and (beta > 0).all()
    assert data["args"]["dataset"] == "synthetic" and data["versions"]["torch"] == torch.__version__
    assert data["wall_time_s"] > 0 and data["peak_memory_mb"] > 0 and data["finished"]
    assert (tmp_path / "log.txt").read_text().count("found architecture") == 1
    assert any((tmp_path / "tb").iterdir())
    assert "no --api_path" in capsys.readouterr().out


def test_resume_ends_with_the_same_architecture_as_an_uninterrupted_run(tmp_path):
    search(tmp_path / "straight", "--epochs", "3")
    search(tmp_path / "split", "--epochs", "3", "--stop_after_epoch", "1")
    assert results(tmp_path / "split")["epochs_done"] == 1
    train_search.main(["--resume", str(tmp_path / "split"), *TINY, "--epochs", "3"])
    assert torch.equal(final_alpha(tmp_path / "straight"), final_alpha(tmp_path / "split"))
    straight, split = results(tmp_path / "straight"), results(tmp_path / "split")
    assert [e["train_loss"] for e in straight["epochs"]] == [e["train_loss"] for e in split["epochs"]]


@pytest.mark.parametrize("method", ["darts", "snas", "gdas"])
def test_baseline_methods_run(tmp_path, method):
    search(tmp_path, "--epochs", "1", "--method", method)
    epoch = results(tmp_path)["epochs"][0]
    assert (epoch["tau"] is not None) == (method != "darts")


def test_second_order_and_kl_anchor_run(tmp_path):
    search(tmp_path, "--epochs", "1", "--unrolled", "--reg_type", "kl", "--k", "2")
    assert results(tmp_path)["epochs"][0]["arch_updates"]


@pytest.mark.skipif(not CIFAR10_MINI.is_dir(), reason="../shared/data/cifar10-mini is absent")
def test_one_epoch_on_real_cifar10_images(tmp_path):
    search(tmp_path, "--epochs", "1", "--dataset", "cifar10", "--data", str(CIFAR10_MINI),
           "--data_limit", "1024")
    data = results(tmp_path)
    assert data["epochs"][0]["train_loss"] < 10 and data["epochs"][0]["valid_acc"] >= 0


def test_benchmark_is_queried_every_epoch_and_cached(tmp_path, monkeypatch):
    from nb201_fixture import write_tiny_benchmark

    bench = tmp_path / "bench.pth"
    # every architecture a 1-epoch search on this tiny setting can find is in the table
    from itertools import product

    from space201.model_search import OPS, genotype_string

    archs = [genotype_string(ops) for ops in product(range(len(OPS)), repeat=6)][::997]
    first = search(tmp_path / "first", "--epochs", "1", "--seed", "3")
    archs.append(first)
    expected = write_tiny_benchmark(bench, archs=archs)
    search(tmp_path / "run1", "--epochs", "1", "--seed", "3", "--api_path", str(bench))
    epoch = results(tmp_path / "run1")["epochs"][0]
    assert epoch["genotype"] == first
    assert epoch["benchmark"] == pytest.approx(expected[first])
    assert "cifar10_test" in (tmp_path / "run1" / "log.txt").read_text()

    def no_load(*args, **kwargs):
        raise AssertionError("the benchmark file was opened although its table exists")

    monkeypatch.setattr(torch, "load", no_load)
    search(tmp_path / "run2", "--epochs", "1", "--seed", "3", "--api_path", str(bench))
    assert results(tmp_path / "run2")["benchmark"] == pytest.approx(expected[first])


def one_line_error(capsys, argv):
    return expect_one_line_error(capsys, train_search.main, argv)


def test_bad_input_is_one_line(tmp_path, capsys):
    base = [*TINY, "--output_dir", str(tmp_path / "run"), "--epochs", "1"]
    assert "CIFAR-10 not found" in one_line_error(capsys, [*base, "--dataset", "cifar10", "--data", str(tmp_path / "nowhere")])
    assert "invalid choice" in one_line_error(capsys, [*base, "--dataset", "mnist"])
    assert "invalid choice" in one_line_error(capsys, [*base, "--method", "enas"])
    assert "does not divide" in one_line_error(capsys, [*base, "--k", "3"])
    assert "--api_path" in one_line_error(capsys, [*base, "--api_path", str(tmp_path / "missing.pth")])
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a benchmark")
    assert "junk.pth" in one_line_error(capsys, [*base, "--api_path", str(junk)])


def test_resume_refuses_other_settings_and_truncated_checkpoints(tmp_path, capsys):
    run = tmp_path / "run"
    search(run, "--epochs", "2", "--stop_after_epoch", "1")
    err = one_line_error(capsys, ["--resume", str(run), *TINY, "--epochs", "2", "--k", "2"])
    assert "--k" in err
    checkpoint = run / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    assert "truncated" in one_line_error(capsys, ["--resume", str(run), *TINY, "--epochs", "2"])
    assert "no checkpoint" in one_line_error(capsys, ["--resume", str(tmp_path / "none"), *TINY])


def test_a_diverging_run_stops_with_one_line_and_keeps_its_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    from common.nas import search as search_loop

    real_step, calls = search_loop.search_step, []

    def step_that_diverges(*args, **kwargs):
        calls.append(1)
        loss, logits, healthy = real_step(*args, **kwargs)
        return (loss * float("nan") if len(calls) >= 7 else loss), logits, healthy  # epoch 2, step 3

    monkeypatch.setattr(search_loop, "search_step", step_that_diverges)
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        search(run, "--epochs", "3")
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert len(err.splitlines()) == 1 and "diverged" in err and "epoch 2, step 3" in err, err
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert results(run)["diverged"] == {"epoch": 2, "step": 3}
    assert results(run)["finished"] is False and "diverged" in results(run)["error"]
    assert "error: training diverged" in (run / "log.txt").read_text()  # the error line is in the log too


def test_channels_last_gives_the_same_search_as_contiguous(tmp_path):
    """The default memory format is a speed-up only: same architecture to float tolerance.

    Other conv algorithms round differently (~1e-6 relative); Adam turns gradients into
    steps of about lr = 3e-4 whatever their size, so alpha agrees to a few 1e-6 after an
    epoch: 1e-5 is 3 % of one step, far below what 4 steps move it."""
    for fmt in ("channels_last", "contiguous"):
        search(tmp_path / fmt, "--epochs", "1", "--memory_format", fmt, "--init_channels", "8", "--k", "2")
    fast, plain = final_alpha(tmp_path / "channels_last"), final_alpha(tmp_path / "contiguous")
    assert not torch.equal(fast, torch.zeros_like(fast))
    assert torch.allclose(fast, plain, rtol=0, atol=1e-5), (fast - plain).abs().max()
    a, b = results(tmp_path / "channels_last"), results(tmp_path / "contiguous")
    assert a["epochs"][0]["train_loss"] == pytest.approx(b["epochs"][0]["train_loss"], rel=1e-5)


def test_amp_search_runs_in_bfloat16(tmp_path, monkeypatch):
    """--amp: the forward passes of both steps run under bfloat16 autocast; the search goes on."""
    import common.nas.architect
    import common.nas.search

    seen = []
    for module in (common.nas.search, common.nas.architect):
        real = module.autocast

        def recording(device, amp, real=real):
            seen.append(amp)
            return real(device, amp)

        monkeypatch.setattr(module, "autocast", recording)
    search(tmp_path, "--epochs", "1", "--amp")
    data = results(tmp_path)
    assert data["args"]["amp"] is True and math.isfinite(data["epochs"][0]["train_loss"])
    assert seen and all(seen)  # weight step, architecture step and evaluation
    assert not torch.equal(final_alpha(tmp_path), torch.zeros_like(final_alpha(tmp_path)))
