"""DistributedDataParallel for DARTS-space/train.py on CPU (gloo): a torchrun run with two
processes, the ranks' weights in sync after every step, one DDP step equal to one
single-process step on the same global batch, sharding, and resume under DDP."""

import pytest
import torch
from torch import nn

from common.data.device_loader import DeviceLoader
from common.distributed import Dist
from common.run.epoch import evaluate
from common.run.train import main_logits, train_epoch
import script_checks
from script_checks import results, spawn_ranks

TINY = ["--dataset", "synthetic", "--init_channels", "4", "--layers", "3", "--data_limit", "64",
        "--batch_size", "16", "--epochs", "1", "--device", "cpu", "--report_freq", "2"]


def torchrun(args, nproc=2, script="train.py"):
    return script_checks.torchrun(f"DARTS-space/{script}", args, nproc, timeout=120)


def test_torchrun_two_processes(tmp_path):
    out = tmp_path / "run"
    proc = torchrun([*TINY, "--auxiliary", "--cutout", "--output_dir", str(out)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = results(out)
    assert data["finished"] and data["epochs_done"] == 1 and len(data["epochs"]) == 1
    assert 0 <= data["final_test_acc"] <= data["final_test_top5"] <= 100
    # rank 0 alone logs and writes
    assert proc.stdout.count("final test accuracy") == 1
    assert (out / "log.txt").read_text().count("final test accuracy") == 1
    assert "data parallel over 2 processes, 8 images per process and step" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == [".lock", "checkpoint.pt", "log.txt", "results.json", "tb"]
    # the checkpoint holds the unwrapped module: it loads into a single-process network
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert not any(name.startswith("module.") for name in state["model"])
    from darts_space.model import NetworkCIFAR, resolve_genotype

    NetworkCIFAR(4, 10, 3, True, resolve_genotype("DrNAS_cifar10")).load_state_dict(state["model"])


def test_batch_that_does_not_divide_is_one_line(tmp_path):
    proc = torchrun([*TINY, "--batch_size", "15", "--output_dir", str(tmp_path / "run")])
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert lines and "does not divide among 2 processes" in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_resume_under_ddp(tmp_path):
    out = tmp_path / "run"
    args = [*TINY, "--epochs", "2", "--auxiliary"]
    proc = torchrun([*args, "--output_dir", str(out), "--stop_after_epoch", "1"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert results(out)["epochs_done"] == 1 and not results(out).get("finished")
    proc = torchrun([*args, "--resume", str(out)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = results(out)
    assert data["finished"] and data["epochs_done"] == 2 and [e["epoch"] for e in data["epochs"]] == [1, 2]
    assert "resumed from" in proc.stdout
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 2


def test_sharding_splits_each_global_batch():
    images = torch.zeros(21, 3, 4, 4, dtype=torch.uint8)
    labels = torch.arange(21)

    def loader(shuffle, rank):
        return DeviceLoader(images, labels, batch_size=6, mean=(0, 0, 0), std=(1, 1, 1), device="cpu",
                            shuffle=shuffle, seed=3, rank=rank, world_size=2)

    for shuffle in (True, False):
        ranks = [loader(shuffle, r) for r in range(2)]
        for sharded in ranks:
            sharded.set_epoch(1)
        order = ranks[0].shared_order()
        assert torch.equal(order, ranks[1].shared_order())  # one permutation for all ranks
        # training pads the permutation to 22 by repeating its first image (DistributedSampler):
        # the last global batch holds 4, 2 per rank; evaluation keeps the 21 images once
        assert len(order) == (22 if shuffle else 21)
        steps = [order[i * 6:(i + 1) * 6] for i in range(4)]
        assert len(ranks[0]) == len(list(ranks[1].batch_indices())) == 4
        for step, a, b in zip(steps, *(r.batch_indices() for r in ranks)):
            assert a.tolist() == step[0::2].tolist() and b.tolist() == step[1::2].tolist()
        labels_seen = torch.cat([y for _, y in ranks[0]] + [y for _, y in ranks[1]])
        assert labels_seen.numel() == (22 if shuffle else 21)
        assert labels_seen.unique().numel() == 21  # every image, one of them twice when padded
        if shuffle:
            ranks[0].set_epoch(2)
            assert not torch.equal(ranks[0].shared_order(), order)  # a new permutation per epoch


# ---------------------------------------------------------------- one step, exactly


class Tiny(nn.Module):
    """No BatchNorm: a batch of 16 and two of 8 give the same mean gradient exactly."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3))), None


def tiny_data():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (16, 3, 8, 8), generator=g, dtype=torch.uint8), torch.randint(0, 5, (16,), generator=g)


def one_step(dist, sync=True):
    """One training step on 16 images split over the ranks, then an evaluation of 10 images."""
    torch.manual_seed(0)
    model = Tiny()
    images, labels = tiny_data()
    kw = dict(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), device="cpu")
    shards = dict(rank=dist.rank, world_size=dist.world_size)
    train = DeviceLoader(images, labels, batch_size=16, shuffle=True, seed=1, **kw, **shards)
    test = DeviceLoader(images[:10], labels[:10], batch_size=4, shuffle=False, seed=2, **kw, **shards)
    stepped = model
    if dist.distributed and sync:
        stepped = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    loss, acc = train_epoch(stepped, train, optimizer, grad_clip=5.0, dist=dist, check_sync=True)
    return {"loss": loss, "acc": acc, "eval": evaluate(model, test, dist=dist, logits_of=main_logits),
            "model": {k: v.clone() for k, v in model.state_dict().items()}}


def spawn(tmp_path, sync):
    return spawn_ranks(tmp_path / ("sync" if sync else "nosync"), one_step, sync)


def test_one_ddp_step_equals_one_single_process_step(tmp_path):
    single = one_step(Dist())
    ranks = spawn(tmp_path, sync=True)
    for result in ranks:
        assert "error" not in result, result
        for name, tensor in single["model"].items():
            assert torch.allclose(result["model"][name], tensor, atol=1e-6, rtol=0), name
        assert result["loss"] == pytest.approx(single["loss"], abs=1e-6)  # global, all-reduced
        assert result["acc"] == pytest.approx(single["acc"])
        assert result["eval"] == pytest.approx(single["eval"], abs=1e-6)  # uneven last shard included
    # the weights did move: the comparison is not between two untouched initialisations
    torch.manual_seed(0)
    assert not torch.allclose(Tiny().fc.weight, single["model"]["fc.weight"])


def test_sync_check_fails_without_gradient_averaging(tmp_path):
    ranks = spawn(tmp_path, sync=False)  # each rank steps on its own shard: the weights part
    for result in ranks:
        assert "differ from rank 0's" in result.get("error", ""), result

