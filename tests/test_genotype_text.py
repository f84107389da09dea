"""Genotypes that move between tools: `Genotype(...)` text as the authors' logs print it taken
by --arch (as data, never run), any genotype defined in genotypes.py found by name, the
pastable form in logs and results.json, one function for the genotype of any run, and
--count_params."""
import pytest

from common.errors import UserError
from common.run.genotype_source import load_genotype, run_genotype
from darts_space import genotypes
from darts_space import train as darts_train
from darts_space import train_search as darts_search
from darts_space.genotype_text import genotype_from_text, genotype_text, named_genotypes
from darts_space.genotypes import Genotype, genotype_from_json
from darts_space.model import resolve_genotype
from script_checks import expect_one_line_error, results
from space201 import train as train201
from space201 import train_search as search201
from space201.model import BEST_CELL, resolve_cell

# DARTS_V2 as the DARTS and DrNAS logs print it: positional-free keywords, concat as range(2, 6)
AUTHORS_TEXT = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
                "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
                "normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
                "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
                "('max_pool_3x3', 1)], reduce_concat=range(2, 6))")
TINY_TRAIN = ["--dataset", "synthetic", "--init_channels", "4", "--layers", "3", "--data_limit", "32",
              "--batch_size", "16", "--epochs", "1", "--device", "cpu"]


@pytest.mark.parametrize("name", sorted(named_genotypes()))
def test_every_genotype_goes_to_text_and_back(name):
    genotype = named_genotypes()[name]
    text = genotype_text(genotype)
    assert text.startswith("Genotype(normal=[('")
    assert genotype_from_text(text) == genotype == resolve_genotype(text)


def test_the_authors_printed_form_is_taken():
    assert resolve_genotype(AUTHORS_TEXT) == genotypes.DARTS_V2
    positional = "Genotype(" + AUTHORS_TEXT[len("Genotype(normal="):].replace("normal_concat=", "").replace(
        "reduce=", "").replace("reduce_concat=", "")
    assert genotype_from_text(positional) == genotypes.DARTS_V2


@pytest.mark.parametrize("text, words", [
    ("Genotype(normal=__import__('os').system('touch PWNED'))", "normal is not a literal"),
    ("Genotype(normal=[('sep_conv_3x3', 0)] * 8, normal_concat=[2], reduce=[], reduce_concat=[2])", "not a literal"),
    ("Genotype(normal=[('conv_9x9', 0), ('sep_conv_3x3', 1)], normal_concat=[2], reduce=[('sep_conv_3x3', 0), "
     "('sep_conv_3x3', 1)], reduce_concat=[2])", "unknown op 'conv_9x9'"),
    ("Genotype(normal=[('sep_conv_3x3', 5), ('sep_conv_3x3', 1)], normal_concat=[2], reduce=[('sep_conv_3x3', 0), "
     "('sep_conv_3x3', 1)], reduce_concat=[2])", "node 2 cannot take input 5"),
    ("Genotype(normal=[], colour='red')", "fields"),
    ("Genotype(normal=[(", "not Python text"),
])
def test_text_that_is_not_a_genotype_is_one_line_and_nothing_runs(tmp_path, monkeypatch, capsys, text, words):
    monkeypatch.chdir(tmp_path)
    err = expect_one_line_error(capsys, darts_train.main, [*TINY_TRAIN, "--arch", text, "--output_dir", "run"])
    assert words in err
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "run").exists()


def test_a_genotype_added_to_genotypes_py_is_found_by_name(monkeypatch, capsys):
    mine = genotype_from_text(AUTHORS_TEXT.replace("dil_conv_3x3", "sep_conv_5x5"))
    monkeypatch.setattr(genotypes, "MY_CELL", mine, raising=False)  # as a line added to genotypes.py
    assert resolve_genotype("MY_CELL") == mine
    counts = darts_train.main(["--arch", "MY_CELL", "--count_params"])
    assert capsys.readouterr().out.startswith(f"param size {counts['params_m']:.6f} M")


def test_count_params_prints_the_size_without_data_or_a_run(tmp_path, capsys):
    out = tmp_path / "never"
    counts = darts_train.main(["--arch", "DrNAS_cifar10", "--count_params", "--output_dir", str(out),
                               "--data", str(tmp_path / "no_data")])
    assert counts["params_m"] == pytest.approx(4.0993, abs=5e-5)  # the paper's 4.1 M (auxiliary head excluded)
    assert counts["params_with_auxiliary_m"] == counts["params_m"]  # --auxiliary not given
    assert "param size 4.099" in capsys.readouterr().out and not out.exists()
    cifar100 = darts_train.main(["--arch", "DrNAS_cifar10", "--count_params", "--auxiliary", "--dataset", "cifar100"])
    assert cifar100["num_classes"] == 100 and cifar100["params_with_auxiliary_m"] > cifar100["params_m"]
    nb201 = train201.main(["--count_params"])
    assert nb201["num_classes"] == 10 and 0.5 < nb201["params_m"] < 1.5
    err = expect_one_line_error(capsys, darts_train.main, ["--epochs", "0"])
    assert "--count_params" in err


def test_the_authors_201_structure_form_is_taken():
    assert resolve_cell(f"Structure(4 nodes with {BEST_CELL})") == BEST_CELL


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("genotype_runs")
    search201.main(["--dataset", "synthetic", "--data_limit", "128", "--batch_size", "32", "--init_channels", "4",
                    "--num_cells", "1", "--epochs", "1", "--device", "cpu", "--output_dir", str(root / "201")])
    darts_search.main(["--dataset", "synthetic", "--data_limit", "32", "--batch_size", "16", "--init_channels", "8",
                       "--layers", "3", "--ks", "2", "--num_keeps", "7", "--train_epochs", "1", "--arch_start_epoch",
                       "0", "--device", "cpu", "--output_dir", str(root / "darts")])
    darts_train.main([*TINY_TRAIN, "--arch", str(root / "darts"), "--output_dir", str(root / "train")])
    return root


def test_the_darts_search_logs_and_records_the_pastable_form(runs):
    data, log = results(runs / "darts"), (runs / "darts" / "log.txt").read_text()
    found = genotype_from_json(data["genotype"])
    assert genotype_from_text(data["genotype_text"]) == found
    assert f"genotype {data['genotype_text']}" in log
    assert f"found architecture: {data['genotype_text']}" in log
    trained = results(runs / "train")
    assert trained["genotype_text"] == data["genotype_text"] and f"genotype {data['genotype_text']}" in (
        runs / "train" / "log.txt").read_text()


def test_one_function_gives_the_genotype_of_any_run_in_its_space_type(runs):
    assert load_genotype(runs / "201") == results(runs / "201")["genotype"] and "~" in load_genotype(runs / "201")
    found = load_genotype(runs / "darts" / "results.json")
    assert isinstance(found, Genotype) and found == genotype_from_json(results(runs / "darts")["genotype"])
    assert run_genotype(runs / "train") == ("darts", found)  # a training's folder too
    with pytest.raises(UserError, match="does not exist"):
        load_genotype(runs / "nothing")
