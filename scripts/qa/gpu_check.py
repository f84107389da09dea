"""Check a GPU machine end to end in one call, writing each figure to the report as it is measured.

    python3 scripts/qa/gpu_check.py REPORT.md --wheels .whl --authors .authors/DrNAS
    python3 scripts/qa/gpu_check.py REPORT.md --dry_run     # the checks in order, with their budgets

Runs with the machine's own python3 from a plain checkout: no virtual environment, no
install, no network. Its children find this checkout through PYTHONPATH; `--wheels DIR`
installs the small benchmark packages (nas-bench-201, nats_bench) from wheels into a
temporary folder for them (without, the tests that need those packages are skipped);
`--authors DIR` is a checkout of the authors' code, timed beside ours
(scripts/qa/authors_reference.py; without it that half of the table is skipped).

The checks run most valuable first (`--dry_run` lists them). Each runs its programs in
process groups of their own, under the check's time budget; one that runs out is killed
whole (ranks and workers too) and its row says so. The total (`--budget_s`) is shared out in
order: what is left when a check starts caps it. Every row is appended to the report as soon
as it exists, so a run killed from outside still leaves what it measured. Without CUDA it
says so in one line and exits 0.
"""
import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "scripts" / "qa")]  # common/, benchmark_search, gpu_checks

from gpu_checks import CHECKS, extrapolations  # noqa: E402


class OutOfTime(Exception):
    """A check's budget ran out while one of its programs ran (it was killed); `partial`: what
    the program had printed by then."""

    def __init__(self, partial=""):
        super().__init__("out of time")
        self.partial = partial


class Context:
    """What a check is given: the child environment, its deadline, a place for files, and
    what earlier checks measured (`measured`, for the extrapolations)."""

    def __init__(self, work, env, authors, gpus):
        self.work, self.env, self.authors, self.gpus = work, env, authors, gpus
        self.deadline, self.measured = None, {}
        self.live = set()  # programs running now, killed whole if this process is stopped

    def left(self):
        return self.deadline - time.monotonic()

    def start(self, command):
        process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, preexec_fn=own_group)
        self.live.add(process)
        return process

    def run(self, command):
        """(return code, stdout, last stderr line) of one program, killed whole at the deadline."""
        return self.run_many([command])[0]

    def run_many(self, commands):
        """Programs run at the same time, each in its own process group; all are killed at the
        deadline, and OutOfTime raised."""
        processes = [self.start(command) for command in commands]
        results = []
        try:
            for process in processes:
                out, err = process.communicate(timeout=max(self.left(), 0.1))
                results.append((process.returncode, out, (err.strip().splitlines() or [""])[-1]))
        except subprocess.TimeoutExpired:
            kill_group(processes[len(results)])
            raise OutOfTime(processes[len(results)].communicate()[0] or "") from None
        finally:
            for process in processes:
                kill_group(process)
                self.live.discard(process)
        return results

    def python(self, *args):
        return [sys.executable, *map(str, args)]


def own_group():
    """In the child before it runs: a process group of its own (killed whole with its ranks and
    workers), and on Linux a SIGKILL when this runner dies, however it dies."""
    os.setpgrp()
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def stop_on_signal(context):
    """SIGTERM or SIGINT (a time limit from outside): kill every running check whole, then exit;
    the report keeps every row written so far."""
    def handler(signum, frame):
        for process in list(context.live):
            kill_group(process)
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)


def kill_group(process):
    """Kill a program and everything it started (its process group), and reap it."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def child_env(site=None):
    """The children's environment: this checkout (and the wheels' folder) on PYTHONPATH."""
    paths = [str(ROOT)] + ([str(site)] if site else []) + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}


def install_wheels(wheels, work):
    """pip-install the wheels in `wheels` into a folder of `work` (no index, no dependencies)."""
    site = work / "site"
    files = sorted(Path(wheels).glob("*.whl"))
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--target", str(site), *map(str, files)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120) if files else None
    return (site if done is not None and done.returncode == 0 else None), [f.name for f in files]


class Report:
    """The Markdown report, appended to and flushed part by part: a table row joins the table
    above it, anything else is a paragraph of its own."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.write_text("")
        self.in_table = False

    def add(self, text):
        text = text.rstrip("\n")
        row = text.startswith("|")
        with open(self.path, "a") as handle:
            handle.write(("" if row or not self.in_table else "\n") + text + ("\n" if row else "\n\n"))
            handle.flush()
            os.fsync(handle.fileno())
        self.in_table = row


def run_checks(context, report, budget_s, only=None):
    """Each check in order under min(its budget, what is left); returns {name: passed}."""
    ends = time.monotonic() + budget_s
    outcome = {}
    for check in CHECKS:
        if only and check.name not in only:
            continue
        context.deadline = min(time.monotonic() + check.budget_s, ends)
        report.add(f"## {check.title}")
        started = time.monotonic()
        if ends - started < 5:
            report.add(f"_{check.name}: skipped, the total budget is spent_")
            outcome[check.name] = None
            continue
        try:
            for part in check.run(context):
                report.add(part)
            passed, note = True, "done"
        except OutOfTime as stopped:
            if stopped.partial.strip():  # the rows the program printed before it was killed
                report.add(stopped.partial)
            passed, note = False, "stopped: its time budget ran out (its programs were killed)"
        except Exception as err:  # a broken check is a row, not the end of the run
            passed, note = False, f"failed: {type(err).__name__}: {' '.join(str(err).split())[:300]}"
        outcome[check.name] = passed
        report.add(f"_{check.name}: {note} in {time.monotonic() - started:.0f} s_")
    return outcome


def dry_run(env):
    total = 0
    for index, check in enumerate(CHECKS, 1):
        total += check.budget_s
        print(f"{index:2d}. {check.name} ({check.budget_s} s): {check.title}")
    print(f"    the budgets add up to {total} s; --budget_s caps the whole run (default 480 s)")
    probe = subprocess.run([sys.executable, "-c", "import common, space201.model_search, darts_space.model_search"],
                           cwd=tempfile.gettempdir(), env=env, capture_output=True, text=True, timeout=120)
    print("imports from this checkout without an install: " +
          ("ok" if probe.returncode == 0 else f"FAILED: {(probe.stderr.strip().splitlines() or [''])[-1]}"))
    return 0 if probe.returncode == 0 else 1


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", help="the Markdown report to write")
    p.add_argument("--dry_run", action="store_true", help="list the checks in order with their budgets; run nothing")
    p.add_argument("--budget_s", type=float, default=480, help="seconds for all checks together")
    p.add_argument("--wheels", default=None, help="a folder of wheels to install for the children (no index)")
    p.add_argument("--authors", default=None, help="a checkout of the authors' DrNAS code, timed beside ours")
    p.add_argument("--only", nargs="+", default=None, help="run these checks only")
    args = p.parse_args(argv)
    if args.dry_run:
        return dry_run(child_env())
    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU on this machine: nothing to check (run this on the GPU machine)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="drnas-gpu-check-"))
    site, wheels = install_wheels(args.wheels, work) if args.wheels else (None, [])
    context = Context(work, child_env(site), args.authors, torch.cuda.device_count())
    stop_on_signal(context)
    report = Report(args.report)
    report.add(f"# GPU check, {time.strftime('%Y-%m-%d %H:%M')}\n\n`python3 scripts/qa/gpu_check.py "
               f"{' '.join(sys.argv[1:] if argv is None else argv)}`; wheels: {', '.join(wheels) or 'none'}"
               f"{'' if site or not wheels else ' (install FAILED)'}")
    outcome = run_checks(context, report, args.budget_s, args.only)
    report.add("## Extrapolated full-search costs (extrapolations from the steps measured above)")
    report.add(extrapolations(context.measured))
    report.add("## Summary\n\n" + "\n".join(f"- {name}: {'passed' if ok else 'skipped' if ok is None else 'FAILED'}"
                                         for name, ok in outcome.items()))
    print(json.dumps(outcome))
    return 0 if all(ok is not False for ok in outcome.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
