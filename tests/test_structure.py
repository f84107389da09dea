"""The shape of the code: small modules and functions, a training path free of the search, the
authors' import idiom from the space folders, and a repository that stands on its own."""
import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = [ROOT / "common", ROOT / "201-space", ROOT / "DARTS-space", ROOT / "scripts"]


def python_files(folders):
    return sorted(path for folder in folders for path in folder.rglob("*.py"))


def test_no_module_or_script_is_over_300_lines():
    long = {str(path.relative_to(ROOT)): n for path in python_files([ROOT / "common", ROOT / "scripts"])
            if (n := len(path.read_text().splitlines())) > 300}
    assert not long, long


def test_no_function_is_over_60_lines():
    long = []
    for path in python_files(CODE):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.relative_to(ROOT)}:{node.name} ({lines} lines)")
    assert not long, long


def run_python(code, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("script", ["darts_space.train", "darts_space.train_imagenet", "space201.train"])
def test_the_training_path_imports_no_search_module(script):
    loaded = json.loads(run_python(f"import json, sys, {script}; print(json.dumps(sorted(sys.modules)))"))
    assert "common.run.train" in loaded and "common.run.driver" in loaded
    # the search's package; its fused.py holds the ops' fast paths, shared with the evaluation networks
    search = [name for name in loaded if name.startswith("common.nas.") and name != "common.nas.fused"]
    assert not search, search


def test_the_authors_import_idiom_works_from_the_darts_space_folder():
    out = run_python(
        "import genotypes, model\n"
        "import darts_space.genotypes, darts_space.model\n"
        "assert genotypes is darts_space.genotypes and model is darts_space.model\n"
        "net = model.NetworkCIFAR(36, 10, 20, True, genotypes.DrNAS_cifar10)\n"
        "print(round(model.count_parameters(net), 4))", cwd=ROOT / "DARTS-space")
    assert out.strip() == "4.0993"
    # the other order: the network module first, the genotypes after it
    run_python("import model, genotypes, operations, darts_space\n"
               "assert genotypes is darts_space.genotypes and operations is darts_space.operations\n"
               "model.NetworkImageNet(48, 1000, 14, True, genotypes.DrNAS_imagenet)", cwd=ROOT / "DARTS-space")


def test_the_authors_import_idiom_works_from_the_201_space_folder():
    out = run_python("import model_search, space201.model_search as package\n"
                     "assert model_search is package\n"
                     "print(model_search.Network(16, 5).genotype().count('~'))", cwd=ROOT / "201-space")
    assert out.strip() == "6"


ISSUE_NUMBER = re.compile(r"\b[Ii]ssue #?\d+")  # the project's tracker is not part of the repository


def test_the_repository_cites_no_document_outside_it():
    needles = ("SPEC.md", "SPEC section", "DEVELOPERS.md", "../shared/SPEC")
    found = []
    for path in ROOT.rglob("*"):
        if ".git" in path.parts or ".venv" in path.parts or not path.is_file() or path.suffix not in (
                ".py", ".md", ".txt", ".toml", ".sh", ".cfg", ".cff"):
            continue
        text = path.read_text(errors="ignore")
        if path.name == "test_structure.py":
            continue
        found += [f"{path.relative_to(ROOT)}: {n}" for n in needles if n in text]
        found += [f"{path.relative_to(ROOT)}: {m.group()}" for m in ISSUE_NUMBER.finditer(text)]
    assert not found, found
