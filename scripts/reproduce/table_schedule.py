"""The loop that runs a table on one box (its parts: scripts/reproduce/table_runner.py), and one run of a
table in the foreground, as a SLURM array task runs it (`run_task`).

Runs start in the table's order as places free up; a run that wants more GPUs than are idle
waits, and the runs after it wait behind it (first come, first served). The loop ends when every
run is done, failed or left out; after a signal, when the runs it passed the signal to have
stopped.
"""
import signal
import time
from collections import defaultdict
from pathlib import Path

from common.errors import UserError
from common.run.results import RESULTS_NAME
from run_costs import format_duration
from table_runner import (POLL_S, Launched, Slots, claim, command, eta, exit_line, gpu_names, install_signals,
                                 last_error, read_json_quietly, run_state, stamp, visible_gpus, wall_seconds)

REQUEUE = 3  # run_task's status for a run stopped by a signal with its checkpoint: continue it later
STATE_WORDS = {"new": "new", "resume": "resumed from its checkpoint", "fresh": "started again"}
ENDED = ("done", "failed", "stopped", "left out")


class TableRunner:
    """Runs `table` into `table_dir` on `gpus` (names as CUDA_VISIBLE_DEVICES takes them; none:
    the CPU) with `per_gpu` runs at once on each; `say` gets the progress lines."""

    def __init__(self, table, table_dir, *, gpus, per_gpu, python, say=print):
        self.table, self.dir, self.python, self.say = table, Path(table_dir), python, say
        self.slots = Slots(gpus, per_gpu)
        self.status, self.running, self.told = {}, {}, set()
        self.measured = defaultdict(list)  # group -> wall seconds of its finished runs
        self.skipped, self.stopping = 0, None

    def waiting(self):
        return [run for run in self.table.runs if run.name not in self.status and run.name not in self.running]

    def run(self):
        """Run the table; returns the exit status (0 all done, 1 some failed or left out, 128 + signal)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        restore = install_signals(self.on_signal)
        try:
            while True:
                self.reap()
                if self.stopping is None:
                    self.launch_ready()
                if not self.running and (self.stopping is not None or not self.waiting()):
                    break
                time.sleep(POLL_S)
        finally:
            restore()
        return self.summary()

    def eta(self):
        return eta(self.dir, self.waiting(), list(self.running.values()), self.slots.total, self.measured)

    def note_once(self, run, line):
        if run.name not in self.told:
            self.told.add(run.name)
            self.say(f"{stamp()} {line}")

    def launch_ready(self):
        for run in self.waiting():
            state = run_state(run, self.dir / run.name)
            if state == "done":
                self.status[run.name] = "done"
                self.skipped += 1
                seconds = wall_seconds(self.dir, run)
                if seconds is not None:
                    self.measured[run.group].append(seconds)
                self.say(f"{stamp()} done before, skipped: {run.name}")
                continue
            lost = [name for name in run.after if self.status.get(name) in ENDED[1:]]
            if lost:
                self.status[run.name] = "left out"
                self.say(f"{stamp()} left out: {run.name} (needs {', '.join(lost)}, which did not finish)")
                continue
            if any(run_state(self.table.run(name), self.dir / name) != "done" for name in run.after):
                continue  # its inputs are still running
            if not self.launch(run):
                break  # first come, first served: the runs after it wait for places too

    def launch(self, run):
        """Start `run` when places are free; False when it has to wait for places."""
        devices = self.slots.take(run.gpus)
        if devices is None:
            return False
        held = claim(self.dir, run)
        if held is None:
            self.slots.give_back(devices)
            self.note_once(run, f"{run.name} is being run by another process: waiting for it")
            return True
        processes = len(devices) if devices != [None] else 1
        argv, state = command(run, self.dir, self.python, processes)
        self.running[run.name] = Launched(run, argv, state, devices, held, torchrun=processes > 1)
        self.say(f"{stamp()} started {run.name} ({STATE_WORDS[state]}) on {gpu_names(devices)}: "
                 f"{len(self.running)} running, {len(self.waiting())} waiting; {self.eta()}")
        return True

    def reap(self):
        for name, item in list(self.running.items()):
            code = item.process.poll()
            if code is None:
                continue
            del self.running[name]
            self.slots.give_back(item.devices)
            item.claim.release()
            self.ended(item, code)

    def ended(self, item, code):
        run = item.run
        if run_state(run, self.dir / run.name) == "done":
            self.status[run.name] = "done"
            seconds = wall_seconds(self.dir, run) or time.time() - item.started
            self.measured[run.group].append(seconds)
            done = sum(1 for s in self.status.values() if s == "done")
            self.say(f"{stamp()} finished {run.name} in {format_duration(seconds)}: {done} of "
                     f"{len(self.table.runs)} done; {self.eta()}")
        elif self.stopping is not None or code == 0:  # a signal, or its flags stopped it (--stop_after_epoch)
            self.status[run.name] = "stopped"
            self.say(f"{stamp()} stopped {run.name} ({exit_line(code)}): run the table again to continue it")
        else:
            self.status[run.name] = "failed"
            self.say(f"{stamp()} FAILED {run.name} ({exit_line(code)}): {last_error(item.claim.out_path)} "
                     f"(output: {item.claim.out_path})")

    def on_signal(self, signum, frame):
        again = self.stopping is not None
        if not again:
            self.stopping = signum
            self.say(f"{stamp()} received {signal.Signals(signum).name}: stopping {len(self.running)} run(s) at a "
                     "step boundary, their checkpoints kept (Ctrl-C again: at once)")
        for item in self.running.values():
            item.signal(signum)

    def summary(self):
        counts = {word: sum(1 for s in self.status.values() if s == word) for word in ENDED}
        left = len(self.waiting()) + len(self.running)
        self.say(f"{stamp()} table {self.table.name}: {counts['done']} of {len(self.table.runs)} runs done "
                 f"({self.skipped} of them before), {counts['failed']} failed, {counts['left out']} left out, "
                 f"{counts['stopped'] + left} to continue")
        if self.stopping is not None:
            return 128 + int(self.stopping)
        return 0 if counts["done"] == len(self.table.runs) else 1


def run_task(table, table_dir, index, python, say=print):
    """Run the table's run number `index` in the foreground (a SLURM array task): 0 done (or done
    before), REQUEUE when a signal stopped it with its checkpoint, else the run's failure."""
    if not 0 <= index < len(table.runs):
        raise UserError(f"--task {index}: the table has runs 0 to {len(table.runs) - 1}")
    run, table_dir = table.runs[index], Path(table_dir)
    missing = [name for name in run.after if run_state(table.run(name), table_dir / name) != "done"]
    if missing:
        raise UserError(f"run {run.name} trains or reads {', '.join(missing)}, which has not finished: run it first")
    if run_state(run, table_dir / run.name) == "done":
        say(f"{stamp()} done before, skipped: {run.name}")
        return 0
    held = claim(table_dir, run)
    if held is None:
        raise UserError(f"another process is running {run.name} in {table_dir}: wait for it")
    gpus = visible_gpus()
    processes = min(run.gpus, len(gpus)) or 1
    argv, state = command(run, table_dir, python, processes)
    launched = Launched(run, argv, state, gpus[:processes] or [None], held, torchrun=processes > 1)
    say(f"{stamp()} started {run.name} ({STATE_WORDS[state]}) on {gpu_names(launched.devices)}")
    received = []
    restore = install_signals(lambda signum, frame: (received.append(signum), launched.signal(signum)))
    try:
        code = launched.process.wait()
    finally:
        restore()
        held.release()
    if run_state(run, table_dir / run.name) == "done":
        say(f"{stamp()} finished {run.name}")
        return 0
    results = read_json_quietly(table_dir / run.name / RESULTS_NAME)
    if received or code == 0 or (isinstance(results, dict) and results.get("stopped")):
        say(f"{stamp()} stopped {run.name} with its checkpoint ({exit_line(code)}): to be continued")
        return REQUEUE
    say(f"{stamp()} FAILED {run.name} ({exit_line(code)}): {last_error(held.out_path)}")
    return code if code > 0 else 1
