"""The paper's tables as data (scripts/reproduce/tables.py): each table's runs against the paper's protocol,
the GPU-hour estimates against the figures in docs/performance.md, tables of your own as JSON
files, and the SLURM path (scripts/reproduce/slurm_array.py) without SLURM: the generated scripts read,
then submitted through stand-ins for sbatch, srun and scontrol that run the array tasks here."""
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

import tables
from run_costs import DARTS_IMAGES_PER_S, NB201_IMAGES_PER_S, estimate
from tables import TableOptions
from script_checks import ROOT, expect_one_line_error, load_script

run_table = load_script("reproduce/run_table")
TINY_SEARCH = ["--dataset", "synthetic", "--data_limit", "64", "--batch_size", "32", "--init_channels", "4",
               "--num_cells", "1", "--device", "cpu", "--report_freq", "1000"]


def built(name, **options):
    return tables.TABLES[name](TableOptions(**options))


def flag(run, name):
    flags = list(run.flags)
    return flags[flags.index(name) + 1] if name in flags else None


# ----------------------------------------------------------------------------- the tables

@pytest.mark.parametrize("name, kinds", [
    ("nb201", {"search": 60}),                        # 5 methods x 3 datasets x 4 seeds
    ("partial_channels", {"search": 20}),             # k = 1, 2, 4, 8 and progressive x 4 seeds
    ("anchor_ablation", {"search": 28}),              # 7 values of lambda x 4 seeds
    ("darts_cifar10", {"search": 4, "evaluation": 8}),  # 4 searches; their cells and DrNAS_cifar10 trained
    ("imagenet", {"data": 1, "search": 1, "evaluation": 2}),
])
def test_each_dry_run_lists_the_papers_runs(name, kinds, tmp_path):
    text = run_table.main([name, "--dry_run", "--output_root", str(tmp_path)])
    listed = [line for line in text.splitlines() if re.match(r"^\s*\d+ \S+ \[", line)]
    assert Counter(run.kind for run in built(name).runs) == kinds
    assert len(listed) == sum(kinds.values()) and "ESTIMATE" in text
    assert all(f"--output_dir {tmp_path}/{name}/" in line or "sample_imagenet" in line for line in listed)
    assert not any(path.name != name for path in tmp_path.iterdir())  # a dry run writes nothing


def test_the_nas_bench_201_tables_cover_every_setting_once():
    nb201 = built("nb201")
    settings = Counter((flag(r, "--dataset"), flag(r, "--method")) for r in nb201.runs)
    assert set(settings.values()) == {4} and len(settings) == 15
    figures = [r for r in nb201.runs if "--hessian_freq" in r.flags]
    assert len(figures) == 8 and {flag(r, "--dataset") for r in figures} == {"cifar10"}
    assert all(flag(r, "--sample_archs") == "100" and flag(r, "--hessian_freq") == "5" for r in figures)
    partial = Counter(flag(r, "--k") or r.script for r in built("partial_channels").runs)
    assert partial == {"1": 4, "2": 4, "4": 4, "8": 4, "201-space/train_search_progressive.py": 4}
    anchor = Counter(flag(r, "--reg_scale") for r in built("anchor_ablation").runs)
    assert anchor == dict.fromkeys(tables.ANCHOR_SCALES, 4)
    assert all(flag(r, "--api_path") == "/b.pth" for r in built("nb201", api_path="/b.pth").runs)


def test_every_evaluation_trains_what_its_search_found():
    darts = built("darts_cifar10", seeds=(5, 6))
    searches = [r for r in darts.runs if r.kind == "search"]
    found = [r for r in darts.runs if r.inputs]
    published = [r for r in darts.runs if r.kind == "evaluation" and not r.inputs]
    assert [flag(r, "--seed") for r in searches] == ["5", "6"]
    assert [r.inputs for r in found] == [(("--arch", "search-seed5"),), (("--arch", "search-seed6"),)]
    assert all(flag(r, "--arch") == "DrNAS_cifar10" for r in published) and len(published) == 2
    assert all({"--cutout", "--auxiliary"} <= set(r.flags) and r.script == "DARTS-space/train.py"
               for r in found + published)
    imagenet = built("imagenet", imagenet="/data/imagenet")
    assert [r.name for r in imagenet.runs] == ["sample", "search-seed0", "train-search-seed0",
                                              "train-DrNAS_imagenet-seed0"]
    assert imagenet.run("sample").flags == ("/data/imagenet/train",)
    assert imagenet.run("search-seed0").inputs == (("--data", "sample"),)
    assert imagenet.run("train-search-seed0").inputs == (("--arch", "search-seed0"),)
    assert all(r.gpus == 8 for r in imagenet.runs[1:])


def test_estimates_rest_on_the_figures_in_docs_performance():
    doc = (ROOT / "docs" / "performance.md").read_text()
    for step_ms in ("234.0", "274.9", "249.9", "270.0", "235.8"):
        assert step_ms in doc  # the H200 rows the estimate divides by
    assert "| 19, 28 |" in doc
    assert NB201_IMAGES_PER_S[(1, 5)] == pytest.approx(64 / 0.234)
    assert DARTS_IMAGES_PER_S == {(6, 7): 19.0, (4, 4): 28.0}
    plain = estimate("201-space/train_search.py", ["--dataset", "cifar10"])
    assert plain.hours == pytest.approx(100 * 25_000 * 0.2340 / 64 / 3600)  # 100 epochs of 25,000 images
    progressive = estimate("201-space/train_search_progressive.py", ["--dataset", "cifar10"])
    assert progressive.hours == pytest.approx(50 * 25_000 * (0.2499 + 0.2358) / 64 / 3600)
    pcdarts = estimate("201-space/train_search.py", ["--method", "pcdarts"])  # its preset: k 4, 50 epochs
    assert pcdarts.hours == pytest.approx(50 * 25_000 * 0.2499 / 64 / 3600)
    darts = estimate("DARTS-space/train_search.py", ["--dataset", "cifar10"])
    assert darts.hours == pytest.approx(25 * 25_000 * (1 / 19 + 1 / 28) / 3600) and "upper bound" in darts.basis
    assert estimate("DARTS-space/train.py", ["--cutout"]).hours is None  # not measured: no number made up


def test_a_table_needs_its_benchmark_or_data(capsys, tmp_path):
    err = expect_one_line_error(capsys, run_table.main, ["nb201", "--output_root", str(tmp_path)])
    assert "--api_path" in err
    err = expect_one_line_error(capsys, run_table.main, ["imagenet", "--output_root", str(tmp_path)])
    assert "--imagenet" in err
    assert "nb201" in expect_one_line_error(capsys, run_table.main, ["nosuch", "--dry_run"])


def write_table(path, runs, name="tiny"):
    path.write_text(json.dumps({"name": name, "runs": runs}))
    return path


@pytest.mark.parametrize("case, says", [
    ("script", "'script' must be one of"),
    ("later_input", "'inputs' must be"),
    ("same_name", "'name' must be a new folder name"),
    ("path_name", "'name' must be a new folder name"),
    ("unknown", "unknown entries"),
    ("flags", "invalid choice"),
])
def test_a_bad_table_file_is_one_line(case, says, capsys, tmp_path):
    search = {"name": "a", "script": "201-space/train_search.py", "flags": TINY_SEARCH}
    runs = {"script": [dict(search, script="../../bin/sh")],
            "later_input": [dict(search, inputs=[["--arch", "b"]]), dict(search, name="b")],
            "same_name": [search, search],
            "path_name": [dict(search, name="../a")],
            "unknown": [dict(search, command="rm -rf /")],
            "flags": [dict(search, flags=["--method", "nosuch"])]}[case]
    err = expect_one_line_error(capsys, run_table.main, [str(write_table(tmp_path / "t.json", runs)), "--dry_run"])
    assert says in err


# ----------------------------------------------------------------------------- SLURM, without SLURM

def test_the_slurm_scripts_of_a_table(tmp_path):
    out = tmp_path / "slurm"
    written = run_table.main(["darts_cifar10", "--slurm", str(out), "--output_root", str(tmp_path / "runs"),
                              "--slurm_max_parallel", "2"])
    assert [path.name for path in written] == ["darts_cifar10-wave0-1gpu.sbatch", "darts_cifar10-wave1-1gpu.sbatch",
                                               "submit.sh"]
    first, second, submit = (path.read_text() for path in written)
    assert "#SBATCH --array=0,1,2,3,8,9,10,11%2" in first  # the searches and DrNAS_cifar10's trainings
    assert "#SBATCH --array=4,5,6,7%2" in second  # the trainings of the cells found
    for script in (first, second):
        assert "#SBATCH --gres=gpu:1" in script and "#SBATCH --signal=USR1@120" in script
        assert "#SBATCH --requeue" in script and 'scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"' in script
        assert f"run_table.py darts_cifar10 --output_root {tmp_path / 'runs'} --task \"$SLURM_ARRAY_TASK_ID\"" in script
    assert "sbatch --parsable darts_cifar10-wave0-1gpu.sbatch" in submit
    assert "sbatch --parsable --dependency=afterok:${job0} darts_cifar10-wave1-1gpu.sbatch" in submit
    for path in written:
        assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0


FAKE_SBATCH = """#!/bin/bash
echo "sbatch $*" >> "$FAKE_SLURM_LOG"
file="${@: -1}"
id=$(wc -l < "$FAKE_SLURM_LOG")
for task in $(sed -n 's/^#SBATCH --array=\\([^%]*\\).*/\\1/p' "$file" | tr ',' ' '); do
  SLURM_ARRAY_JOB_ID=$id SLURM_ARRAY_TASK_ID=$task FAKE_SLURM_SCRIPT="$PWD/$file" bash "$file" \\
    >> "$FAKE_SLURM_LOG.out" 2>&1 || echo "task $task failed" >> "$FAKE_SLURM_LOG"
done
echo "$id;cluster"
"""
FAKE_SCONTROL = """#!/bin/bash
echo "scontrol $*" >> "$FAKE_SLURM_LOG"
SLURM_ARRAY_JOB_ID="${2%_*}" SLURM_ARRAY_TASK_ID="${2#*_}" bash "$FAKE_SLURM_SCRIPT"
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_a_table_through_stand_ins_for_sbatch_srun_and_scontrol(tmp_path):
    """Each array task runs here as SLURM would start it; the search stops after its first epoch
    (exit 3), requeues itself and finishes; its evaluation's array waits for it (afterok)."""
    table = write_table(tmp_path / "tiny.json", [
        {"name": "a", "script": "201-space/train_search.py",
         "flags": [*TINY_SEARCH, "--epochs", "2", "--stop_after_epoch", "1"]},
        {"name": "e", "kind": "evaluation", "script": "201-space/train.py", "inputs": [["--arch", "a"]],
         "flags": [*TINY_SEARCH, "--epochs", "1"]}])
    fake = tmp_path / "bin"
    fake.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("scontrol", FAKE_SCONTROL), ("srun", '#!/bin/bash\nexec "$@"\n')):
        (fake / name).write_text(text)
        (fake / name).chmod(0o755)
    written = run_table.main([str(table), "--slurm", str(tmp_path / "slurm"), "--output_root", str(tmp_path / "runs")])
    log = tmp_path / "slurm.log"
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "FAKE_SLURM_LOG": str(log),
           "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(written[-1])], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "sbatch --parsable tiny-wave0-1gpu.sbatch"
    assert calls[1] == "scontrol requeue 1_0"  # stopped after epoch 1, checkpointed: requeued
    assert calls[2] == "sbatch --parsable --dependency=afterok:1 tiny-wave1-1gpu.sbatch"
    assert len(calls) == 3, calls  # no task failed
    search = json.loads((tmp_path / "runs" / "tiny" / "a" / "results.json").read_text())
    assert search["finished"] is True and [e["epoch"] for e in search["epochs"]] == [1, 2]
    evaluation = json.loads((tmp_path / "runs" / "tiny" / "e" / "results.json").read_text())
    assert evaluation["finished"] is True and evaluation["genotype"] == search["genotype"]
