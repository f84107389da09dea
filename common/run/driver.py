"""The one epoch driver of every search and every training.

A kind of run is a `Task`: it trains one epoch, evaluates, and adds what it alone knows to
the epoch's record through hooks; the driver owns the rest of the bookkeeping, the same for
all of them: the epoch loop, the learning rate read before the epoch, the header line, the
progress line, the divergence check, the scheduler step, the epoch record, the log lines,
TensorBoard scalars, the results JSON, the atomic checkpoint, `--stop_after_epoch`, and the
final `finished: true`.

    task.begin_epoch(epoch) -> {field: value}   set up the epoch (e.g. enter a stage); fields join
                                                the header and the record
    task.train_epoch(epoch, progress, check)    one epoch of steps -> (mean loss, accuracy %)
    task.evaluate(epoch) -> {field: value}      e.g. valid_loss and valid_acc
    task.finish_epoch(epoch, record)            add fields (genotype, diagnostics, ...)
    task.update_results(results, record)        the run-level entries that follow the epoch
    task.summary(record, results), task.final_lines(results)   log lines

Only rank 0 of a torchrun job writes: the folder of the other ranks is a QuietFolder.
"""
import io
import signal
import time

import torch

from common.run import board
from common.run.checkpoint import (CHECKPOINT_NAME, loop_state, restore_loop_state, rng_state, save_checkpoint,
                               set_rng_state)
from common.device import memory_mb
from common.errors import UserError, one_line
from common.run.progress import Progress
from common.run.stopping import StopRequested, exit_status
from common.distributed import ONE_PROCESS


class Diverged(UserError):
    """The loss became non-finite; the last good checkpoint is kept."""


def divergence_check(folder, epoch, fix, is_main=True):
    """A callback for the loops: given the first non-finite step (or -1), stop the run with one
    line naming epoch and step; the checkpoint of the last good epoch stays."""

    def check(first_bad):
        if first_bad < 0:
            return
        if is_main:
            folder.save_results(diverged={"epoch": epoch + 1, "step": first_bad + 1})
        kept = (f"the last good checkpoint ({epoch} epochs done) is kept in {folder.dir / CHECKPOINT_NAME}"
                if epoch else "no checkpoint was written yet")
        raise Diverged(f"training diverged: non-finite loss or parameters at epoch {epoch + 1}, step "
                       f"{first_bad + 1}; {kept}: {fix} and start again")

    return check


class Task:
    """The part of a run the driver does not own (see the module doc); defaults do nothing.

    What the driver reads, set by `__init__`: `optimizer` (its first group's lr is the epoch's
    lr), `scheduler` (stepped after every epoch), `epochs`, `steps` (per epoch, the length of
    the training loader), `batch_size` (global, for the images/s figure), `report_freq`,
    `stateful` ({checkpoint key: object with a state_dict}) and `loaders` ({checkpoint key:
    loader}); and `fix`, what a divergence message suggests. The driver sets `log`, the run's
    logger, for the lines a hook writes."""

    fix = "lower --learning_rate"

    def __init__(self, *, objects, config, dist, optimizer, scheduler, epochs, stateful, loaders):
        self.objects, self.config, self.dist = objects, config, dist
        self.model = objects.model
        self.optimizer, self.scheduler, self.epochs = optimizer, scheduler, epochs
        self.steps, self.batch_size, self.report_freq = len(objects.loaders.train), config.batch_size, config.report_freq
        self.stateful, self.loaders = stateful, loaders

    def describe(self, results, device):
        """Put the run-level entries known before the first epoch into `results`; returns log lines."""
        return []

    def begin_epoch(self, epoch, resuming=False):
        """`resuming`: the epoch continues from a mid-epoch checkpoint (its set-up is restored)."""
        return {}

    def header(self, epoch, lr, fields):
        return f"epoch {epoch + 1}/{self.epochs} lr {lr:.6e}"

    def train_epoch(self, epoch, progress, check_divergence, stop=None, start=None):
        raise NotImplementedError

    def evaluate(self, epoch):
        return {}

    def finish_epoch(self, epoch, record):
        pass

    def summary(self, record, results):
        """The log lines that close an epoch (the results already hold it)."""
        return [f"epoch {record['epoch']}: train loss {record['train_loss']:.4f} acc {record['train_acc']:.2f}%"]

    def final_lines(self, results):
        """The log lines of a finished run."""
        return []

    def update_results(self, results, record):
        pass

    def checkpoint_extra(self, epoch):
        return {}

    def checkpoint(self, folder, epoch):
        return {**loop_state(epoch, folder, self.stateful, self.loaders), **self.checkpoint_extra(epoch)}

    def restore(self, state):
        """Load a checkpoint into the freshly built task; returns the number of epochs done. A
        checkpoint that does not fit (another network, another optimizer) is one line."""
        try:
            return restore_loop_state(state, self.stateful, self.loaders)
        except (RuntimeError, KeyError, ValueError, IndexError, TypeError) as err:
            reason = one_line(err)[:160]
            raise UserError(f"the checkpoint does not fit this run ({type(err).__name__}: {reason}): resume "
                            "with the settings it was written with, or start a new run") from None

    def rank_state(self, meter):
        """This rank's part of a mid-epoch checkpoint: random states, loader positions, sums."""
        return {"rng": rng_state(), "meter": meter.state_dict(),
                "loaders": {name: loader.state_dict(mid_pass=True) for name, loader in self.loaders.items()
                            if hasattr(loader, "state_dict")}}

    def restore_rank(self, state):
        """This rank's part of a mid-epoch checkpoint; returns (steps done, sums) for `drive`."""
        set_rng_state(state["rng"])
        for name, loader_state in state["loaders"].items():
            self.loaders[name].load_state_dict(loader_state)
        return state["meter"]


def _train(task, folder, epoch, is_main, stop, start):
    """The epoch's steps, timed, with the progress line and the divergence check."""
    check = divergence_check(folder, epoch, task.fix, is_main)
    progress = None
    if is_main:
        tb = getattr(folder, "tb", None)
        progress = Progress(folder.log, f"epoch {epoch + 1}", task.steps, task.batch_size, task.report_freq,
                            steps_after=task.steps * (task.epochs - epoch - 1), first_step=start[0] if start else 0,
                            on_report=board.step_curve(tb, epoch, task.steps) if tb is not None else None)
    started = time.time()
    loss, acc = task.train_epoch(epoch, progress, check, stop=stop, start=start)
    return loss, acc, started, time.time() - started


def stop_mid_epoch(task, folder, epoch, request, dist):
    """After a signal: the mid-epoch checkpoint (every rank's random states, loader positions
    and sums, gathered on rank 0), `finished: false` with the signal in the results, one line
    with the command that continues; then exit with status 128 + the signal number."""
    ranks = [task.rank_state(request.meter)]
    if dist.distributed:  # as torch-saved bytes: gathering tensors in objects fails
        buffer = io.BytesIO()
        torch.save(ranks[0], buffer)
        ranks = [torch.load(io.BytesIO(data), weights_only=True) for data in dist.all_gather_objects(buffer.getvalue())]
    name = signal.Signals(request.signum).name
    if dist.is_main:
        state = task.checkpoint(folder, epoch)
        state["mid_epoch"] = {"epoch": epoch, "steps_done": request.steps_done, "ranks": ranks}
        save_checkpoint(folder.dir / CHECKPOINT_NAME, state)
        folder.save_results(finished=False, stopped={"signal": name, "epoch": epoch + 1, "steps_done": request.steps_done})
    folder.log.info(f"stopped by {name} in epoch {epoch + 1} after step {request.steps_done}; the checkpoint "
                    f"holds it: continue with --resume {folder.dir}")
    raise SystemExit(exit_status(request.signum))


def drive(task, folder, *, start_epoch=0, stop_after_epoch=None, dist=ONE_PROCESS, signals=None, resume=None):
    """Run (or continue) the task's epochs into `folder`; returns the results dict. `signals`
    (common.run.stopping.StopSignals) stops the run at a step boundary; `resume` (steps done, sums)
    continues a first epoch stopped so."""
    is_main = dist.is_main
    task.log = folder.log  # for the lines a hook logs
    for epoch in range(start_epoch, task.epochs):
        fields = task.begin_epoch(epoch, resuming=resume is not None)
        lr = task.optimizer.param_groups[0]["lr"]
        folder.log.info(task.header(epoch, lr, fields) + (f" (resumed after step {resume[0]})" if resume else ""))
        try:
            train_loss, train_acc, started, train_time = _train(
                task, folder, epoch, is_main, signals.check if signals else None, resume)
        except StopRequested as request:
            stop_mid_epoch(task, folder, epoch, request, dist)
        resume = None
        evaluation = task.evaluate(epoch)
        task.scheduler.step()
        record = {"epoch": epoch + 1, **fields, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                  **evaluation, "images_per_s": task.steps * task.batch_size / max(train_time, 1e-9)}
        task.finish_epoch(epoch, record)
        record["memory_mb"] = memory_mb(next(task.model.parameters()).device)  # this process's peaks
        record["epoch_time_s"] = time.time() - started
        _record(task, folder, record, epoch)
        if is_main:
            save_checkpoint(folder.dir / CHECKPOINT_NAME, task.checkpoint(folder, epoch + 1))
            folder.save_results()
        dist.wait_for_main()  # the others wait on the CPU, not inside NCCL (common/distributed.py)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < task.epochs:
            folder.log.info(f"stopping after epoch {epoch + 1} as asked; continue with --resume {folder.dir}")
            return folder.results
    folder.save_results(finished=True)
    if getattr(folder, "tb", None) is not None:
        board.write_hparams(folder.tb, folder.results["args"], folder.results)
    for line in task.final_lines(folder.results):
        folder.log.info(line)
    return folder.results


def _record(task, folder, record, epoch):
    """The epoch's record into the results, the log and TensorBoard."""
    folder.results["epochs"].append(record)
    task.update_results(folder.results, record)
    folder.results.update(epochs_done=epoch + 1)
    for line in task.summary(record, folder.results):
        folder.log.info(line)
    _scalars(folder, record)
    if getattr(folder, "tb", None) is not None and "arch" in record:  # a search: alpha, beta, means, genotype
        board.arch_epoch(folder.tb, record, folder.results, first=not getattr(folder, "layout_written", False))
        folder.layout_written = True
    folder.results["wall_time_s"] = folder.elapsed_before + time.time() - folder.started


def _scalars(folder, record):
    """The record's numbers as TensorBoard scalars; a dict of numbers (the benchmark's
    accuracies) under its key as a prefix."""
    epoch = record["epoch"]
    folder.scalars(epoch, {k: v for k, v in record.items() if k not in ("epoch", "stage")})
    for key, value in record.items():
        if isinstance(value, dict):
            folder.scalars(epoch, value, prefix=f"{key}/")
