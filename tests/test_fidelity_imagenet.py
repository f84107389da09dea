"""The ImageNet scripts where the authors' code decides: the search network's stem widths, the
search's architecture batches and its `--unrolled`, and train_imagenet.py's cosine option."""
import re

import pytest
import torch
from torch import nn

from authors_code import needs_authors, run_authors, source
from common.nas.architect import Architect
from darts_space import train_imagenet, train_search_imagenet
from darts_space.model_search_imagenet import Network
from imagenet_fixture import make_imagenet
from script_checks import results


# --- the search network's stem ----------------------------------------------------------------------
def conv_shapes(sequential):
    return [list(m.weight.shape) for m in sequential if isinstance(m, nn.Conv2d)]


@pytest.fixture(scope="module")
def imagenet_supernet():
    torch.manual_seed(0)
    return Network(48, 1000, 14, "dirichlet", 6)


def test_the_search_stem_is_three_times_c_wide(imagenet_supernet):
    """3 -> 72 -> 144, then 144 -> 144 (stem_multiplier * C, the authors' model_search_imagenet.py);
    the first cells' preprocessing reads 144 channels."""
    model = imagenet_supernet
    assert conv_shapes(model.stem0) == [[72, 3, 3, 3], [144, 72, 3, 3]]
    assert conv_shapes(model.stem1) == [[144, 144, 3, 3]]
    assert list(model.cells[0].preprocess0.conv.weight.shape) == [48, 144, 1, 1]  # FactorizedReduce, 2 phases
    assert list(model.cells[0].preprocess1.op[1].weight.shape) == [48, 144, 1, 1]
    assert list(model.cells[1].preprocess0.op[1].weight.shape) == [48, 144, 1, 1]
    assert sum(p.numel() for p in model.weight_parameters()) == 3_642_896


@needs_authors
def test_the_search_network_has_the_authors_widths(imagenet_supernet):
    theirs = run_authors("DARTS-space", """
        from model_search_imagenet import Network
        net = Network(48, 1000, 14, nn.CrossEntropyLoss(), k=6)
        shapes = lambda seq: [list(m.weight.shape) for m in seq if isinstance(m, nn.Conv2d)]
        print(json.dumps({"stem0": shapes(net.stem0), "stem1": shapes(net.stem1),
                          "cells": [sum(p.numel() for p in cell.parameters()) for cell in net.cells],
                          "weights": sum(p.numel() for p in net.parameters())}))
    """)
    model = imagenet_supernet
    assert theirs["stem0"] == conv_shapes(model.stem0) and theirs["stem1"] == conv_shapes(model.stem1)
    assert theirs["cells"] == [sum(p.numel() for p in cell.parameters()) for cell in model.cells]
    assert theirs["weights"] == sum(p.numel() for p in model.weight_parameters())


# --- the search's architecture step -------------------------------------------------------------------
@needs_authors
def test_the_authors_imagenet_search_kept_an_iterator_and_ignored_unrolled():
    """Their ImageNet train() holds one iterator over the architecture queue (a new one when it
    runs out, and every epoch); their CIFAR and NAS-Bench-201 searches draw next(iter(queue)).
    It parses --unrolled, and its only architect.step call is commented out."""
    imagenet = source("DARTS-space/train_search_imagenet.py")
    assert "next(valid_queue_iter)" in imagenet and "valid_queue_iter = iter(valid_queue)" in imagenet
    for other in ("DARTS-space/train_search.py", "201-space/train_search.py", "201-space/train_search_progressive.py"):
        assert "next(iter(valid_queue))" in source(other)
    assert "'--unrolled'" in imagenet
    calls = [line.strip() for line in imagenet.splitlines() if "architect.step(" in line]
    assert calls and all(call.startswith("#") for call in calls)
    assert not re.search(r"^\s*architect\s*=", imagenet, re.MULTILINE)


def test_our_imagenet_search_takes_the_second_order_step_when_asked(tmp_path, monkeypatch):
    data = make_imagenet(tmp_path / "data", train_per_class=3, val_per_class=3, size=[(40, 36)])
    calls = []
    unrolled_grads = Architect.unrolled_grads
    monkeypatch.setattr(Architect, "unrolled_grads", lambda self, *a: calls.append(1) or unrolled_grads(self, *a))
    argv = ["--data", str(data), "--init_channels", "8", "--layers", "3", "--image_size", "32", "--batch_size", "6",
            "--ks", "2", "--num_keeps", "7", "--train_epochs", "1", "--arch_start_epoch", "0", "--workers", "0",
            "--device", "cpu"]
    train_search_imagenet.main([*argv, "--unrolled", "--output_dir", str(tmp_path / "second")])
    assert calls and results(tmp_path / "second")["args"]["unrolled"]
    calls.clear()
    train_search_imagenet.main([*argv, "--output_dir", str(tmp_path / "first")])  # the authors': first order
    assert not calls


# --- train_imagenet.py's cosine option ----------------------------------------------------------------
def authors_cosine_lrs(epochs, lr, batch_size):
    """Their loop with --lr_scheduler cosine, by torch's own scheduler: scheduler.step() at the
    start of every epoch, then the warm-up (above batch 256) overrides the first 5 epochs."""
    weight = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, float(epochs))
    lrs = []
    for epoch in range(epochs):
        scheduler.step()
        if epoch < 5 and batch_size > 256:
            for group in optimizer.param_groups:
                group["lr"] = lr * (epoch + 1) / 5.0
        lrs.append(optimizer.param_groups[0]["lr"])
        weight.grad = torch.ones(1)
        optimizer.step()
    return lrs


def our_lrs(argv, epochs):
    args = train_imagenet.build_parser().parse_args([*argv, "--epochs", str(epochs)])
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], args.learning_rate)
    scheduler = train_imagenet.schedule(args, optimizer)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    return lrs


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
@pytest.mark.parametrize("batch_size", [768, 256])
def test_the_cosine_option_is_the_authors_one_epoch_ahead(batch_size):
    theirs = authors_cosine_lrs(12, 0.5, batch_size)
    ours = our_lrs(["--lr_scheduler", "cosine", "--batch_size", str(batch_size)], 12)
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)
    assert ours[-1] == pytest.approx(0.0, abs=1e-15)  # the last epoch trains at lr 0
    unshifted = our_lrs(["--lr_scheduler", "cosine_unshifted", "--batch_size", str(batch_size)], 12)
    assert unshifted[-1] > 0 and unshifted[5:] != pytest.approx(theirs[5:])
