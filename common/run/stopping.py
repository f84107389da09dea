"""Stopping on a signal, at a step boundary, without losing work.

Schedulers stop jobs with SIGTERM (SLURM sends SIGUSR1 first with `--signal=USR1@120`);
Ctrl-C sends SIGINT. While a run is driven, the three are caught: the current step ends,
the run writes a mid-epoch checkpoint (the step, the loaders' positions, every random
state), prints one line with the `--resume` command and exits with status 128 + the signal
number (143 for SIGTERM, 138 for SIGUSR1, 130 for SIGINT). `--resume` then continues from that
very step. A second Ctrl-C exits at once (status 130), without a traceback.

Under torchrun every rank checks, after each step, whether any rank was signalled (an
all-reduce of one integer over a CPU process group), so all ranks stop at the same step.
"""
import os
import signal
import sys

import torch

from common.distributed import ONE_PROCESS

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def exit_status(signum):
    return 128 + int(signum)


class StopRequested(Exception):
    """Raised by a loop at the step boundary after a signal: `steps_done` steps of the epoch are
    done and `meter` holds their sums."""

    def __init__(self, signum, steps_done, meter):
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {steps_done}")
        self.signum, self.steps_done, self.meter = signum, steps_done, meter


class StopSignals:
    """The signal handlers of one run; `check(dist)` after a step returns the signal to stop for."""

    def __init__(self):
        self.received, self._previous = None, {}

    def install(self):
        try:
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: leave the handlers alone
            self._previous = {}
        return self

    def uninstall(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            print("error: interrupted again: exiting at once; the last checkpoint is kept", file=sys.stderr, flush=True)
            os._exit(exit_status(signum))
        if self.received is None:
            self.received = signum
            print(f"received {signal.Signals(signum).name}: stopping after this step (Ctrl-C again to exit at once)",
                  file=sys.stderr, flush=True)

    def check(self, dist=ONE_PROCESS):
        """The signal any rank received (the highest number under torchrun), or None."""
        if not dist.distributed:
            return self.received
        flag = torch.tensor([self.received or 0], dtype=torch.int64)
        dist.all_reduce_max_cpu(flag)
        return int(flag.item()) or None


def never_stop(dist=ONE_PROCESS):
    return None
