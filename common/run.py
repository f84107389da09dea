"""Run plumbing shared by every script: device, seeding, the output folder, logging,
TensorBoard, the results JSON and the live progress line.

Every run writes, in its output folder: `log.txt` (what was printed), `tb/` (TensorBoard
events), `results.json` (arguments, versions, per-epoch records, final genotype, wall
time, peak memory) and `checkpoint.pt` (see common/checkpoint.py).
"""
import json
import logging
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common.checkpoint import atomic_write
from common.errors import UserError
from common.results import RESULTS_NAME

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # all devices


def resolve_device(name):
    """`auto` picks CUDA when present; an unavailable device is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for, but no CUDA GPU is available: use --device cpu")
    return device


def autocast(device, amp):
    """bfloat16 autocast when `amp` (no loss scaling needed: bfloat16 has fp32's range)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp)


def check_amp(device):
    """--amp needs bfloat16 on the device: one line otherwise."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(f"--amp uses bfloat16, which {torch.cuda.get_device_name(device)} does not "
                        "support: run without --amp")


def versions():
    import torchvision

    info = {
        "python": platform.python_version(),
        "torch": str(torch.__version__),  # a TorchVersion object would not load with weights_only
        "torchvision": str(torchvision.__version__),
        "numpy": np.__version__,
        "host": platform.node(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        )
        info["git_commit"] = commit.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


def peak_memory_mb(device):
    """CUDA max allocated on a GPU, peak resident set size of the process on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def default_output_dir(space, dataset, save, seed):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return PROJECT_ROOT / "experiments" / space / dataset / f"search-{save}-{stamp}-{seed}"


def make_logger(out_dir):
    logger = logging.getLogger("drnas")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(message)s", datefmt="%m/%d %I:%M:%S %p")
    for handler in (logging.StreamHandler(sys.stdout), logging.FileHandler(Path(out_dir) / "log.txt")):
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    return logger


class Run:
    """The output folder of one run: log, TensorBoard writer and results JSON."""

    def __init__(self, out_dir, args, device, results=None):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.device = device
        self.log = make_logger(self.dir)
        from torch.utils.tensorboard import SummaryWriter  # slow import: only when a run starts

        self.tb = SummaryWriter(str(self.dir / "tb"))
        self.started = time.time()
        self.results = results or {"args": args, "versions": versions(), "epochs": [], "wall_time_s": 0.0}
        self.elapsed_before = self.results.get("wall_time_s", 0.0)  # time spent before a resume

    @property
    def results_path(self):
        return self.dir / RESULTS_NAME

    def scalars(self, step, values, prefix=""):
        for name, value in values.items():
            if isinstance(value, (int, float)) and value is not None:
                self.tb.add_scalar(prefix + name, value, step)

    def save_results(self, **extra):
        self.results.update(extra)
        self.results["wall_time_s"] = self.elapsed_before + time.time() - self.started
        self.results["peak_memory_mb"] = max(
            self.results.get("peak_memory_mb", 0.0), peak_memory_mb(self.device)
        )
        text = json.dumps(self.results, indent=1)
        atomic_write(self.results_path, lambda tmp: Path(tmp).write_text(text))

    def close(self):
        self.tb.close()
        for handler in list(self.log.handlers):
            self.log.removeHandler(handler)
            handler.close()


class Progress:
    """A live progress line on a terminal, plain log lines every `report_freq` steps otherwise.

    Meters live on the device; they are read (a host-device sync) only when a line is
    shown: at most once a second on a terminal, every `report_freq` steps in a log.
    """

    def __init__(self, log, title, total_steps, batch_size, report_freq, steps_after=0, stream=None):
        self.log, self.title = log, title
        self.total, self.batch_size, self.report_freq = total_steps, batch_size, report_freq
        self.steps_after = steps_after  # steps left in the run after this epoch, for the time left
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.start = self.last_shown = time.time()

    def due(self, step):
        if self.live:
            return time.time() - self.last_shown >= 1.0 or step + 1 == self.total
        return (step + 1) % self.report_freq == 0

    def show(self, step, loss, acc):
        now = time.time()
        self.last_shown = now
        done = step + 1
        per_step = (now - self.start) / done
        left = per_step * (self.total - done + self.steps_after)
        line = (f"{self.title} step {done}/{self.total} loss {loss:.4f} acc {acc:.2f}% "
                f"{self.batch_size / per_step:.0f} img/s left {_hms(left)}")
        if self.live:
            end = "\n" if done == self.total else ""
            self.stream.write("\r" + line.ljust(100) + end)
            self.stream.flush()
        else:
            self.log.info(line)


def _hms(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
