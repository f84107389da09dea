"""Progressive learning: pruning frees ops, widening copies channels consistently, and a
progressive search runs through its stages and resumes from either one."""
import json
from pathlib import Path

import pytest
import torch

from common.nas import progressive
from common.nas.mixed_op import PrunedOp
from common.nas.progressive import load_masks
from space201 import train_search_progressive
from space201.model_search import OPS, Network


def trained_pruned_model(k=4):
    torch.manual_seed(0)
    model = Network(C=8, N=1, num_classes=10, k=k)
    with torch.no_grad():
        model.arch['cell'].alpha[:, OPS.index("nor_conv_3x3")] = 1.0
        model.arch['cell'].alpha[:, OPS.index("nor_conv_1x1")] = 0.9
        model.arch['cell'].alpha[:, OPS.index("avg_pool_3x3")] = 0.8
    optimizer = torch.optim.SGD(model.weight_parameters(), 0.1, momentum=0.9, weight_decay=3e-4)
    for _ in range(2):  # real momentum buffers and BN running statistics
        optimizer.zero_grad()
        model.loss(torch.randn(4, 3, 32, 32), torch.arange(4)).backward()
        optimizer.step()
    return model, optimizer


def test_pruning_frees_the_ops_and_they_are_never_called():
    model, optimizer = trained_pruned_model()
    before = sum(p.numel() for p in model.weight_parameters())
    progressive.prune(model, 3)
    assert model.arch['cell'].kept == [[2, 3, 4]] * 6
    for _, edge, op in model.edge_ops():
        assert [isinstance(o, PrunedOp) for o in op.ops] == [True, True, False, False, False]
        with pytest.raises(RuntimeError):
            op.ops[1](torch.zeros(1))
    progressive.follow(optimizer, model)
    assert sum(p.numel() for p in model.weight_parameters()) == before  # none and skip have no weights
    model.loss(torch.randn(2, 3, 32, 32), torch.arange(2)).backward()  # never calls a PrunedOp
    optimizer.step()
    assert len(optimizer.param_groups[0]["params"]) == len(model.weight_parameters())


def test_widening_copies_every_channel_consistently(monkeypatch):
    model, optimizer = trained_pruned_model(k=4)  # C/4 channels per op
    progressive.prune(model, 3)
    progressive.follow(optimizer, model)
    maps, real_map = [], progressive.channel_map

    def recording_map(*args, **kwargs):
        maps.append(real_map(*args, **kwargs))
        return maps[-1]

    monkeypatch.setattr(progressive, "channel_map", recording_map)
    old_ops = [(op.ops[2], op.ops[3]) for _, _, op in model.edge_ops()]
    old_state = {id(p): optimizer.state[p]["momentum_buffer"].clone() for p in model.weight_parameters()}
    old_tensors = [{name: t.clone() for name, t in conv.state_dict().items()}
                   for pair in old_ops for conv in pair]
    old_params = [dict(conv.named_parameters()) for pair in old_ops for conv in pair]

    progressive.prune_and_widen(model, optimizer, 3, 2)  # C/4 -> C/2 channels per op
    widths = [op.channels // 4 for _, _, op in model.edge_ops()]  # 3 cells x 6 edges
    assert len(maps) == len(widths) == 18
    assert all(g.shape == (2 * n,) and torch.equal(g[:n], torch.arange(n)) for g, n in zip(maps, widths))
    new_convs = [conv for _, _, op in model.edge_ops() for conv in (op.ops[2], op.ops[3])]
    for index, conv in enumerate(new_convs):
        g = maps[index // 2]
        old = old_tensors[index]
        new = conv.state_dict()
        weight = old["1.weight"][g][:, g]  # output and input channels both follow g
        assert torch.equal(new["1.weight"], weight)
        for stat in ("2.running_mean", "2.running_var"):
            assert torch.equal(new[stat], old[stat][g])
        momentum = old_state[id(old_params[index]["1.weight"])][g][:, g]
        assert torch.equal(optimizer.state[conv[1].weight]["momentum_buffer"], momentum)
    assert len(optimizer.state) == len(model.weight_parameters())

    # the widened network trains, and has exactly the size of one built at k=2 and pruned alike
    loss = model.loss(torch.randn(2, 3, 32, 32), torch.arange(2))
    loss.backward()
    optimizer.step()
    direct = Network(C=8, N=1, num_classes=10, k=2)
    load_masks(direct, {"cell": model.arch['cell'].kept})
    progressive.apply_masks(direct)
    assert sum(p.numel() for p in model.weight_parameters()) == sum(p.numel() for p in direct.weight_parameters())
    assert [p.shape for p in model.weight_parameters()] == [p.shape for p in direct.weight_parameters()]


TINY = ["--dataset", "synthetic", "--data_limit", "256", "--batch_size", "32", "--init_channels", "4",
        "--num_cells", "1", "--device", "cpu", "--ks", "4", "2", "--num_keeps", "5", "3",
        "--train_epochs", "2", "2", "--arch_start_epoch", "1"]


def final_state(run_dir):
    return torch.load(Path(run_dir) / "checkpoint.pt", weights_only=True)


@pytest.mark.parametrize("stop_after", [1, 3])  # a checkpoint in the first and in the second stage
def test_progressive_search_resumes_from_either_stage(tmp_path, stop_after):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_search_progressive.main([*TINY, "--output_dir", str(straight)])
    train_search_progressive.main([*TINY, "--output_dir", str(split), "--stop_after_epoch", str(stop_after)])
    assert final_state(split)["epoch"] == stop_after
    train_search_progressive.main([*TINY, "--resume", str(split)])
    a, b = final_state(straight), final_state(split)
    assert a["epoch"] == b["epoch"] == 4 and a["k"] == 2
    assert a["masks"] == b["masks"] and all(len(ops) == 3 for ops in a["masks"]["cell"])
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][key], b["model"][key]) for key in a["model"])
    epochs = json.loads((straight / "results.json").read_text())["epochs"]
    assert [e["k"] for e in epochs] == [4, 4, 2, 2]
    assert [e["arch_updates"] for e in epochs] == [False, True, False, True]
    for row, kept in zip(epochs[-1]["arch"]["cell"]["mean"], a["masks"]["cell"]):
        assert [o for o in range(5) if row[o] > 0] == kept
    # the stage switch is logged as the authors logged it: the ops left on every edge, the new k
    log = (straight / "log.txt").read_text()
    assert "stage 2: pruned to 3 ops per edge, widened to k 2" in log
    for label, kept in zip(["1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"], a["masks"]["cell"]):
        assert f"cell {label}: {' '.join(OPS[o] for o in kept)}\n" in log


def test_inconsistent_stage_settings_are_one_line(tmp_path, capsys):
    base = [*TINY, "--output_dir", str(tmp_path)]
    for extra, words in ((["--ks", "4"], "one value per stage"), (["--ks", "2", "4"], "must not grow"),
                         (["--num_keeps", "3", "5"], "must not grow"), (["--ks", "3", "1"], "does not divide")):
        with pytest.raises(SystemExit):
            train_search_progressive.main([*base, *extra])
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
