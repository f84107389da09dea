"""scripts/plot_search.py and scripts/aggregate.py on the output of real tiny searches of both
spaces (a CIFAR-10-format set of random pixels, the stand-in benchmark) and of trainings from
scratch of what they found."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import reports.run_records as run_records
from common.bench.benchmark import write_table
from reports.table_format import short_label
from darts_space import train as darts_train
from darts_space import train_search as darts_search
from golden_runs import write_cifar10
from script_checks import load_script, results
from space201 import train as train_201
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
    # a benchmark table not marked as a stand-in: what a real file's table looks like to the search
    (root / "real.pth").write_text("a placeholder")
    write_table(root / "real.pth", load_script("standin_benchmark").standin_table())
    train_search.main([*TINY_201, "--epochs", "2", "--data", str(data), "--api_path", str(root / "real.pth"),
                       "--sample_archs", "10", "--hessian_freq", "2", "--hessian_batches", "1", "--seed", "0",
                       "--output_dir", str(root / "real0")])
    # trainings from scratch: of a 201 search's cell, of the DARTS search's cell, of a published genotype
    tiny_training = ["--dataset", "cifar10", "--data", str(data), "--data_limit", "64", "--batch_size", "32",
                     "--epochs", "1", "--device", "cpu", "--report_freq", "1000"]
    train_201.main([*tiny_training, "--init_channels", "4", "--num_cells", "1", "--arch", str(root / "drnas0"),
                    "--output_dir", str(root / "eval201")])
    for name, arch in (("darts_eval", str(root / "darts_space")), ("darts_published", "DrNAS_cifar10")):
        darts_train.main([*tiny_training, "--init_channels", "8", "--layers", "3", "--auxiliary", "--arch", arch,
                          "--output_dir", str(root / name)])
    for name in ("real0", "eval201", "darts_eval", "darts_published"):
        folders[name] = root / name
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
    import reports.edge_heatmap as edge_heatmap

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


def hand_edited(runs, tmp_path, edit):
    """A copy of the drnas1 run whose results.json went through `edit(data)`."""
    data = results(runs["drnas1"])
    edit(data)
    (tmp_path / "edited").mkdir()
    (tmp_path / "edited" / "results.json").write_text(json.dumps(data))
    return tmp_path / "edited"


EDITS = {  # what was edited: (the edit, the field the line names)
    "string accuracy": (lambda d: d["epochs"][1].update(valid_acc="93.1%"), "epochs[1].valid_acc is a string"),
    "list for the arch record": (lambda d: d["epochs"][0].update(arch=["alpha"]), "epochs[0].arch is a list"),
    "string in a mean matrix": (lambda d: d["epochs"][0]["arch"]["cell"]["mean"][2].__setitem__(1, "0.2"),
                                "epochs[0].arch.cell.mean[2][1] is a string"),
    "a short row in alpha": (lambda d: d["epochs"][1]["arch"]["cell"]["alpha"][3].pop(),
                             "epochs[1].arch.cell.alpha[3] has 4 values, row 0 has 5"),
    "object for the seed": (lambda d: d["args"].update(seed={"value": 1}), "args.seed is an object"),
    "number for the op names": (lambda d: d.update(op_names=5), "op_names is an integer"),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_hand_edited_run_is_skipped_with_a_line_naming_file_and_field(runs, tmp_path, capsys, edit):
    change, named = EDITS[edit]
    edited = hand_edited(runs, tmp_path, change)
    text = aggregate.main([str(runs["drnas0"]), str(edited)])
    err = capsys.readouterr().err
    assert f"note: skipping a run: {edited / 'results.json'}: {named}" in err
    assert text == aggregate.main([str(runs["drnas0"])])  # the good run is reported as if alone
    written = plot_search.main([str(edited), str(runs["drnas0"]), "--out", str(tmp_path / "plots")])
    assert sorted(Path(path).name for path in written) == sorted(plot_search.FIGURES)
    assert f"{edited / 'results.json'}: {named}" in capsys.readouterr().err


def test_only_hand_edited_runs_is_one_line_and_exit_2(runs, tmp_path, capsys):
    edited = hand_edited(runs, tmp_path, EDITS["string accuracy"][0])
    for main in (aggregate.main, lambda argv: plot_search.main([*argv, "--out", str(tmp_path / "plots")])):
        with pytest.raises(SystemExit) as exit_info:
            main([str(edited)])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
        assert err.startswith("error: no run left to read: ") and "epochs[1].valid_acc is a string" in err


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


def test_darts_space_runs_are_not_counted_as_nas_bench_201(runs):
    darts_only = aggregate.main([str(runs["darts_space"])])
    assert "(e) DARTS-space searches" in darts_only and "NAS-Bench-201" not in darts_only
    text = aggregate.main([str(runs["darts_space"]), str(runs["drnas0"])])
    assert row_of(text, "DrNAS", "CIFAR-10")[3] == cell(final(runs, "drnas0"))  # the DARTS-space run left out
    assert text.index("## NAS-Bench-201 space") < text.index("(a)") < text.index("## DARTS space") < text.index("(e)")


def test_evaluation_runs_have_tables_of_their_own(runs):
    text = aggregate.main([str(runs[n]) for n in ("drnas0", "drnas1", "eval201")])
    # the search table counts the two searches only; the training of drnas0's cell is a row of table (d)
    assert row_of(text, "DrNAS", "CIFAR-10")[3] == cell(final(runs, "drnas0", "drnas1"))
    evaluation, search = results(runs["eval201"]), results(runs["drnas0"])
    row = row_of(text, "searched: drnas0 (DrNAS, seed 0)", "CIFAR-10")
    assert row[2] == "1" and row[3] == cell([100.0 - evaluation["final_test_acc"]])
    assert row[4] == f"{evaluation['params_m']:.2f} (n=1)"
    assert row[5] == f"{search['wall_time_s'] / 86400:.3f}"  # the search's own wall time, one process
    assert text.index("(a)") < text.index("(d) NAS-Bench-201 space: cells trained from scratch")


def test_darts_space_searches_and_trainings(runs):
    text = aggregate.main([str(runs[n]) for n in ("darts_space", "darts_eval", "darts_published")])
    search = results(runs["darts_space"])
    searches = row_of(text, "DrNAS", "darts", "CIFAR-10")
    assert searches[3] == "1" and searches[4] == cell([search["wall_time_s"] / 86400], 3)
    found = row_of(text, f"searched: darts_space (DrNAS, seed {search['args']['seed']})", "CIFAR-10")
    published = row_of(text, "published: DrNAS_cifar10", "CIFAR-10")
    for row, name in ((found, "darts_eval"), (published, "darts_published")):
        assert row[3] == cell([100.0 - results(runs[name])["final_test_acc"]])
        assert row[4] == f"{results(runs[name])['params_m']:.2f} (n=1)"
    assert published[5] == "—" and found[5] == f"{search['wall_time_s'] / 86400:.3f}"
    assert text.index("(e)") < text.index("(f) DARTS space: architectures trained from scratch")


def test_stand_in_accuracies_are_marked_as_made_up(runs):
    assert run_records.is_standin(results(runs["drnas0"])) and not run_records.is_standin(results(runs["real0"]))
    mixed = aggregate.main([str(runs["drnas0"]), str(runs["real0"])])
    assert "(a) NAS-Bench-201: accuracy of the searched cell — STAND-IN benchmark: made-up accuracies" in mixed
    assert row_of(mixed, "DrNAS (benchmark=stand-in)", "CIFAR-10")[3] == cell(final(runs, "drnas0"))
    assert row_of(mixed, "DrNAS (benchmark=file)", "CIFAR-10")[3] == cell(final(runs, "real0"))  # not pooled
    assert "STAND-IN" not in aggregate.main([str(runs["real0"])])
    standin = [run_records.load_run(runs["drnas0"])]
    assert "STAND-IN" in plot_search.exploration_title(standin)
    assert "STAND-IN" not in plot_search.exploration_title([run_records.load_run(runs["real0"])])


def test_a_row_label_names_a_few_differing_flags():
    assert short_label(["a", "b"], {"a": "1"}) == "a=1, b=-"
    assert short_label(list("abcdef"), dict.fromkeys("abcdef", "0")) == "a=0, b=0, c=0, +3 other flags"


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
