"""What a run shows in TensorBoard (common/run/board.py), read back with tensorboard's own
EventAccumulator from real tiny runs: per-step curves equal to the progress lines, alpha and
beta histograms, the mean weight of every op on every edge, the exploration band, the
genotype as text, and the hparams with the final figures."""
import re

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from script_checks import load_script, results
from space201 import train
from space201 import train_search

TINY = ["--dataset", "synthetic", "--data_limit", "256", "--batch_size", "32", "--init_channels", "4",
        "--num_cells", "1", "--device", "cpu", "--report_freq", "2", "--epochs", "2"]
PROGRESS = re.compile(r"epoch (\d+) step (\d+)/(\d+) loss ([\d.]+) acc ([\d.]+)%")


def events(run_dir):
    accumulator = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    """A 2-epoch NAS-Bench-201 search with exploration and the stand-in benchmark."""
    root = tmp_path_factory.mktemp("board")
    standin = root / "standin.pth"
    load_script("standin_benchmark").main([str(standin)])
    train_search.main([*TINY, "--sample_archs", "8", "--api_path", str(standin), "--output_dir", str(root / "run")])
    return root / "run"


def test_the_per_step_curves_are_the_numbers_of_the_progress_lines(search_run):
    board = events(search_run)
    lines = PROGRESS.findall((search_run / "log.txt").read_text())
    steps = int(lines[0][2])
    expected_x = [(int(epoch) - 1) * steps + int(step) for epoch, step, *_ in lines]
    assert expected_x == list(range(2, 2 * steps + 1, 2))  # every --report_freq 2 steps over 2 epochs
    for tag, column in (("step/train_loss", 3), ("step/train_acc", 4)):
        points = board.Scalars(tag)
        assert [p.step for p in points] == expected_x
        # the log prints 4 (loss) or 2 (acc) decimals of the same number the curve holds (as a float32):
        # half a unit of the last printed decimal, and float32's rounding of a number below 100
        decimals = len(lines[0][column].split(".")[1])
        assert [p.value for p in points] == pytest.approx([float(line[column]) for line in lines],
                                                          abs=0.5 * 10 ** -decimals + 1e-5)


def test_alpha_beta_histograms_and_every_edge_and_op_mean(search_run):
    board, data = events(search_run), results(search_run)
    assert {"alpha/cell", "beta/cell"} <= set(board.Tags()["histograms"])
    last = board.Histograms("beta/cell")[-1]
    assert last.step == 2 and last.histogram_value.num == 30  # 6 edges x 5 ops, none pruned
    beta = data["epochs"][-1]["arch"]["cell"]["beta"]
    assert last.histogram_value.min == pytest.approx(min(map(min, beta)))
    means = data["epochs"][-1]["arch"]["cell"]["mean"]
    for e, label in enumerate(data["edge_labels"]["cell"]):
        for o, op in enumerate(data["op_names"]):
            (point,) = [p for p in board.Scalars(f"mean cell {label}/{op}") if p.step == 2]
            assert point.value == pytest.approx(means[e][o], rel=1e-6)
    from tensorboard.plugins.custom_scalar import layout_pb2

    layout = layout_pb2.Layout.FromString(board.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {category.title: category.chart for category in layout.category}
    edges = charts["mean mixing weight per edge (cell)"]
    assert [chart.title for chart in edges] == data["edge_labels"]["cell"]  # one chart per edge, all its ops
    assert all(re.fullmatch(edges[0].multiline.tag[0], f"mean cell 1<-0/{op}") for op in data["op_names"])
    assert not re.fullmatch(edges[0].multiline.tag[0], "mean cell 2<-0/none")
    band = {chart.title: chart.margin.series[0] for chart in charts["exploration (sampled architectures)"]}
    assert band["cifar10_test"].lower == "exploration/cifar10_test/min"


def test_the_exploration_band_and_the_genotype_text(search_run):
    board, data = events(search_run), results(search_run)
    band = data["epochs"][-1]["exploration"]["benchmark"]["cifar10_test"]
    for end in ("min", "mean", "max"):
        assert board.Scalars(f"exploration/cifar10_test/{end}")[-1].value == pytest.approx(band[end], rel=1e-6)
    text = board.Tensors("genotype/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert text == data["genotype"] == data["genotype_text"]


def test_hparams_hold_the_flags_and_the_final_figures(search_run):
    board, data = events(search_run), results(search_run)
    content = board.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(content)
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["method"].string_value == "dirichlet" and start.hparams["epochs"].number_value == 2
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    metrics = {m.name.tag for m in experiment.metric_infos}
    assert {"final/valid_acc", "final/benchmark_cifar10_test"} <= metrics
    assert board.Scalars("final/valid_acc")[-1].value == pytest.approx(data["epochs"][-1]["valid_acc"], rel=1e-6)
    assert board.Scalars("final/benchmark_cifar10_test")[-1].value == pytest.approx(data["benchmark"]["cifar10_test"])


def test_a_training_has_step_curves_and_hparams_with_its_test_accuracy(tmp_path):
    train.main(["--dataset", "synthetic", "--data_limit", "64", "--batch_size", "32", "--init_channels", "4",
                "--num_cells", "1", "--epochs", "1", "--device", "cpu", "--report_freq", "1",
                "--output_dir", str(tmp_path)])
    board, data = events(tmp_path), results(tmp_path)
    assert [p.step for p in board.Scalars("step/train_loss")] == [1, 2]
    assert board.Scalars("final/test_acc")[-1].value == pytest.approx(data["final_test_acc"], rel=1e-6)
    assert "alpha/cell" not in board.Tags()["histograms"]  # no architecture to show
