"""scripts/gpu_check.py on a machine without CUDA: one line and exit 0; --dry_run lists every
command of every check."""
import subprocess
import sys

import pytest
import torch

from script_checks import ROOT


def gpu_check(*argv):
    return subprocess.run([sys.executable, "scripts/gpu_check.py", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_without_cuda_it_says_so_in_one_line_and_exits_0(tmp_path):
    done = gpu_check(str(tmp_path / "report.md"))
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.strip().splitlines() == ["no CUDA GPU on this machine: nothing to check (run this on the GPU machine)"]
    assert not (tmp_path / "report.md").exists()


def test_dry_run_prints_every_command(tmp_path):
    done = gpu_check(str(tmp_path / "report.md"), "--dry_run")
    assert done.returncode == 0
    names = [line.split(":")[0] for line in done.stdout.strip().splitlines()]
    assert names == ["tests", "memory", "compare", "step", "darts", "plain search", "progressive search", "loader",
                     "torchrun"]
    assert "-m cuda" in done.stdout and "--memory_table --device cuda" in done.stdout
    assert "--nproc_per_node=" in done.stdout and "--loader_data" in done.stdout
    assert not (tmp_path / "report.md").exists()
