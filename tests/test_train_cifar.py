"""DARTS-space/train.py (CIFAR evaluation) end to end on CPU with a tiny network: results,
drop-path ramp, --arch forms, exact resume, bad input, cutout on CIFAR-100 files."""
import json
import math
import pickle

import numpy as np
import pytest
import torch

import common.data.datasets
from common.errors import UserError
from darts_space import train
from darts_space.genotypes import GENOTYPES, genotype_to_json
from script_checks import expect_one_line_error, results

TINY = ["--dataset", "synthetic", "--init_channels", "4", "--layers", "3", "--data_limit", "64",
        "--batch_size", "16", "--epochs", "2", "--device", "cpu", "--report_freq", "2"]


def one_line_error(capsys, argv):
    return expect_one_line_error(capsys, train.main, argv)


def test_auxiliary_cutout_run_writes_results(tmp_path):
    out = tmp_path / "run"
    returned = train.main([*TINY, "--auxiliary", "--cutout", "--output_dir", str(out)])
    data = results(out)
    assert data["finished"] and data["epochs_done"] == 2
    assert returned["final_test_acc"] == data["final_test_acc"]
    assert data["params_m"] > 0
    assert [e["drop_path_prob"] for e in data["epochs"]] == pytest.approx([0.0, 0.15])
    accs = [e["test_acc"] for e in data["epochs"]]
    assert data["final_test_acc"] == accs[-1] and data["best_test_acc"] == max(accs)
    for epoch in data["epochs"]:
        assert 0 <= epoch["test_acc"] <= epoch["test_top5"] <= 100
        assert epoch["epoch_time_s"] > 0
    assert data["epochs"][0]["lr"] == pytest.approx(0.025)
    assert data["epochs"][1]["lr"] == pytest.approx(0.0125)  # cosine over 2 epochs
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and any("auxiliary" in name for name in state["model"])


@pytest.mark.parametrize("form", ["name", "results_json"])
def test_arch_by_name_and_by_search_results(tmp_path, form):
    genotype = GENOTYPES["DARTS_V2"]
    if form == "name":
        arch = "DARTS_V2"
    else:
        arch = tmp_path / "search" / "results.json"
        arch.parent.mkdir()
        arch.write_text(json.dumps({"args": {}, "genotype": genotype_to_json(genotype), "finished": True}))
    out = tmp_path / "run"
    train.main([*TINY, "--epochs", "1", "--data_limit", "32", "--arch", str(arch), "--output_dir", str(out)])
    assert results(out)["genotype"] == genotype_to_json(genotype)


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path):
    args = [*TINY, "--auxiliary", "--cutout"]
    train.main([*args, "--output_dir", str(tmp_path / "full")])
    train.main([*args, "--output_dir", str(tmp_path / "split"), "--stop_after_epoch", "1"])
    assert results(tmp_path / "split")["epochs_done"] == 1
    train.main([*args, "--resume", str(tmp_path / "split")])
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    split = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert split["epoch"] == full["epoch"] == 2
    assert full["model"].keys() == split["model"].keys()
    for name, tensor in full["model"].items():
        assert torch.equal(tensor, split["model"][name]), name
    assert results(tmp_path / "split")["final_test_acc"] == results(tmp_path / "full")["final_test_acc"]


def test_bad_input_is_one_line(tmp_path, capsys, monkeypatch):
    base = [*TINY, "--output_dir", str(tmp_path / "run")]
    err = one_line_error(capsys, [*base, "--arch", "NoSuchNet"])
    assert "NoSuchNet" in err and "DrNAS_cifar10" in err and "DARTS_V2" in err
    no_genotype = tmp_path / "results.json"
    no_genotype.write_text(json.dumps({"args": {}, "epochs": []}))
    assert "holds no genotype" in one_line_error(capsys, [*base, "--arch", str(no_genotype)])
    # no network in tests: the download fails at once
    monkeypatch.setattr(common.data.datasets, "_try_download", lambda fetch: "offline")
    err = one_line_error(capsys, [*base, "--dataset", "cifar10", "--data", str(tmp_path / "nowhere")])
    assert "CIFAR-10 not found" in err
    assert not (tmp_path / "run").exists()


def write_cifar100(folder, n, seed):
    rng = np.random.default_rng(seed)
    return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "fine_labels": rng.integers(0, 100, n).tolist(), "coarse_labels": [0] * n}


def test_cutout_on_cifar100_files(tmp_path):
    folder = tmp_path / "data" / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n, seed in (("train", 48, 0), ("test", 20, 1)):
        with open(folder / name, "wb") as handle:
            pickle.dump(write_cifar100(folder, n, seed), handle)
    out = tmp_path / "run"
    train.main([*TINY, "--dataset", "cifar100", "--data", str(tmp_path / "data"), "--cutout", "--auxiliary",
                "--epochs", "1", "--output_dir", str(out)])
    data = results(out)
    assert data["finished"] and 0 <= data["final_test_acc"] <= 100
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["model"]["classifier.weight"].shape[0] == 100


def test_amp_trains_in_bfloat16_and_is_refused_where_bfloat16_is_missing(tmp_path, monkeypatch):
    from common.run import train as loop

    seen = []
    real_autocast = loop.autocast

    def recording_autocast(device, amp):
        seen.append(amp)
        return real_autocast(device, amp)

    monkeypatch.setattr(loop, "autocast", recording_autocast)
    data = train.main([*TINY, "--epochs", "1", "--amp", "--output_dir", str(tmp_path / "amp")])
    assert seen and all(seen)
    assert math.isfinite(data["final_test_acc"]) and math.isfinite(data["epochs"][0]["train_loss"])

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Old GPU")
    from common.device import check_amp

    with pytest.raises(UserError) as err:
        check_amp(torch.device("cuda"))
    assert "--amp" in str(err.value) and "Old GPU" in str(err.value) and "\n" not in str(err.value)
    check_amp(torch.device("cpu"))  # CPUs autocast to bfloat16
