"""The direct ImageNet search (DARTS-space/train_search_imagenet.py) in one process on CPU:
the authors' defaults, the warm-up + cosine schedule, the ImageNet search network, a search
through both progressive stages on generated JPEGs with each loader backend, exact resume,
bad input as one line, and the step benchmark of the ImageNet network with its loader."""
import json
import math

import pytest
import torch

from darts_space import train_search_imagenet
from darts_space.model_search_imagenet import Network
from imagenet_fixture import make_imagenet
from script_checks import expect_one_line_error, load_script, results

TINY = ["--init_channels", "8", "--layers", "3", "--image_size", "32", "--batch_size", "4",
        "--ks", "2", "1", "--num_keeps", "4", "2", "--train_epochs", "1", "1", "--arch_start_epoch", "0",
        "--valid_from_epoch", "0", "--workers", "0", "--device", "cpu", "--report_freq", "1"]


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    """A sampled-ImageNet folder: train/ (weight half) and val/ (architecture half)."""
    return make_imagenet(tmp_path_factory.mktemp("imagenet_search"), train_per_class=4, val_per_class=3,
                         size=[(40, 36), (36, 48)])


def test_defaults_are_the_authors():
    args = train_search_imagenet.build_parser().parse_args([])
    assert (args.batch_size, args.learning_rate, args.learning_rate_min, args.momentum, args.weight_decay) == \
        (512, 0.5, 0.0, 0.9, 3e-4)
    assert (args.init_channels, args.layers, args.arch_learning_rate, args.reg_type, args.reg_scale) == \
        (48, 14, 6e-3, "l2", 1e-3)
    assert (args.ks, args.num_keeps, args.train_epochs, args.arch_start_epoch) == ([6, 3], [7, 4], [25, 25], 10)
    assert (args.warmup_epochs, args.valid_from_epoch, args.image_size, args.dataset) == (5, 47, 224, "imagenet")
    assert not hasattr(args, "train_portion") and not hasattr(args, "cutout")  # the halves are sampled


def test_schedule_is_warmup_then_the_authors_restarted_cosine():
    from common.nas.progressive import Stage

    args = train_search_imagenet.build_parser().parse_args([])
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], args.learning_rate)
    stages = [Stage(25, 6, 7, 10), Stage(25, 3, 4, 10)]
    scheduler = train_search_imagenet.schedule(args, optimizer, stages)
    lrs = []
    for _ in range(50):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:5] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])  # lr * (epoch + 1) / 5, batch 512 > 256

    def c(e):
        return 1 + math.cos(math.pi * e / 50)

    assert lrs[5] == pytest.approx(0.5 * c(5) / c(4))  # the cosine recursion continues from the warm-up
    assert lrs[25] == pytest.approx(0.5)  # the second stage restarts at the base lr
    assert lrs[49] == pytest.approx(0.5 * c(49) / c(25))
    small = train_search_imagenet.build_parser().parse_args(["--batch_size", "256"])
    scheduler = train_search_imagenet.schedule(small, torch.optim.SGD([weight], 0.5), stages)
    assert scheduler.get_last_lr()[0] == pytest.approx(0.5)  # no warm-up at batch 256


def test_search_network_has_imagenet_stems():
    model = Network(8, 10, 5, "dirichlet", 2)
    assert model.stem_type == "imagenet" and len(model.cells) == 5
    assert [cell.reduction for cell in model.cells] == [False, True, False, True, False]
    seen = []
    model.cells[0].register_forward_pre_hook(lambda module, inputs: seen.append(inputs[1].shape[-1]))
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    assert seen == [8]  # 64 / 8: the stems divide the size by 8


@pytest.mark.parametrize("loader", ["workers", "decode"])
def test_search_through_both_stages(sampled, tmp_path, loader):
    out = tmp_path / "run"
    genotype = train_search_imagenet.main([*TINY, "--data", str(sampled), "--loader", loader, "--output_dir", str(out)])
    record = results(out)
    assert record["finished"] and record["genotype"] == genotype
    assert [(e["stage"], e["k"]) for e in record["epochs"]] == [(1, 2), (2, 1)]
    assert all(e["valid_acc"] is not None for e in record["epochs"])
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert all(len(ops) == 2 for masks in state["masks"].values() for ops in masks)


def test_validation_waits_for_valid_from_epoch(sampled, tmp_path):
    out = tmp_path / "run"
    train_search_imagenet.main([*TINY, "--data", str(sampled), "--valid_from_epoch", "1", "--output_dir", str(out)])
    assert [e["valid_acc"] is None for e in results(out)["epochs"]] == [True, False]


def test_stop_and_resume_equals_an_uninterrupted_search(sampled, tmp_path):
    args = [*TINY, "--data", str(sampled), "--loader", "decode"]
    train_search_imagenet.main([*args, "--output_dir", str(tmp_path / "whole")])
    train_search_imagenet.main([*args, "--output_dir", str(tmp_path / "parts"), "--stop_after_epoch", "1"])
    train_search_imagenet.main([*args, "--resume", str(tmp_path / "parts")])
    a, b = results(tmp_path / "whole"), results(tmp_path / "parts")
    assert [e["arch"] for e in a["epochs"]] == [e["arch"] for e in b["epochs"]]
    assert [e["train_loss"] for e in a["epochs"]] == [e["train_loss"] for e in b["epochs"]]


def test_bad_input_is_one_line(sampled, tmp_path, capsys):
    def error(*argv):
        return expect_one_line_error(capsys, train_search_imagenet.main, [*TINY, *argv])

    assert "does not exist" in error("--data", str(tmp_path / "missing"))
    make_imagenet(tmp_path / "no_val", splits=("train",))
    assert "no val/ folder" in error("--data", str(tmp_path / "no_val"))
    assert "--image_size" in error("--data", str(sampled), "--image_size", "16")
    assert "invalid choice" in error("--data", str(sampled), "--dataset", "cifar10")


def test_step_benchmark_of_the_imagenet_network_and_its_loader(sampled, capsys):
    bench = load_script("benchmark_search")
    report = bench.main(["--space", "imagenet", "--init_channels", "8", "--layers", "3", "--k", "2",
                         "--batch_size", "4", "--steps", "1", "--warmup", "1", "--device", "cpu",
                         "--loader_data", str(sampled), "--loader_batches", "2", "--workers", "0"])
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(report))
    assert report["space"] == "imagenet" and report["median_step_s"] > 0
    assert set(report["loader_images_per_s"]) == {"workers", "decode"}
    assert all(speed > 0 for speed in report["loader_images_per_s"].values())
