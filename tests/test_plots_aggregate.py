"""scripts/plot_search.py, scripts/aggregate.py and scripts/reproduce/*.sh on fake run folders."""
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from common.results import METRICS

from script_checks import load_script

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NB201_OPS = 5


plot_search = load_script("plot_search")
aggregate = load_script("aggregate")


def bench(test, offset=0.0):
    """Six metrics; cifar10_test = test, the others derived from it."""
    return {m: round(test - 10 * i + offset, 4) if m != "cifar10_test" else test
            for i, m in enumerate(METRICS)}


def arch_record(epoch, n_edges=6, n_ops=NB201_OPS, cells=("cell",), dirichlet=True):
    out = {}
    for c, cell in enumerate(cells):
        mean = []
        for e in range(n_edges):
            raw = [1.0 + 0.1 * epoch * ((op + e + c) % n_ops) for op in range(n_ops)]
            total = sum(raw)
            mean.append([r / total for r in raw])
        record = {"alpha": [[math.log(w) for w in edge] for edge in mean], "mean": mean}
        if dirichlet:
            record["beta"] = [[w * 10 for w in edge] for edge in mean]
        out[cell] = record
    return out


def make_run(root, name, *, method="dirichlet", seed=0, dataset="cifar10", k=1, reg_scale=1e-3,
             reg_type="l2", final_test=94.0, epochs=4, exploration=True, hessian=True,
             peak_memory=1000.0, stages=None, finished=True, space=None, benchmark=True):
    """A run folder with a results.json in the format train_search.py writes."""
    args = {"dataset": dataset, "method": method, "seed": seed, "k": k, "reg_scale": reg_scale,
            "reg_type": reg_type, "epochs": epochs}
    darts = space == "darts"
    if space:
        args["space"] = space
    records = []
    for ep in range(1, epochs + 1):
        acc = final_test - (epochs - ep) * 2.0
        record = {
            "epoch": ep, "stage": 0 if not stages or ep <= epochs // 2 else 1, "k": k, "lr": 0.025,
            "tau": None, "arch_updates": True, "train_loss": 1.0, "train_acc": 60.0 + ep,
            "valid_loss": 1.1, "valid_acc": 58.0 + ep, "genotype": "|nor_conv_3x3~0|+|...|",
            "arch": arch_record(ep, n_edges=14 if darts else 6, n_ops=7 if darts else 5,
                                cells=("normal", "reduce") if darts else ("cell",),
                                dirichlet=method == "dirichlet"),
            "benchmark": bench(acc) if benchmark else None,
            "epoch_time_s": 10.0, "images_per_s": 500.0,
        }
        if exploration:
            record["exploration"] = {
                "samples": 100, "distinct": max(1, 100 - 30 * ep),
                "benchmark": {m: {"min": v - 40 / ep, "mean": v - 10 / ep, "max": min(v + 2, 100.0)}
                              for m, v in bench(acc).items()}}
        if hessian and ep % 2 == 0:
            record["hessian_eigenvalue"] = 0.05 * ep * (3 if method == "darts" else 1)
        records.append(record)
    results = {
        "args": args, "versions": {"python": "3.11", "cuda_device": None}, "wall_time_s": 12.5,
        "peak_memory_mb": peak_memory, "finished": finished, "epochs_done": epochs,
        "genotype": records[-1]["genotype"],
        "benchmark": bench(final_test) if benchmark else None, "epochs": records,
    }
    if stages:
        results["stages"] = stages
    folder = Path(root) / name
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1))
    return folder


def assert_png(path, min_bytes=10_000):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert len(data) > min_bytes, f"{path} is only {len(data)} bytes"
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 200


# ----------------------------------------------------------------------------- plot_search

def test_plot_search_writes_three_pngs(tmp_path, capsys):
    a = make_run(tmp_path, "drnas0", seed=0, final_test=94.0)
    b = make_run(tmp_path, "drnas1", seed=1, final_test=93.0)
    c = make_run(tmp_path, "darts0", method="darts", final_test=54.3, exploration=False)
    out = tmp_path / "plots"
    written = plot_search.main([str(a), str(b), str(c), "--out", str(out), "--metric", "cifar10_test"])
    assert sorted(Path(p).name for p in written) == sorted(plot_search.FIGURES)
    for name in plot_search.FIGURES:
        assert_png(out / name)
    err = capsys.readouterr().err
    assert "DARTS seed 0" in err and "no exploration data" in err  # the DARTS run is skipped there


def test_plot_search_labels_edges_run_and_darts_space(tmp_path, capsys):
    a = make_run(tmp_path, "drnas", space="darts", benchmark=False, exploration=False, hessian=False)
    b = make_run(tmp_path, "darts", method="darts", space="darts", benchmark=False,
                 exploration=False, hessian=True)
    written = plot_search.main([str(a), str(b), "--labels", "DrNAS", "DARTS", "--edges_run", "1"])
    # Default --out: the first run's folder; no exploration data anywhere: that figure is skipped.
    assert sorted(Path(p).name for p in written) == ["edges.png", "eigenvalue.png"]
    assert_png(a / "edges.png")
    assert_png(a / "eigenvalue.png")
    assert not (a / "exploration.png").exists()
    assert "exploration.png not drawn" in capsys.readouterr().err


def test_op_and_edge_names():
    run = {"args": {}}
    assert plot_search.op_names(run, 5)[3] == "nor_conv_3x3"
    assert plot_search.op_names(run, 7)[0] == "max_pool_3x3"
    assert plot_search.op_names(run, 4) == ["op0", "op1", "op2", "op3"]
    assert plot_search.op_names({"args": {"space": "201"}}, 4) == ["op0", "op1", "op2", "op3"]
    assert plot_search.edge_names(6, "cell") == ["1←0", "2←0", "2←1", "3←0", "3←1", "3←2"]
    assert plot_search.edge_names(14, "normal")[-1] == "normal 5←4"


@pytest.mark.parametrize("case", ["missing_results", "bad_json", "missing_dir", "labels_count"])
def test_plot_search_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case):
    run = make_run(tmp_path, "ok")
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


def test_aggregate_nb201_table_mean_std_by_hand(tmp_path, capsys):
    # DrNAS on CIFAR-10: 94.0, 93.0, 95.5 -> mean 94.1667, population std
    # sqrt(((-0.1667)^2 + (-1.1667)^2 + 1.3333^2) / 3) = sqrt(3.1667 / 3) = 1.0274.
    for seed, acc in enumerate((94.0, 93.0, 95.5)):
        make_run(tmp_path / "runs", f"c10-drnas-{seed}", seed=seed, final_test=acc)
    # DARTS: identical results read ± 0.00 (the paper's convention, ddof=0).
    for seed in range(2):
        make_run(tmp_path / "runs", f"c10-darts-{seed}", method="darts", seed=seed, final_test=54.3)
    make_run(tmp_path / "runs", "c100-drnas-0", dataset="cifar100", final_test=90.0)
    make_run(tmp_path / "runs", "unfinished", seed=9, final_test=10.0, finished=False)
    text = aggregate.main([str(tmp_path / "runs"), "--recursive"])
    captured = capsys.readouterr()
    assert captured.out == text
    assert "leaving out" in captured.err and "unfinished" in captured.err

    assert "(a) NAS-Bench-201" in text
    assert "(b)" not in text and "(c)" not in text  # only default settings: no ablation tables
    drnas = row_of(text, "DrNAS", "CIFAR-10")
    assert drnas[3] == "94.17 ± 1.03 (n=3)"          # CIFAR-10 test
    assert drnas[2] == "94.17 ± 1.03 (n=3)"          # valid = test + 0 for cifar10_valid (i=0)
    assert drnas[4] == "74.17 ± 1.03 (n=3)"          # cifar100_valid = test - 20
    assert row_of(text, "DARTS", "CIFAR-10")[3] == "54.30 ± 0.00 (n=2)"
    assert row_of(text, "DrNAS", "CIFAR-100")[3] == "90.00 ± 0.00 (n=1)"
    # The paper's row order: DARTS before DrNAS.
    assert text.index("| DARTS |") < text.index("| DrNAS |")
    assert "ddof=0" in text


def test_aggregate_partial_channel_and_anchor_tables(tmp_path):
    runs = tmp_path / "runs"
    # k=2: 92, 91, 90 -> 91.00 ± sqrt(2/3) = 0.82; memory 1500, 1600, 1700 -> 1600.
    for seed, (acc, mem) in enumerate(((92.0, 1500.0), (91.0, 1600.0), (90.0, 1700.0))):
        make_run(runs, f"k2-{seed}", seed=seed, k=2, final_test=acc, peak_memory=mem)
    make_run(runs, "k1-0", seed=0, k=1, final_test=94.36, peak_memory=2437.0)
    stages = [{"epochs": 2, "k": 4, "num_keep": 5, "arch_start": 1},
              {"epochs": 2, "k": 2, "num_keep": 3, "arch_start": 1}]
    for seed, acc in enumerate((94.0, 94.5)):
        make_run(runs, f"prog-{seed}", seed=seed, k=4, stages=stages, final_test=acc, peak_memory=949.0)
    # Anchor: lambda 0 -> 93.78 and 93.58 (mean 93.68 ± 0.10); lambda 1 -> 93.76.
    make_run(runs, "l0-0", seed=0, reg_scale=0.0, final_test=93.78)
    make_run(runs, "l0-1", seed=1, reg_scale=0.0, final_test=93.58)
    make_run(runs, "l1-0", seed=0, reg_scale=1.0, final_test=93.76)
    make_run(runs, "kl-0", seed=0, reg_type="kl", reg_scale=1e-3, final_test=93.0)
    out = tmp_path / "table.md"
    aggregate.main([str(runs), "--recursive", "--out", str(out)])
    text = out.read_text()

    assert row_of(text, "k=2")[3:] == ["91.00 ± 0.82 (n=3)", "1600 (n=3)"]
    assert row_of(text, "k=1")[3:] == ["94.36 ± 0.00 (n=1)", "2437 (n=1)"]
    assert row_of(text, "progressive (k 4→2, ops 5→3)")[3:] == ["94.25 ± 0.25 (n=2)", "949 (n=2)"]
    assert row_of(text, "0", "DrNAS", "CIFAR-10")[3] == "93.68 ± 0.10 (n=2)"
    assert row_of(text, "1", "DrNAS", "CIFAR-10")[3] == "93.76 ± 0.00 (n=1)"
    assert row_of(text, "0.001", "DrNAS", "CIFAR-10")[3] == "94.36 ± 0.00 (n=1)"  # the k=1 default run
    assert row_of(text, "0.001 (kl)", "DrNAS", "CIFAR-10")[3] == "93.00 ± 0.00 (n=1)"
    # Table (a) holds only the default-setting run (k=1, one stage, l2 1e-3).
    assert row_of(text, "DrNAS", "CIFAR-10")[3] == "94.36 ± 0.00 (n=1)"
    assert text.index("(a)") < text.index("(b)") < text.index("(c)")


def test_aggregate_accepts_run_folders_and_missing_benchmark(tmp_path):
    a = make_run(tmp_path, "a", final_test=94.0)
    b = make_run(tmp_path, "b", seed=1, benchmark=False)
    text = aggregate.main([str(a), str(b), str(a)])  # a given twice: counted once
    assert row_of(text, "DrNAS", "CIFAR-10")[3] == "94.00 ± 0.00 (n=1)"


@pytest.mark.parametrize("case", ["missing_results", "bad_json", "not_results", "no_runs"])
def test_aggregate_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case):
    folder = tmp_path / "run"
    folder.mkdir()
    if case == "bad_json":
        (folder / "results.json").write_text("{not json")
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
    ("nb201_table.sh", 3 * 4),          # 3 datasets x 4 methods x 1 seed
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
