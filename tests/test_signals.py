"""Preemption: SIGTERM, SIGUSR1 and SIGINT stop a run at a step boundary with a mid-epoch
checkpoint and exit 128 + the signal; `--resume DIR` alone then ends bit-identical to an
uninterrupted run, in one process and under torchrun. The signal is sent when the run has
printed a progress line of its second epoch (read from its stdout: no sleeping, no timing)."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from script_checks import ROOT, free_port, results

# 16 steps an epoch: the signal, sent at the first step of the second epoch, lands within it
ARGS = ["201-space/train_search.py", "--dataset", "synthetic", "--data_limit", "256", "--batch_size", "8",
        "--init_channels", "4", "--num_cells", "1", "--device", "cpu", "--report_freq", "1", "--epochs", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def python(*extra):
    return [sys.executable, *ARGS, *extra]


def torchrun(*extra):
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe), "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}", *ARGS, *extra]


def run(command):
    done = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def interrupt(command, signals, targets=lambda proc: [proc.pid], when="epoch 2 step 1/"):
    """Start `command`, send each of `signals` to `targets(proc)` once its stdout shows `when`;
    returns (exit status, stdout, stderr)."""
    proc = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if when in line:
            for signum in signals:
                for pid in targets(proc):
                    os.kill(pid, signum)
            break
    out, err = proc.communicate(timeout=300)
    return proc.returncode, "".join(seen) + out, err


def same_search(a, b):
    ra, rb = results(a), results(b)
    assert [e["train_loss"] for e in ra["epochs"]] == [e["train_loss"] for e in rb["epochs"]]
    assert [e["arch"] for e in ra["epochs"]] == [e["arch"] for e in rb["epochs"]]
    assert rb["finished"] is True and "stopped" not in rb


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    run(python("--output_dir", str(out)))
    return out


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT])
def test_a_signal_stops_at_a_step_and_resume_alone_ends_bit_identical(whole, tmp_path, signum):
    out = tmp_path / "parts"
    status, stdout, stderr = interrupt(python("--output_dir", str(out)), [signum])
    assert status == 128 + signum
    assert "Traceback" not in stderr and f"received {signal.Signals(signum).name}" in stderr
    assert f"continue with --resume {out}" in stdout
    stopped = results(out)
    assert stopped["finished"] is False and stopped["stopped"]["signal"] == signal.Signals(signum).name
    assert stopped["stopped"]["epoch"] == 2 and 1 <= stopped["stopped"]["steps_done"] < 16  # mid-epoch
    run([sys.executable, "201-space/train_search.py", "--resume", str(out)])  # no other flag
    same_search(whole, out)


def test_a_second_ctrl_c_exits_at_once_without_a_traceback(tmp_path):
    status, _, stderr = interrupt(python("--output_dir", str(tmp_path / "run")), [signal.SIGINT, signal.SIGINT])
    assert status == 130
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr


def test_under_torchrun_every_rank_stops_at_the_same_step(tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run(torchrun("--output_dir", str(whole)))

    def workers(proc):
        found = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        return [int(pid) for pid in found]

    status, stdout, _ = interrupt(torchrun("--output_dir", str(parts)), [signal.SIGTERM], targets=workers)
    assert status != 0 and "stopped by SIGTERM in epoch 2" in stdout
    run(torchrun("--resume", str(parts)))
    same_search(whole, parts)
    assert results(whole)["epochs"][-1]["arch_digests"] == results(parts)["epochs"][-1]["arch_digests"]


def test_a_resumed_search_with_diagnostics_and_a_benchmark_equals_an_uninterrupted_one(tmp_path):
    """Exploration, sharpness and benchmark queries on: the sharpness batches are read apart from
    the evaluation loader's passes, so the resumed epoch validates on the whole architecture half,
    and results.json ends equal to an uninterrupted run's."""
    from itertools import product

    from nb201_fixture import write_tiny_benchmark
    from space201.model_search import OPS, genotype_string

    bench = tmp_path / "bench.pth"
    write_tiny_benchmark(bench, archs=[genotype_string(ops) for ops in product(range(len(OPS)), repeat=6)][::311])
    diagnostics = ["--sample_archs", "4", "--hessian_freq", "1", "--hessian_batches", "2", "--api_path", str(bench)]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run(python(*diagnostics, "--output_dir", str(whole)))
    status, _, _ = interrupt(python(*diagnostics, "--output_dir", str(parts)), [signal.SIGTERM])
    assert status == 128 + signal.SIGTERM and results(parts)["stopped"]["epoch"] == 2
    run([sys.executable, "201-space/train_search.py", "--resume", str(parts)])
    a, b = results(whole), results(parts)
    same = ("train_loss", "train_acc", "valid_loss", "valid_acc", "arch", "genotype", "benchmark", "exploration",
            "hessian_eigenvalue", "hessian_eigenvalue_largest_magnitude")
    for ea, eb in zip(a["epochs"], b["epochs"]):
        assert {key: ea[key] for key in same} == {key: eb[key] for key in same}
    assert "hessian_eigenvalue" in a["epochs"][1] and a["epochs"][1]["exploration"]["samples"] == 4
