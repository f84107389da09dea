"""scripts/reproduce/run_table.py on one box (scripts/reproduce/table_runner.py, scripts/reproduce/table_schedule.py): a
tiny table of two searches and one evaluation, on the synthetic data, two runs at once on the
CPU; the runner stopped in the middle of the table and started again."""
import json
import os
import signal
import subprocess
import sys

from table_runner import Slots, run_state
from tables import Run
from script_checks import ROOT, load_script

aggregate = load_script("aggregate")
TINY = ["--dataset", "synthetic", "--data_limit", "64", "--batch_size", "32", "--init_channels", "4",
        "--num_cells", "1", "--device", "cpu", "--report_freq", "1000"]
TABLE = {"name": "tiny", "runs": [
    {"name": "a", "script": "201-space/train_search.py", "flags": [*TINY, "--epochs", "1", "--seed", "0"]},
    # b is long enough to be in its middle when a's evaluation starts
    {"name": "b", "script": "201-space/train_search.py", "flags": [*TINY, "--epochs", "12", "--seed", "1"]},
    {"name": "e", "kind": "evaluation", "script": "201-space/train.py", "inputs": [["--arch", "a"]],
     "flags": [*TINY, "--epochs", "2"]}]}


def runner(table, root):
    command = [sys.executable, str(ROOT / "scripts" / "reproduce" / "run_table.py"), str(table), "--per_gpu", "2",
               "--output_root", str(root)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def results(folder):
    return json.loads((folder / "results.json").read_text())


def test_a_runner_stopped_mid_table_goes_on_where_it_stopped(tmp_path):
    table = tmp_path / "tiny.json"
    table.write_text(json.dumps(TABLE))
    first = runner(table, tmp_path / "runs")
    said = []
    for line in first.stdout:  # stopped as soon as the evaluation has started: b is mid-run
        said.append(line)
        if " started e " in line:
            first.send_signal(signal.SIGTERM)
    assert first.wait() == 128 + signal.SIGTERM, "".join(said)
    text = "".join(said)
    assert "started a (new)" in text and "started b (new)" in text and "finished a" in text
    assert "received SIGTERM" in text and "stopped b" in text and "stopped e" in text and "finished b" not in text
    folder = tmp_path / "runs" / "tiny"
    assert results(folder / "b")["finished"] is False and (folder / "b" / "checkpoint.pt").is_file()

    second = runner(table, tmp_path / "runs")
    text = second.communicate()[0]
    assert second.returncode == 0, text
    assert "done before, skipped: a" in text and "started a" not in text
    assert "started b (resumed from its checkpoint)" in text
    assert "finished b" in text and "finished e" in text and "3 of 3 runs done (1 of them before)" in text
    b = results(folder / "b")
    assert b["finished"] is True and [e["epoch"] for e in b["epochs"]] == list(range(1, 13))
    assert "resumed from" in (folder / "b" / "log.txt").read_text()
    e = results(folder / "e")
    assert e["finished"] is True and e["genotype"] == results(folder / "a")["genotype"]
    assert len(e["epochs"]) == 2

    report = (folder / "table.md").read_text()  # written by the runner once all runs are done
    assert report == aggregate.main([str(folder), "--recursive"])
    assert report.count("### ") == 2  # one search table, one evaluation table
    assert "### (a) NAS-Bench-201" in report and "| searched: a (DrNAS, seed 0) | synthetic | 1 |" in report
    assert "left out:" not in text and "FAILED" not in text


def test_a_run_that_outlives_a_killed_runner_is_waited_for(tmp_path):
    table = tmp_path / "b.json"
    table.write_text(json.dumps({"name": "b", "runs": [TABLE["runs"][1]]}))
    first = runner(table, tmp_path / "runs")
    for line in first.stdout:
        if " started b " in line:
            first.kill()  # SIGKILL: the run goes on, holding its claim
            break
    first.wait()
    second = runner(table, tmp_path / "runs")
    text = second.communicate()[0]
    assert second.returncode == 0, text
    assert "b is being run by another process: waiting for it" in text and "done before, skipped: b" in text
    assert results(tmp_path / "runs" / "b" / "b")["finished"] is True


def test_a_third_start_skips_everything(tmp_path):
    table = tmp_path / "one.json"
    table.write_text(json.dumps({"name": "one", "runs": [TABLE["runs"][0]]}))
    assert runner(table, tmp_path / "runs").wait() == 0
    again = runner(table, tmp_path / "runs")
    text = again.communicate()[0]
    assert again.returncode == 0 and "done before, skipped: a" in text and "started" not in text


def test_a_run_whose_search_failed_is_left_out(tmp_path):
    table = tmp_path / "bad.json"
    broken = dict(TABLE["runs"][0], flags=[*TINY, "--epochs", "1", "--data", str(tmp_path / "nowhere"),
                                          "--dataset", "cifar10"])
    table.write_text(json.dumps({"name": "bad", "runs": [broken, TABLE["runs"][2]]}))
    process = runner(table, tmp_path / "runs")
    text = process.communicate()[0]
    assert process.returncode == 1
    assert "FAILED a (exit 2): error:" in text and "left out: e (needs a, which did not finish)" in text


def test_places_on_gpus_and_on_the_cpu():
    gpus = Slots(["0", "1"], per_gpu=2)
    assert [gpus.take(1) for _ in range(4)] == [["0"], ["1"], ["0"], ["1"]] and gpus.take(1) is None
    gpus.give_back(["0"])
    assert gpus.take(2) is None  # a 2-GPU run needs two idle GPUs
    gpus.give_back(["1"]), gpus.give_back(["1"]), gpus.give_back(["0"])
    assert gpus.take(8) == ["0", "1"] and gpus.take(1) is None  # all the box has, the whole of each
    cpu = Slots([], per_gpu=1)
    assert cpu.take(8) == [None] and cpu.take(1) is None


def test_the_state_of_a_run_folder(tmp_path):
    run = Run("a", "201-space/train_search.py")
    assert run_state(run, tmp_path / "a") == "new"
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "log.txt").write_text("killed before its first checkpoint")
    assert run_state(run, tmp_path / "a") == "new"  # nothing to lose: a new start may go there
    (tmp_path / "a" / "results.json").write_text(json.dumps({"epochs": [{}], "finished": False}))
    assert run_state(run, tmp_path / "a") == "fresh"  # an epoch recorded without its checkpoint
    (tmp_path / "a" / "checkpoint.pt").write_bytes(b"")
    assert run_state(run, tmp_path / "a") == "resume"
    (tmp_path / "a" / "results.json").write_text(json.dumps({"finished": True}))
    assert run_state(run, tmp_path / "a") == "done"
    sample = Run("s", "scripts/sample_imagenet.py", kind="data", done_file="manifest.json", fresh_flag="--force")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "train").mkdir()
    assert run_state(sample, tmp_path / "s") == "fresh"
    (tmp_path / "s" / "manifest.json").write_text("{}")
    assert run_state(sample, tmp_path / "s") == "done"
