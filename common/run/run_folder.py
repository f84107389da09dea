"""The output folder of a run: its log, TensorBoard events and results JSON.

Every run writes, in its folder: `log.txt` (what was printed), `tb/` (TensorBoard events),
`results.json` (arguments, versions, per-epoch records, final genotype or accuracy, wall time,
peak memory) and `checkpoint.pt` (common/run/checkpoint.py). On the ranks of a torchrun job other
than 0 a `QuietFolder` stands in: it holds the results and writes nothing.
"""
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common.run.checkpoint import atomic_write
from common.device import peak_memory_mb
from common.errors import UserError, one_line
from common.run.results import RESULTS_NAME

PROJECT_ROOT = Path(__file__).resolve().parents[2]


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


def default_output_dir(folder, dataset, save, seed, kind="search", suffix=""):
    """experiments/<space folder>/<dataset>/<kind>-<save>-<time>-<seed><suffix>."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return PROJECT_ROOT / "experiments" / folder / dataset / f"{kind}-{save}-{stamp}-{seed}{suffix}"


class TerminalHandler(logging.StreamHandler):
    """The terminal's copy of the log. When the reader goes away (`| head -1`), standard output
    is pointed at /dev/null and the lines go on into log.txt only, without a logging traceback."""

    def handleError(self, record):
        if isinstance(sys.exc_info()[1], BrokenPipeError):
            silence_stdout()
            self.setStream(open(os.devnull, "w"))
            return
        super().handleError(record)


def silence_stdout():
    """Point file descriptor 1 at /dev/null (Python's advice for a closed pipe: no error at exit)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def make_logger(out_dir):
    logger = logging.getLogger("drnas")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(message)s", datefmt="%m/%d %I:%M:%S %p")
    for handler in (TerminalHandler(sys.stdout), logging.FileHandler(Path(out_dir) / "log.txt")):
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    return logger


class RunFolder:
    """The output folder of one run: log, TensorBoard writer and results JSON."""

    def __init__(self, out_dir, args, device, results=None, lock=None):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.device, self.lock = device, lock  # common.run.ownership.RunLock, released on close
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
        try:
            atomic_write(self.results_path, lambda tmp: Path(tmp).write_text(text))
        except OSError as err:
            raise UserError(f"cannot write {self.results_path} ({err.strerror or err}): free some space "
                            "or pick another --output_dir") from None

    def record_failure(self, err):
        """The error that ends the run: its line into log.txt (the terminal has it already on
        stderr) and `finished: false` with the error into results.json."""
        line = one_line(err) or type(err).__name__
        stamp = time.strftime("%m/%d %I:%M:%S %p")
        with open(self.dir / "log.txt", "a") as handle:
            handle.write(f"{stamp} error: {line}\n")
        try:
            self.save_results(finished=False, error=line)
        except UserError:
            pass  # a full disk: the error line above is what can be kept

    def close(self):
        self.tb.close()
        for handler in list(self.log.handlers):
            self.log.removeHandler(handler)
            handler.close()
        if self.lock is not None:
            self.lock.release()


class QuietFolder:
    """Stands in for RunFolder on the ranks of a torchrun job other than 0: holds the results,
    writes nothing, logs nowhere."""

    def __init__(self, out_dir, results=None):
        self.dir = Path(out_dir)
        self.results = results or {"epochs": []}
        self.log = logging.getLogger("drnas.quiet")
        self.log.addHandler(logging.NullHandler())
        self.log.propagate = False
        self.elapsed_before, self.started = 0.0, 0.0
        self.results_path = self.dir / RESULTS_NAME

    def scalars(self, *args, **kwargs):
        pass

    def save_results(self, **extra):
        self.results.update(extra)

    def record_failure(self, err):
        pass

    def close(self):
        pass
