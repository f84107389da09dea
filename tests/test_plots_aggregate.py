"""scripts/plot_search.py and scripts/aggregate.py on the output of real tiny searches of both
spaces (a CIFAR-10-format set of random pixels, the stand-in benchmark), and
scripts/reproduce/*.sh as dry runs."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from common import run_records
from darts_space import train_search as darts_search
from golden_runs import write_cifar10
from script_checks import load_script, results
from space201 import train_search, train_search_progressive
from space201.model_search import OPS

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

plot_search = load_script("plot_search")
aggregate = load_script("aggregate")
TINY_201 = ["--dataset", "cifar10", "--data_limit", "128", "--batch_size", "32", "--init_channels", "4",
            "--num_cells", "1", "--device", "cpu", "--report_freq", "1000"]
# name: (script, flags) of the runs the tests read
RUNS = {
    "drnas0": (train_search, ["--seed", "0"]),
    "drnas1": (train_search, ["--seed", "1"]),
    "darts0": (train_search, ["--seed", "0", "--method", "darts", "--sample_archs", "0"]),
    "k2": (train_search, ["--seed", "0", "--k", "2"]),
    "lambda0": (train_search, ["--seed", "0", "--reg_scale", "0"]),
    "lr": (train_search, ["--seed", "0", "--learning_rate", "0.05"]),
    "progressive": (train_search_progressive, ["--seed", "0", "--train_epochs", "1", "1", "--arch_start_epoch", "0"]),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{name: run folder} of real tiny searches: NAS-Bench-201 ones with the stand-in benchmark,
    exploration and sharpness, and one DARTS-space search."""
    root = tmp_path_factory.mktemp("runs")
    data = write_cifar10(root / "data")
    standin = root / "standin.pth"
    load_script("standin_benchmark").main([str(standin)])
    folders = {}
    for name, (script, extra) in RUNS.items():
        plain = ["--epochs", "2"] if script is train_search else []
        script.main([*TINY_201, *plain, "--data", str(data), "--api_path", str(standin), "--sample_archs", "10",
                     "--hessian_freq", "2", "--hessian_batches", "1", *extra, "--output_dir", str(root / name)])
        folders[name] = root / name
    darts_search.main(["--dataset", "cifar10", "--data", str(data), "--data_limit", "32", "--batch_size", "16",
                       "--init_channels", "8", "--layers", "3", "--ks", "2", "1", "--num_keeps", "4", "2",
                       "--train_epochs", "1", "1", "--arch_start_epoch", "0", "--hessian_freq", "2",
                       "--hessian_batches", "1", "--device", "cpu", "--output_dir", str(root / "darts_space")])
    folders["darts_space"] = root / "darts_space"
    return folders


def assert_png(path, min_bytes=10_000):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert len(data) > min_bytes, f"{path} is only {len(data)} bytes"
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 200


# ----------------------------------------------------------------------------- the runs' records

def test_every_search_records_its_space_ops_and_edges(runs):
    nb201, darts = results(runs["drnas0"]), results(runs["darts_space"])
    assert nb201["space"] == "201" and nb201["op_names"] == list(OPS)
    assert nb201["edge_labels"] == {"cell": ["1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"]}
    assert darts["space"] == "darts" and len(darts["op_names"]) == 7
    assert set(darts["edge_labels"]) == {"normal", "reduce"}
    assert darts["edge_labels"]["normal"][:3] == ["2<-0", "2<-1", "3<-0"]
    assert darts["edge_labels"]["reduce"][-1] == "5<-4" and len(darts["edge_labels"]["reduce"]) == 14
    # the alpha matrices the labels name: edges x ops
    alpha = darts["epochs"][-1]["arch"]["normal"]["alpha"]
    assert (len(alpha), len(alpha[0])) == (14, 7)


# ----------------------------------------------------------------------------- plot_search

def test_plot_search_writes_three_pngs(runs, tmp_path, capsys):
    out = tmp_path / "plots"
    written = plot_search.main([str(runs["drnas0"]), str(runs["drnas1"]), str(runs["darts0"]), "--out", str(out)])
    assert sorted(Path(p).name for p in written) == sorted(plot_search.FIGURES)
    for name in plot_search.FIGURES:
        assert_png(out / name)
    err = capsys.readouterr().err
    assert "DARTS seed 0" in err and "no exploration data" in err  # searched without --sample_archs


def test_plot_search_on_the_darts_space(runs, capsys):
    written = plot_search.main([str(runs["darts_space"]), "--labels", "DrNAS"])
    # default --out: the run's folder; no benchmark, so no exploration figure
    assert sorted(Path(p).name for p in written) == ["edges.png", "eigenvalue.png"]
    assert_png(runs["darts_space"] / "edges.png")
    assert "exploration.png not drawn" in capsys.readouterr().err


def test_the_darts_space_edges_are_a_heatmap_of_the_mean_minus_uniform(runs, tmp_path, monkeypatch):
    from common import edge_heatmap

    drawn = []
    monkeypatch.setattr(plot_search, "plot_edge_heatmap",
                        lambda *args: drawn.append(args) or edge_heatmap.plot_edge_heatmap(*args))
    plot_search.main([str(runs["darts_space"]), "--out", str(tmp_path)])
    assert len(drawn) == 1  # 14 edges per cell type: not 28 panels of curves
    assert_png(tmp_path / "edges.png")
    run = run_records.load_run(runs["darts_space"])
    means = run["epochs"][-1]["arch"]["normal"]["mean"]
    rows = edge_heatmap.deviations(means)
    for mean_row, row in zip(means, rows):  # after pruning to 2 ops: deviation from 1/2, pruned ops blank
        kept = [m for m in mean_row if m]
        assert len(kept) == 2 and [r is None for r in row] == [not m for m in mean_row]
        # the kept means sum to 1 up to their float32 rounding: half an ulp (2^-24 relative) each, and the sum's
        assert sum(r for r in row if r is not None) == pytest.approx(0.0, abs=(len(kept) + 1) * 2.0 ** -24)
    labels = run["edge_labels"]["normal"]
    chosen = edge_heatmap.chosen_cells(run["genotype"], "normal", labels)
    assert chosen == {(labels.index(f"{i // 2 + 2}<-{j}"), op) for i, (op, j) in enumerate(run["genotype"]["normal"])}
    assert edge_heatmap.unit_exponent([[2e-4, -3e-5, None]]) == -4


def test_exploration_without_a_benchmark_draws_the_distinct_counts(runs, tmp_path, capsys):
    data = results(runs["drnas0"])
    for epoch in data["epochs"]:  # as a run without --api_path records it
        epoch["benchmark"], epoch["exploration"]["benchmark"] = None, None
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(data))
    written = plot_search.main([str(tmp_path / "run"), "--out", str(tmp_path / "plots")])
    assert tmp_path / "plots" / "exploration.png" in written
    assert_png(tmp_path / "plots" / "exploration.png")
    assert "distinct counts alone are drawn" in capsys.readouterr().err


def test_op_and_edge_names_are_read_from_the_run(runs):
    nb201, darts = run_records.load_run(runs["drnas0"]), run_records.load_run(runs["darts_space"])
    assert run_records.op_names(nb201, 5) == list(OPS)
    assert run_records.op_names(darts, 7) == darts["op_names"]
    assert run_records.edge_names(nb201, 6, "cell") == ["1←0", "2←0", "2←1", "3←0", "3←1", "3←2"]
    assert run_records.edge_names(darts, 14, "normal")[-1] == "normal 5←4"
    # a record without them is not guessed at
    assert run_records.op_names({"args": {}}, 5) == ["op0", "op1", "op2", "op3", "op4"]
    assert run_records.edge_names({"args": {}}, 6, "cell")[0] == "edge 0"


@pytest.mark.parametrize("case", ["missing_results", "bad_json", "missing_dir", "labels_count"])
def test_plot_search_bad_input_is_one_line_and_exit_2(runs, tmp_path, capsys, case):
    run = runs["drnas0"]
    if case == "missing_results":
        (tmp_path / "empty").mkdir()
        argv = [str(tmp_path / "empty")]
    elif case == "bad_json":
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "results.json").write_text('{"args": {"seed": 0}, "epochs": [')
        argv = [str(tmp_path / "bad")]
    elif case == "missing_dir":
        argv = [str(tmp_path / "nowhere")]
    else:
        argv = [str(run), "--labels", "a", "b"]
    with pytest.raises(SystemExit) as exit_info:
        plot_search.main(argv + ["--out", str(tmp_path / "plots")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- aggregate

def row_of(text, *starts):
    """The Markdown table row whose first cells are `starts`."""
    prefix = "| " + " | ".join(starts) + " |"
    rows = [line for line in text.splitlines() if line.startswith(prefix)]
    assert len(rows) == 1, f"no single row {prefix!r} in:\n{text}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def cell(values, digits=2):
    """What aggregate.py must print for these values: mean ± population std (n)."""
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.{digits}f} ± {values.std(ddof=0):.{digits}f} (n={len(values)})"


def final(runs, *names, metric="cifar10_test"):
    return [results(runs[name])["benchmark"][metric] for name in names]


def test_nb201_table_pools_seeds_and_splits_other_settings(runs):
    chosen = [runs[n] for n in ("drnas0", "drnas1", "darts0", "lr")]
    text = aggregate.main([str(path) for path in chosen])
    assert "(a) NAS-Bench-201" in text and "(b)" not in text and "(c)" not in text
    # two seeds pooled; the run with another --learning_rate is a row of its own
    drnas = row_of(text, "DrNAS (learning_rate=0.025)", "CIFAR-10")
    assert drnas[3] == cell(final(runs, "drnas0", "drnas1"))
    assert drnas[4] == cell(final(runs, "drnas0", "drnas1", metric="cifar100_valid"))
    assert row_of(text, "DrNAS (learning_rate=0.05)", "CIFAR-10")[3] == cell(final(runs, "lr"))
    assert row_of(text, "DARTS", "CIFAR-10")[3] == cell(final(runs, "darts0"))
    assert text.index("| DARTS |") < text.index("| DrNAS")  # the paper's row order
    assert "ddof=0" in text


def test_partial_channel_and_anchor_tables(runs, tmp_path):
    out = tmp_path / "table.md"
    aggregate.main([str(runs[n]) for n in ("drnas0", "drnas1", "k2", "lambda0", "progressive")] + ["--out", str(out)])
    text = out.read_text()
    assert row_of(text, "k=2")[3] == cell(final(runs, "k2"))
    assert row_of(text, "k=1")[3] == cell(final(runs, "drnas0", "drnas1"))
    assert row_of(text, "k=1")[4] == f"{np.mean([results(runs[n])['peak_memory_mb'] for n in ('drnas0', 'drnas1')]):.0f} (n=2)"
    assert row_of(text, "progressive (k 4→2, ops 5→3)")[3] == cell(final(runs, "progressive"))
    assert row_of(text, "0", "DrNAS", "CIFAR-10")[3] == cell(final(runs, "lambda0"))
    assert row_of(text, "0.001", "DrNAS", "CIFAR-10")[3] == cell(final(runs, "drnas0", "drnas1"))
    assert text.index("(a)") < text.index("(b)") < text.index("(c)")


def test_darts_space_runs_are_not_counted_as_nas_bench_201(runs, capsys):
    with pytest.raises(SystemExit) as exit_info:
        aggregate.main([str(runs["darts_space"])])
    assert exit_info.value.code == 2
    assert "NAS-Bench-201" in capsys.readouterr().err
    text = aggregate.main([str(runs["darts_space"]), str(runs["drnas0"])])
    assert row_of(text, "DrNAS", "CIFAR-10")[3] == cell(final(runs, "drnas0"))  # the DARTS-space run left out


def test_unfinished_runs_are_left_out(runs, tmp_path, capsys):
    copy = tmp_path / "unfinished"
    shutil.copytree(runs["drnas1"], copy)
    data = results(copy)
    data["finished"] = False
    (copy / "results.json").write_text(json.dumps(data))
    text = aggregate.main([str(runs["drnas0"]), str(copy), str(runs["drnas0"])])  # drnas0 given twice: once
    assert row_of(text, "DrNAS", "CIFAR-10")[3] == cell(final(runs, "drnas0"))
    assert "leaving out" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing_results", "bad_json", "deep_json", "not_results", "no_runs"])
def test_aggregate_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case):
    folder = tmp_path / "run"
    folder.mkdir()
    if case == "bad_json":
        (folder / "results.json").write_text("{not json")
    elif case == "deep_json":  # json.load recurses once per level
        (folder / "results.json").write_text("[" * 100_000 + "]" * 100_000)
    elif case == "not_results":
        (folder / "results.json").write_text("[1, 2]")
    elif case == "no_runs":
        (folder / "results.json").write_text(json.dumps({"args": {}, "finished": False, "epochs": []}))
    with pytest.raises(SystemExit) as exit_info:
        aggregate.main([str(folder)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- reproduce/*.sh

@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("script, searches", [
    ("nb201_table.sh", 3 * 5),          # 3 datasets x 5 methods x 1 seed
    ("partial_channels.sh", 4 + 1),     # k = 1 2 4 8, progressive
    ("anchor_ablation.sh", 7),          # 7 lambdas
])
def test_reproduce_scripts_dry_run(script, searches, tmp_path):
    env = dict(os.environ, DRY_RUN="1", SEEDS="0", EPOCHS="1", API_PATH="x")
    for name in ("DATA", "EXTRA_ARGS", "DATASETS", "METHODS", "KS", "LAMBDAS", "REG_TYPE",
                 "PROGRESSIVE_ARGS", "PYTHON"):
        env.pop(name, None)
    done = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce" / script)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    commands = [line for line in done.stdout.splitlines() if line and not line.startswith("#")]
    assert len(commands) == searches + 1, done.stdout
    *search_lines, last = commands
    epochs_flag = {"train_search.py": "--epochs 1", "train_search_progressive.py": "--train_epochs 1 1"}
    assert all(line.split()[1] in epochs_flag for line in search_lines)
    assert all(epochs_flag[line.split()[1]] in line for line in search_lines)
    assert all(f"--api_path {tmp_path}/x" in line for line in search_lines)  # made absolute
    assert all("--seed 0" in line and "--output_dir ../experiments/" in line for line in search_lines)
    assert "aggregate.py" in last and "--recursive" in last
    if script == "nb201_table.sh":
        flagged = [line for line in search_lines if "--hessian_freq 5" in line]
        assert len(flagged) == 2 and all("--dataset cifar10 " in line for line in flagged)
        assert all("--sample_archs 100" in line for line in flagged)
    if script == "partial_channels.sh":
        assert sum("train_search_progressive.py" in line for line in search_lines) == 1


def test_reproduce_script_needs_api_path(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "API_PATH"}
    env["DRY_RUN"] = "1"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce" / "anchor_ablation.sh")],
                          env=env, capture_output=True, text=True, timeout=20)
    assert done.returncode != 0 and "API_PATH" in done.stderr
