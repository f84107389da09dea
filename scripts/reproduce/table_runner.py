"""Running a table (scripts/reproduce/tables.py) on one box: `per_gpu` runs at once on each GPU, one run at
a time on a CPU unless told otherwise, each run in its own folder under the table's folder.

- A run whose folder says it is done (results.json with `finished: true`; for the ImageNet
  sample, its manifest) is skipped; one with a checkpoint is continued with `--resume`; one
  that a kill stopped before its first checkpoint starts anew (`--overwrite`). So a runner
  killed and started again loses nothing.
- An evaluation starts when the search it trains has finished; a run whose input failed is
  left out, said once.
- Each run is claimed through a lock in `<table folder>/.runner/` (its output goes there too,
  `<run>.out`), so two runners on one table (two boxes on a shared disk) share the runs out;
  a run that another process is running is waited for.
- SIGTERM, SIGUSR1 and SIGINT are passed on to the runs (torchrun gets SIGTERM, which it
  passes to its workers): each stops at a step boundary with a checkpoint, then the runner
  exits with 128 + the signal.
- One line per run started or finished, with a running estimate of the time left
  (scripts/reproduce/run_costs.py).
"""
import fcntl
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from common.errors import UserError
from common.run.ownership import check_not_running, holds_run
from common.run.results import RESULTS_NAME
from run_costs import format_duration, fraction_done, time_left

ROOT = Path(__file__).resolve().parents[2]
RUNNER_DIR = ".runner"
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
POLL_S = 0.5  # how often the runner looks at its runs


def read_json_quietly(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError, RecursionError):
        return None


def run_state(run, folder):
    """done, resume (a checkpoint), fresh (a killed start left files), or new."""
    folder = Path(folder)
    if run.done_file == RESULTS_NAME:
        results = read_json_quietly(folder / RESULTS_NAME)
        if isinstance(results, dict) and results.get("finished") is True:
            return "done"
        if (folder / "checkpoint.pt").is_file():
            return "resume"
        return "fresh" if holds_run(folder) else "new"
    if (folder / run.done_file).is_file():
        return "done"
    return "fresh" if folder.is_dir() and any(folder.iterdir()) else "new"


def command(run, table_dir, python, processes=1):
    """(argv, state) of a run: its script, flags, inputs' folders, its folder, and --resume or
    the fresh-start flag as its folder asks."""
    folder = Path(table_dir) / run.name
    state = run_state(run, folder)
    script = str(ROOT / run.script)
    head = [python, script] if processes == 1 else [
        python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", script]
    argv = head + list(run.flags)
    for flag, name in run.inputs:
        argv += [flag, str(Path(table_dir) / name)]
    argv += [run.output, str(folder)] if run.output else [str(folder)]
    if state == "resume":
        argv += ["--resume", str(folder)]
    elif state == "fresh":
        argv.append(run.fresh_flag)
    return argv, state


def child_env(gpus):
    """The environment of a run: this checkout first on the import path, its GPUs only."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    return env


class Claim:
    """This runner's hold on one run (an advisory lock in the table's .runner folder)."""

    def __init__(self, table_dir, name):
        folder = Path(table_dir) / RUNNER_DIR
        folder.mkdir(parents=True, exist_ok=True)
        self.handle = open(folder / f"{name}.claim", "a+")
        self.out_path = folder / f"{name}.out"

    def take(self):
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def release(self):
        self.handle.close()


def claim(table_dir, run):
    """A Claim on the run, or None when another runner or a live run process holds it."""
    held = Claim(table_dir, run.name)
    if not held.take():
        held.release()
        return None
    try:
        check_not_running(Path(table_dir) / run.name)
    except UserError:
        held.release()
        return None
    return held


def last_error(path):
    """The run's `error:` line from its output (else its last line)."""
    try:
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["no output"])[-1]


class Launched:
    """A run's process, the devices it holds, and what it needs to be told on a signal."""

    def __init__(self, run, argv, state, devices, held, torchrun):
        self.run, self.state, self.devices, self.claim, self.torchrun = run, state, devices, held, torchrun
        self.started = time.time()
        with open(held.out_path, "ab") as out:
            out.write(f"\n$ {' '.join(argv)}\n".encode())
            out.flush()
            # the run holds the claim too (the lock belongs to the open file): a run that outlives a
            # killed runner stays claimed until it ends
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                            env=child_env([d for d in devices if d is not None]), cwd=ROOT,
                                            start_new_session=True, pass_fds=(held.handle.fileno(),))

    def signal(self, signum):
        try:
            self.process.send_signal(signal.SIGTERM if self.torchrun else signum)
        except ProcessLookupError:
            pass


class Slots:
    """Free places per device: `per_gpu` on each GPU, or the CPU (device None) alone."""

    def __init__(self, gpus, per_gpu):
        self.per_gpu = per_gpu
        self.free = {gpu: per_gpu for gpu in gpus} if gpus else {None: per_gpu}

    @property
    def total(self):
        return self.per_gpu * len(self.free)

    def take(self, wanted):
        """The devices for a run that wants `wanted` GPUs (fewer when the box has fewer), or None."""
        if None in self.free or min(wanted, len(self.free)) == 1:
            device = max(self.free, key=lambda d: self.free[d])
            chosen = [device] if self.free[device] > 0 else None
        else:
            idle = [d for d, n in self.free.items() if n == self.per_gpu]
            count = min(wanted, len(self.free))
            chosen = idle[:count] if len(idle) >= count else None
        for device in chosen or []:
            self.free[device] -= 1 if len(chosen) == 1 else self.per_gpu
        return chosen

    def give_back(self, devices):
        for device in devices:
            self.free[device] += 1 if len(devices) == 1 else self.per_gpu


def visible_gpus():
    """The GPUs this box shows (as CUDA_VISIBLE_DEVICES names them), none without CUDA."""
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:  # noqa: BLE001  a broken CUDA set-up is a box without GPUs here
        count = 0
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return (listed or [str(i) for i in range(count)])[:count]


def stamp():
    return time.strftime("%H:%M:%S")


def wall_seconds(table_dir, run):
    results = read_json_quietly(Path(table_dir) / run.name / RESULTS_NAME)
    seconds = results.get("wall_time_s") if isinstance(results, dict) else None
    return seconds if isinstance(seconds, (int, float)) else None


def eta(table_dir, waiting, running, slots, measured):
    """'about 3.2 h left (estimate ...)', from the runs' figures (scripts/reproduce/run_costs.py)."""
    progress = [(item.run, fraction_done(read_json_quietly(Path(table_dir) / item.run.name / RESULTS_NAME)))
                for item in running]
    seconds, unknown = time_left(waiting, progress, slots, measured)
    known = len(waiting) + len(running) - unknown
    if not known:
        return "time left: no figure for these runs"
    more = f", {unknown} run(s) without a figure not counted" if unknown else ""
    return f"about {format_duration(seconds)} left (estimate{more})"


def install_signals(handler):
    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    return lambda: [signal.signal(signum, old) for signum, old in previous.items()]


def gpu_names(devices):
    return "the CPU" if devices == [None] else "GPU " + ",".join(devices)


def exit_line(code):
    return f"exit {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"

