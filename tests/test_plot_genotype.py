"""scripts/plot_genotype.py: a found cell drawn as a graph, to PNG and PDF, from a genotype's
name, Genotype(...) text, a NAS-Bench-201 cell or a run folder; the DOT text graphviz would
lay out; one-line errors."""
import json

import reports.cell_diagram as cell_diagram
from darts_space import genotypes
from darts_space.genotype_text import genotype_text
from darts_space.genotypes import genotype_to_json
from script_checks import expect_one_line_error, load_script
from space201.model import BEST_CELL

plot_genotype = load_script("plot_genotype")
PNG_MAGIC, PDF_MAGIC = b"\x89PNG\r\n\x1a\n", b"%PDF"


def check_files(written, stem):
    assert [p.name for p in written] == [f"{stem}.png", f"{stem}.pdf"]
    assert written[0].read_bytes()[:8] == PNG_MAGIC and written[1].read_bytes()[:4] == PDF_MAGIC
    import matplotlib.image

    image = matplotlib.image.imread(written[0])
    assert image.shape[0] > 300 and image.shape[1] > 600


def test_a_published_genotype_by_name(tmp_path):
    written = plot_genotype.main(["DrNAS_cifar10", "--out", str(tmp_path), "--engine", "matplotlib"])
    check_files(written, "DrNAS_cifar10")


def test_genotype_text_and_a_run_folder(tmp_path):
    written = plot_genotype.main([genotype_text(genotypes.PC_DARTS_cifar), "--out", str(tmp_path), "--name", "pc",
                                  "--engine", "matplotlib"])
    check_files(written, "pc")
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"args": {}, "space": "201", "genotype": BEST_CELL, "finished": True}))
    check_files(plot_genotype.main([str(run), "--engine", "matplotlib"]), "cell")  # into the run's folder
    assert (run / "cell.png").is_file()


def test_the_graphs_hold_every_kept_edge():
    normal, reduce = cell_diagram.darts_cells(genotypes.DrNAS_cifar10)
    assert [(s, t, op) for s, t, op in normal.edges if op][:2] == [("c_{k-2}", "0", "sep_conv_3x3"),
                                                                  ("c_{k-1}", "0", "sep_conv_5x5")]
    assert sum(1 for *_, op in normal.edges if op) == 8 and sum(1 for *_, op in normal.edges if not op) == 4
    assert reduce.title == "reduction cell"
    (cell,) = cell_diagram.nb201_cell("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|none~2|")
    assert cell.edges == (("0", "1", "nor_conv_3x3"), ("1", "2", "skip_connect"), ("0", "3", "avg_pool_3x3"))
    dot = cell_diagram.dot_source([cell])
    assert dot.startswith("digraph") and '"0:0" -> "0:1" [label="nor_conv_3x3"' in dot and "none" not in dot


def test_bad_input_is_one_line(tmp_path, capsys, monkeypatch):
    assert "neither a run folder" in expect_one_line_error(capsys, plot_genotype.main, ["NoSuchCell"])
    assert "not a NAS-Bench-201 cell" in expect_one_line_error(capsys, plot_genotype.main, ["|conv~0|"])
    assert "not a literal" in expect_one_line_error(capsys, plot_genotype.main, ["Genotype(normal=open('x'))"])
    monkeypatch.setattr(cell_diagram.shutil, "which", lambda name: None)  # no graphviz here
    assert "--engine graphviz" in expect_one_line_error(
        capsys, plot_genotype.main, ["DARTS_V2", "--engine", "graphviz", "--out", str(tmp_path)])
    (tmp_path / "results.json").write_text(json.dumps({"args": {}, "genotype": BEST_CELL}))  # no space recorded
    assert "names no known search space" in expect_one_line_error(capsys, plot_genotype.main, [str(tmp_path)])


def test_auto_falls_back_to_matplotlib_without_graphviz_and_draws_unfinished_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(cell_diagram.shutil, "which", lambda name: None)
    check_files(plot_genotype.main(["DARTS_V1", "--out", str(tmp_path), "--engine", "auto"]), "DARTS_V1")
    run = tmp_path / "unfinished"  # a search still running: its genotype so far
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"args": {}, "space": "darts", "finished": False,
                                                  "genotype": genotype_to_json(genotypes.DARTS_V2)}))
    check_files(plot_genotype.main([str(run)]), "cell")
