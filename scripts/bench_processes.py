"""scripts/benchmark_search.py's measurements that need processes of their own: the table rows
(`--compare`, `--memory_table`: each configuration in a fresh process, so that its memory peaks
are its own) and N searches at once on one device (`--concurrent N`).

Concurrent copies meet at a barrier (a folder each copy marks when its warm-up is done) and
then time their steps, so that the timed windows overlap; the total images/s is every copy's
images over the span from the first window's start to the last window's end.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common.errors import UserError

BARRIER_TIMEOUT_S = 1800  # a copy that waits longer for the others gives up


def memory_cells(row):
    """The memory columns of a row: on a GPU allocated / reserved / device used (MiB); on a CPU
    the peak RSS and the step's own share above set-up."""
    if "memory_mb" in row:
        return [f"{row['memory_mb'][name]:.0f}" for name in ("allocated", "reserved", "device_used")]
    return [f"{row['peak_memory_mb']:.0f} ({row['peak_memory_mb'] - row['setup_rss_mb']:.0f} above set-up)"]


def failure(label, out):
    return UserError(f"{label} failed: {(out.stderr.strip().splitlines() or ['no output'])[-1]}")


def run_rows(script, argv, drop, rows, paper_column=False, same_k=False):
    """Each configuration in a fresh process; prints a Markdown table. `rows`: (label, extra
    flags, paper MB or None); `drop`: the flag of argv that asked for the table."""
    base = [a for a in argv if a != drop]
    lines = []
    for label, extra, paper_mb in rows:
        out = subprocess.run([sys.executable, script, *base, *extra], capture_output=True, text=True)
        if out.returncode:
            raise failure(label, out)
        row = json.loads(out.stdout)
        cells = [label, f"{row['median_step_s']:.4f}", f"{row['images_per_s']:.1f}", *memory_cells(row)]
        lines.append("| " + " | ".join(cells + ([str(paper_mb or "-")] if paper_column else [])) + " |")
    memory = (["allocated (MiB)", "reserved (MiB)", "device used (MiB)"] if "memory_mb" in row
              else ["peak memory (MB)"])
    header = ["configuration", "median step (s)", "images/s", *memory] + (["paper, GTX 1080 Ti (MB)"] if paper_column else [])
    print(f"space {row['space']}, " + (f"k {row['k']}, " if same_k else "") +
          f"device {row['device']}, batch {row['batch_size']}, "
          f"{row['threads']} threads, torch {row['torch']}"
          + (f", GPU {row['gpu']}" if "gpu" in row else f", setup RSS {row['setup_rss_mb']:.0f} MB"))
    print("\n".join(["| " + " | ".join(header) + " |", "|" + " --- |" * len(header), *lines]))


def without_flag(argv, flag):
    """argv without `flag VALUE` (or `flag=VALUE`)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return out


def wait_at_barrier(folder, count):
    """Mark this copy ready in `folder`, then wait until `count` copies are."""
    folder = Path(folder)
    (folder / f"ready.{os.getpid()}").touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while sum(1 for path in folder.iterdir() if path.name.startswith("ready.")) < count:
        if time.monotonic() > deadline:
            raise UserError(f"the other copies did not reach the barrier in {BARRIER_TIMEOUT_S} s")
        time.sleep(0.01)


def run_concurrently(script, argv, count):
    """`count` copies of the benchmark at once on one device; their reports and the total."""
    base = without_flag(argv, "--concurrent")
    with tempfile.TemporaryDirectory(prefix="drnas-barrier-") as barrier:
        command = [sys.executable, script, *base, "--barrier", barrier, "--barrier_count", str(count)]
        processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for _ in range(count)]
        outputs = [process.communicate() for process in processes]
    for process, (out, err) in zip(processes, outputs):
        if process.returncode:
            raise failure(f"one of {count} concurrent copies", subprocess.CompletedProcess([], 1, out, err))
    reports = [json.loads(out) for out, _ in outputs]
    span = max(r["window_end"] for r in reports) - min(r["window_start"] for r in reports)
    images = sum(r["batch_size"] * r["steps"] for r in reports)
    return {"concurrent": count, "space": reports[0]["space"], "device": reports[0]["device"],
            "batch_size": reports[0]["batch_size"], "steps": reports[0]["steps"],
            "total_images_per_s": images / span, "sum_images_per_s": sum(r["images_per_s"] for r in reports),
            "median_step_s": statistics.median(r["median_step_s"] for r in reports),
            "span_s": span, "processes": reports}
