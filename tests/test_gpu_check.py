"""scripts/qa/gpu_check.py on a machine without CUDA: one line and exit 0; --dry_run lists the
checks in order with their budgets, from a Python that has this project on PYTHONPATH only;
the runner kills a check's programs whole when its time is up, and a runner killed from
outside leaves every row it wrote."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from script_checks import ROOT, load_script


def gpu_check(*argv, env=None, python=(sys.executable,)):
    return subprocess.run([*python, str(ROOT / "scripts" / "qa" / "gpu_check.py"), *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=env)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_without_cuda_it_says_so_in_one_line_and_exits_0(tmp_path):
    done = gpu_check(str(tmp_path / "report.md"))
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.strip().splitlines() == ["no CUDA GPU on this machine: nothing to check (run this on the GPU machine)"]
    assert not (tmp_path / "report.md").exists()


def test_dry_run_lists_the_checks_in_order_from_a_python_without_the_project(tmp_path):
    """`python -S` with PYTHONPATH holding only the installed packages: no editable install of
    this project is seen, as on a bare GPU machine."""
    import site

    packages = os.pathsep.join(site.getsitepackages())
    env = {**os.environ, "PYTHONPATH": packages}
    done = gpu_check(str(tmp_path / "report.md"), "--dry_run", env=env, python=(sys.executable, "-S"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    checks = load_script("gpu_check").CHECKS
    assert [line.split(".", 1)[1].split("(")[0].strip() for line in lines[:len(checks)]] == [c.name for c in checks]
    assert [c.name for c in checks][:3] == ["env", "steps", "graph"]  # the most valuable first
    assert all(f"({c.budget_s} s)" in line for c, line in zip(checks, lines))
    assert lines[-1] == "imports from this checkout without an install: ok"
    assert not (tmp_path / "report.md").exists()


RUNNER = """
import sys
sys.path[:0] = [{root!r}, {root!r} + "/scripts", {root!r} + "/scripts/qa"]
import gpu_check, gpu_checks
from pathlib import Path

def first(ctx):
    yield gpu_checks.header("check", "value")
    yield "| first | 1 |"

def second(ctx):
    yield "| second | started |"
    # a program that starts a grandchild and both sleep: killed whole when time is up
    ctx.run([sys.executable, "-c", "import subprocess, sys, time; "
             "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
             "open({pids!r}, 'w').write(str(p.pid)); time.sleep(60)"])
    yield "| second | never |"

def third(ctx):
    yield "| third | 3 |"

gpu_check.CHECKS[:] = [gpu_checks.Check("first", 30, "First", first), gpu_checks.Check("second", {budget}, "Second", second),
                       gpu_checks.Check("third", 30, "Third", third)]
context = gpu_check.Context(Path({work!r}), gpu_check.child_env(), None, 0)
gpu_check.stop_on_signal(context)
print(gpu_check.run_checks(context, gpu_check.Report({report!r}), 600))
"""


def start_runner(tmp_path, budget):
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(root=str(ROOT), pids=str(tmp_path / "grandchild"), budget=budget,
                                    work=str(tmp_path), report=str(tmp_path / "report.md")))
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def gone(pid, wait_s=10):
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def wait_for(path, text, wait_s=60):
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        if path.exists() and text in path.read_text():
            return True
        time.sleep(0.1)
    return False


def test_a_check_out_of_time_is_killed_whole_and_the_next_one_runs(tmp_path):
    runner = start_runner(tmp_path, budget=3)
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 0, err
    assert out.strip() == "{'first': True, 'second': False, 'third': True}"
    report = (tmp_path / "report.md").read_text()
    assert "| first | 1 |\n| second | started |" not in report  # a new check starts a new table
    assert "_second: stopped: its time budget ran out" in report and "| third | 3 |" in report
    assert "never" not in report
    assert gone(int((tmp_path / "grandchild").read_text()))  # the grandchild went with its parent


def test_a_runner_killed_from_outside_keeps_its_rows_and_takes_its_programs_along(tmp_path):
    runner = start_runner(tmp_path, budget=60)
    assert wait_for(tmp_path / "grandchild", "")  # the second check's programs are running
    runner.send_signal(signal.SIGTERM)
    runner.communicate(timeout=30)
    report = (tmp_path / "report.md").read_text()
    assert "| check | value |\n| --- | --- |\n| first | 1 |\n" in report and "_first: done in" in report
    assert "| second | started |" in report
    assert gone(int((tmp_path / "grandchild").read_text()))
    killed = start_runner(tmp_path / "hard" if (tmp_path / "hard").mkdir() is None else None, budget=60)
    assert wait_for(tmp_path / "hard" / "grandchild", "")
    killed.kill()  # SIGKILL: nothing can be cleaned up, but the rows are on disk already
    killed.communicate(timeout=30)
    assert "| first | 1 |" in (tmp_path / "hard" / "report.md").read_text()


def test_a_probe_section_prints_its_table_row_by_row_on_a_cpu():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "qa" / "gpu_probe.py"), "deterministic", "--device", "cpu",
                           "--tiny"], capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["| setting | alpha after 10 steps, two runs |", "| --- | --- |",
                                        "| --deterministic | identical |", "| default (cuDNN autotuning) | identical |"]
