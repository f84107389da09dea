"""The search under DistributedDataParallel on CPU (gloo): one DDP search step equals one
single-process step on the same global batch (weights and alpha), ranks that do not average
alpha's gradients are caught, and torchrun runs of the ImageNet search (both progressive
stages, on generated JPEGs) and of the NAS-Bench-201 search (stopped and resumed) end with
the same architecture parameters and masks on every rank."""

import torch
from torch import nn

from common.nas.architect import Architect
from common.nas.diagnostics import arch_digest, check_ranks_agree
from common.distributed import ONE_PROCESS, Dist
from common.nas.mixing import ArchDistribution
from common.nas.network import SearchNetwork
from common.nas.progressive import load_masks
from common.nas.search import search_ddp, search_step
from imagenet_fixture import make_imagenet
from script_checks import results, spawn_ranks, torchrun


class TinySearch(SearchNetwork):
    """One mixed edge of three ops between a conv stem and a linear head, no BatchNorm: a batch
    of 16 and two shards of 8 give the same mean gradients."""

    def __init__(self, method):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.ops = nn.ModuleList([nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1), nn.Identity()])
        self.fc = nn.Linear(4, 5)
        self.arch = nn.ModuleDict({"normal": ArchDistribution(1, 3, method)})

    def forward(self, x):
        mix = self.draw()["normal"].mixing[0]
        h = torch.relu(self.stem(x))
        h = sum(w * op(h) for w, op in zip(mix, self.ops))
        return self.fc(h.mean((2, 3)))


def one_search_step(dist, average=True, method="darts"):
    """One search step (architecture + weights) on 16 + 16 images split over the ranks."""
    torch.manual_seed(0)
    model = TinySearch(method)
    g = torch.Generator().manual_seed(1)
    x, xa = torch.randn(2, 16, 3, 6, 6, generator=g)
    y, ya = torch.randint(0, 5, (2, 16), generator=g)
    shard = slice(dist.rank, None, dist.world_size)
    architect = Architect(model, lr=0.1, reg_scale=1e-3, dist=dist if average else ONE_PROCESS)
    optimizer = torch.optim.SGD(model.weight_parameters(), 0.5, momentum=0.9, weight_decay=3e-4)
    forward = search_ddp(model, dist) if dist.distributed else None
    search_step(model, architect, optimizer, (x[shard], y[shard]), (xa[shard], ya[shard]),
                update_arch=True, grad_clip=5.0, forward=forward)
    try:
        agree = check_ranks_agree(model, dist)
    except RuntimeError as err:
        agree = str(err)
    return {"state": {k: v.clone() for k, v in model.state_dict().items()}, "agree": agree}


def spawn(tmp_path, average):
    return spawn_ranks(tmp_path / str(average), one_search_step, average)


def test_one_ddp_search_step_equals_one_single_process_step(tmp_path):
    single = one_search_step(Dist())
    ranks = spawn(tmp_path, average=True)
    for result in ranks:
        for name, tensor in single["state"].items():
            assert torch.allclose(result["state"][name], tensor, atol=1e-6, rtol=0), name
        assert isinstance(result["agree"], list) and len(set(result["agree"])) == 1
    # alpha did move (Adam, lr 0.1): the comparison is not between two initialisations
    torch.manual_seed(0)
    assert not torch.allclose(TinySearch("darts").arch["normal"].alpha, single["state"]["arch.normal.alpha"])


def test_ranks_that_do_not_average_alpha_are_caught(tmp_path):
    for result in spawn(tmp_path, average=False):  # each rank's alpha follows its own shard
        assert "differ between ranks" in result["agree"], result["agree"]


# ---------------------------------------------------------------- torchrun, end to end

IMAGENET_TINY = ["--init_channels", "8", "--layers", "3", "--image_size", "32", "--batch_size", "4",
                 "--ks", "2", "1", "--num_keeps", "4", "2", "--train_epochs", "1", "1",
                 "--arch_start_epoch", "0", "--valid_from_epoch", "0", "--workers", "0",
                 "--device", "cpu", "--report_freq", "1"]


def check_checkpoint_matches_digest(out, digest, build):
    """The digest every rank reported is that of rank 0's saved architecture."""
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    model = build(state["k"])
    load_masks(model, state["masks"])
    model.load_state_dict(state["model"])
    assert arch_digest(model) == digest
    return state


def test_imagenet_search_two_processes_through_both_stages(tmp_path):
    data = make_imagenet(tmp_path / "imagenet_search", train_per_class=4, val_per_class=3, size=[(40, 36), (48, 40)])
    out = tmp_path / "run"
    proc = torchrun("DARTS-space/train_search_imagenet.py",
                    [*IMAGENET_TINY, "--data", str(data), "--output_dir", str(out)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "data parallel over 2 processes, 2 images per process and step" in proc.stdout
    record = results(out)
    assert record["finished"] and [e["stage"] for e in record["epochs"]] == [1, 2]
    assert [e["k"] for e in record["epochs"]] == [2, 1]
    for epoch in record["epochs"]:  # every epoch ends with the ranks' digests compared
        assert len(epoch["arch_digests"]) == 2 and len(set(epoch["arch_digests"])) == 1
    assert proc.stdout.count("found architecture") == 1  # rank 0 alone logs

    from darts_space.model_search_imagenet import Network

    state = check_checkpoint_matches_digest(
        out, record["epochs"][-1]["arch_digests"][0], lambda k: Network(8, 3, 3, "dirichlet", k))
    assert state["k"] == 1
    assert all(len(ops) == 2 for masks in state["masks"].values() for ops in masks)


def test_201_search_two_processes_resumes_exactly(tmp_path):
    args = ["--dataset", "synthetic", "--data_limit", "128", "--batch_size", "16", "--init_channels", "4",
            "--num_cells", "1", "--ks", "2", "1", "--num_keeps", "3", "2", "--train_epochs", "1", "1",
            "--arch_start_epoch", "0", "--device", "cpu", "--report_freq", "1"]
    script = "201-space/train_search_progressive.py"
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    for proc in (torchrun(script, [*args, "--output_dir", str(whole)]),
                 torchrun(script, [*args, "--output_dir", str(parts), "--stop_after_epoch", "1"]),
                 torchrun(script, [*args, "--resume", str(parts)])):
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    a, b = results(whole), results(parts)
    assert a["finished"] and b["finished"] and a["genotype"] == b["genotype"]
    assert [e["arch"] for e in a["epochs"]] == [e["arch"] for e in b["epochs"]]
    assert [e["train_loss"] for e in a["epochs"]] == [e["train_loss"] for e in b["epochs"]]
    assert a["epochs"][-1]["arch_digests"] == b["epochs"][-1]["arch_digests"]
    assert len(set(a["epochs"][-1]["arch_digests"])) == 1


def test_second_order_search_under_torchrun_keeps_the_ranks_together(tmp_path):
    """--unrolled: each rank's hypergradient on its own shard, averaged before the Adam step."""
    out = tmp_path / "run"
    proc = torchrun("201-space/train_search.py",
                    ["--dataset", "synthetic", "--data_limit", "64", "--batch_size", "16", "--init_channels", "4",
                     "--num_cells", "1", "--epochs", "1", "--unrolled", "--device", "cpu", "--output_dir", str(out)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    digests = results(out)["epochs"][0]["arch_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]


def test_a_two_process_search_resumes_in_one_process(tmp_path):
    """An end-of-epoch checkpoint of a torchrun job continues under another process count (a
    box with fewer GPUs): the checkpoint holds no per-device random states to restore."""
    from space201 import train_search_progressive

    args = ["--dataset", "synthetic", "--data_limit", "128", "--batch_size", "16", "--init_channels", "4",
            "--num_cells", "1", "--ks", "2", "1", "--num_keeps", "3", "2", "--train_epochs", "1", "1",
            "--arch_start_epoch", "0", "--device", "cpu"]
    parts = tmp_path / "parts"
    proc = torchrun("201-space/train_search_progressive.py", [*args, "--output_dir", str(parts), "--stop_after_epoch", "1"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    train_search_progressive.main(["--resume", str(parts)])
    record = results(parts)
    assert record["finished"] and [e["k"] for e in record["epochs"]] == [2, 1]
    assert "arch_digests" in record["epochs"][0] and "arch_digests" not in record["epochs"][1]


def test_gdas_under_torchrun_keeps_stepping_the_same_weights_on_every_rank(tmp_path):
    """--unsampled_ops step under DDP: each rank samples its own architecture forward, so only
    the weight forwards (DDP's averaged gradients) decide which weights step; every step checks
    that the ranks hold identical weights (DRNAS_CHECK_SYNC=1)."""
    out = tmp_path / "run"
    proc = torchrun("201-space/train_search.py",
                    ["--dataset", "synthetic", "--data_limit", "64", "--batch_size", "16", "--init_channels", "4",
                     "--num_cells", "1", "--epochs", "2", "--method", "gdas", "--device", "cpu",
                     "--output_dir", str(out)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = results(out)
    assert record["args"]["unsampled_ops"] == "step" and record["finished"]
    assert all(len(set(epoch["arch_digests"])) == 1 for epoch in record["epochs"])
