"""201-space/model.py and train.py: the NAS-Bench-201 network against xautodl's (parameter
count, output shape, the same logits for the same weights), --arch forms and their one-line
errors, and a tiny training on CPU end to end with an exact resume."""
import json

import pytest
import torch

from common.errors import UserError
from script_checks import expect_one_line_error, results
from space201 import train
from space201.model import BEST_CELL, TinyNetwork, parse_cell, resolve_cell
from space201.model_search import OPS

POOL_NONE = "|avg_pool_3x3~0|+|none~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"
CONV1_SKIP = "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_1x1~1|skip_connect~2|"
CELLS = [BEST_CELL, POOL_NONE, CONV1_SKIP]
TINY = ["--dataset", "synthetic", "--init_channels", "4", "--num_cells", "1", "--data_limit", "64",
        "--batch_size", "16", "--epochs", "2", "--device", "cpu", "--report_freq", "2"]


def xautodl_network(cell, num_classes):
    pytest.importorskip("xautodl")
    from xautodl.models import get_cell_based_tiny_net
    from xautodl.models.cell_searchs.genotypes import Structure

    return get_cell_based_tiny_net({"name": "infer.tiny", "C": 16, "N": 5, "num_classes": num_classes,
                                    "genotype": Structure.str2structure(cell)})


def copy_state_in_order(ours, theirs):
    """Their parameters and buffers into ours, one by one in module order (the names differ)."""
    pairs = [*zip(ours.parameters(), theirs.parameters()), *zip(ours.buffers(), theirs.buffers())]
    assert len(pairs) == len(list(ours.parameters())) + len(list(ours.buffers()))
    with torch.no_grad():
        for mine, reference in pairs:
            assert mine.shape == reference.shape
            mine.copy_(reference)


# --- the network -----------------------------------------------------------------------------------
@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("cell", CELLS, ids=["best", "pool_none", "conv1x1_skip"])
def test_the_network_is_xautodls(cell, num_classes):
    torch.manual_seed(0)
    theirs = xautodl_network(cell, num_classes)
    ours = TinyNetwork(16, 5, cell, num_classes)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    assert len(list(ours.buffers())) == len(list(theirs.buffers()))
    copy_state_in_order(ours, theirs)
    x = torch.randn(3, 3, 32, 32)
    for mode in (True, False):  # batch statistics (updating the running ones), then the running ones
        ours.train(mode)
        theirs.train(mode)
        with torch.no_grad():
            logits, aux = ours(x)
            _, their_logits = theirs(x)
        assert aux is None and logits.shape == (3, num_classes)
        torch.testing.assert_close(logits, their_logits, rtol=0, atol=1e-5)


def test_network_takes_op_indices_and_ignores_drop_path():
    net = TinyNetwork(4, 1, [OPS.index("nor_conv_3x3")] * 6, 7)
    assert net.genotype == "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+" \
                           "|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    net.drop_path_prob = 0.3  # what the training loop does each epoch
    logits, aux = net(torch.randn(2, 3, 16, 16))  # ImageNet16-120's size
    assert logits.shape == (2, 7) and aux is None
    with pytest.raises(ValueError):
        TinyNetwork(4, 1, [0] * 5)


# --- cell strings and --arch ------------------------------------------------------------------------
def one_line(call, *args):
    with pytest.raises(UserError) as info:
        call(*args)
    message = str(info.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize("cell", CELLS)
def test_cell_strings_round_trip(cell):
    assert resolve_cell(cell) == cell and resolve_cell(f"  {cell}\n") == cell
    assert len(parse_cell(cell)) == 6


@pytest.mark.parametrize("bad, says", [
    ("|nor_conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op nor_conv_5x5"),
    ("|nor_conv_3x3~0|+|none~0|none~1|", "expected the form"),  # two nodes
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "expected the form"),  # an edge from itself
    ("|none~0|+|none~1|none~0|+|none~0|none~1|none~2|", "expected the form"),  # edges out of order
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|+|none~0|", "expected the form"),  # a fourth node
    ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "not a NAS-Bench-201 cell"),
    ("|none~x|+|none~0|none~1|+|none~0|none~1|none~2|", "not a NAS-Bench-201 cell"),
])
def test_bad_cell_strings_are_one_line(bad, says):
    message = one_line(resolve_cell, bad)
    assert says in message and "--arch" in message


def search_results(folder, genotype=CONV1_SKIP, finished=True):
    """A results.json with the keys a NAS-Bench-201 search writes (common/nas/search.py)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {"args": {"dataset": "synthetic"}, "versions": {}, "epochs": [{"epoch": 1, "genotype": genotype}],
            "wall_time_s": 1.0, "space": "201", "op_names": list(OPS),
            "edge_labels": {"cell": ["1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"]},
            "stages": [{"epochs": 1, "k": 1, "num_keep": None, "arch_start": 0}], "finished": finished,
            "genotype": genotype, "benchmark": None, "epochs_done": 1}
    (folder / "results.json").write_text(json.dumps(data))
    return folder / "results.json"


def test_resolve_a_search_results_file_and_folder(tmp_path):
    file = search_results(tmp_path / "search")
    assert resolve_cell(str(file)) == CONV1_SKIP
    assert resolve_cell(str(file.parent)) == CONV1_SKIP
    search_results(tmp_path / "running", finished=False)
    assert "has not finished" in one_line(resolve_cell, str(tmp_path / "running"))
    assert resolve_cell(str(tmp_path / "running"), True) == CONV1_SKIP


def test_resolve_refuses_what_holds_no_201_cell(tmp_path):
    assert "neither a NAS-Bench-201 cell string" in one_line(resolve_cell, str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    assert "without results.json" in one_line(resolve_cell, str(tmp_path / "empty"))
    file = tmp_path / "results.json"
    file.write_text(json.dumps({"args": {}, "epochs": []}))
    assert "holds no genotype" in one_line(resolve_cell, str(file))
    file.write_text(json.dumps({"genotype": {"normal": [], "normal_concat": [], "reduce": [],
                                             "reduce_concat": []}, "finished": True}))
    assert "a DARTS-space search?" in one_line(resolve_cell, str(file))
    search_results(tmp_path / "bad", genotype="|none~0|+|none~0|")
    assert "its genotype" in one_line(resolve_cell, str(tmp_path / "bad"))
    file.write_text('{"genotype": "|none')
    assert "not valid JSON" in one_line(resolve_cell, str(file))


# --- train.py ----------------------------------------------------------------------------------------
def test_one_epoch_writes_results(tmp_path):
    out = tmp_path / "run"
    returned = train.main(["--dataset", "synthetic", "--data_limit", "256", "--batch_size", "64", "--epochs", "1",
                           "--init_channels", "8", "--num_cells", "1", "--arch", POOL_NONE, "--device", "cpu",
                           "--output_dir", str(out)])
    data = results(out)
    assert data["finished"] and data["epochs_done"] == 1 and data["space"] == "201"
    assert data["genotype"] == POOL_NONE and returned["final_test_acc"] == data["final_test_acc"]
    assert 0 <= data["final_test_acc"] <= 100
    assert data["params_m"] == sum(p.numel() for p in TinyNetwork(8, 1, POOL_NONE, 10).parameters()) / 1e6
    assert data["epochs"][0]["lr"] == pytest.approx(0.1) and data["epochs"][0]["drop_path_prob"] == 0.0
    assert data["args"]["grad_clip"] is None  # the benchmark clips nothing
    # the log speaks of what this network has: no auxiliary head, no drop-path, no "best" epoch
    # picked on the test set (the benchmark reports the last epoch)
    log = (out / "log.txt").read_text()
    assert "auxiliary" not in log and "drop_path" not in log and "best" not in log
    assert "best_test_acc" not in data and "final test accuracy" in log
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    group = state["optimizer"]["param_groups"][0]
    assert group["nesterov"] and group["momentum"] == 0.9 and group["weight_decay"] == 5e-4


def test_arch_from_a_search_run_folder(tmp_path):
    folder = search_results(tmp_path / "search").parent
    out = tmp_path / "run"
    train.main([*TINY, "--epochs", "1", "--arch", str(folder), "--output_dir", str(out)])
    assert results(out)["genotype"] == CONV1_SKIP


def test_bad_input_is_one_line(tmp_path, capsys):
    base = [*TINY, "--output_dir", str(tmp_path / "run")]
    err = expect_one_line_error(capsys, train.main, [*base, "--arch", "|nor_conv_3x3~0|+|bad~0|none~1|"])
    assert "unknown op bad" in err
    err = expect_one_line_error(capsys, train.main, [*base, "--momentum", "0"])
    assert "--no-nesterov" in err
    assert not (tmp_path / "run").exists()


def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(tmp_path):
    train.main([*TINY, "--output_dir", str(tmp_path / "full")])
    train.main([*TINY, "--output_dir", str(tmp_path / "split"), "--stop_after_epoch", "1"])
    assert results(tmp_path / "split")["epochs_done"] == 1
    train.main(["--resume", str(tmp_path / "split")])
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    split = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert split["epoch"] == full["epoch"] == 2 and full["model"].keys() == split["model"].keys()
    for name, tensor in full["model"].items():
        assert torch.equal(tensor, split["model"][name]), name
    done, expected = results(tmp_path / "split"), results(tmp_path / "full")
    assert done["finished"] and done["final_test_acc"] == expected["final_test_acc"]
    assert [e["lr"] for e in done["epochs"]] == pytest.approx([0.1, 0.05])  # cosine over 2 epochs
