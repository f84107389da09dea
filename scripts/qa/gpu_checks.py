"""The checks of scripts/qa/gpu_check.py, most valuable first, each with its time budget.

A check is a generator of Markdown parts (a table row, a table, a line), appended to the
report as each is yielded; it runs programs through the runner's context (`ctx.run`,
`ctx.run_many`), which kills them whole when the check's time is up.
"""
import json
from dataclasses import dataclass
from typing import Callable

from benchmark_search import MEMORY_ROWS

CIFAR_HALF_STEPS = 391  # 25,000 images at batch 64, the last batch partial
PAPER_DARTS_GPU_DAYS = 0.6


@dataclass(frozen=True)
class Check:
    name: str
    budget_s: int
    title: str
    run: Callable  # (context) -> iterator of Markdown parts


def header(*names):
    return "| " + " | ".join(names) + " |\n|" + " --- |" * len(names)


def json_of(code, out, err, what):
    if code:
        raise RuntimeError(f"{what} exited {code}: {err}")
    return json.loads(out)


def memory_cells(row):
    """allocated, reserved, device used (on a CPU, for trials: the peak RSS in each)."""
    memory = row.get("memory_mb") or {"rss": row["peak_memory_mb"]}
    return [f"{memory.get(key, memory.get('rss', 0)):.0f}" for key in ("allocated", "reserved", "device_used")]


def probe(section):
    """A section of scripts/qa/gpu_probe.py, run in its own process."""
    def run(ctx):
        code, out, err = ctx.run(ctx.python("scripts/qa/gpu_probe.py", section))
        if code:
            raise RuntimeError(f"gpu_probe {section} exited {code}: {err}")
        yield out
    return run


def steps(ctx):
    """Ours at every row of the paper's partial-channel table, the authors' beside it; each
    configuration in a fresh process (its memory its own)."""
    yield header("code", "configuration", "median step (ms)", "images/s", "max allocated (MiB)", "max reserved (MiB)",
                 "device used (MiB)", "paper, GTX 1080 Ti (MB)")
    ours = {label: (flags, paper) for label, flags, paper in MEMORY_ROWS["201"]}
    theirs = ["k=1", "k=4", "k=2", "k=8", "progressive, stage 2 (k=2, 3 ops)"] if ctx.authors else []
    order = [("ours", "k=1"), ("authors", "k=1"), ("ours", "k=4"), ("authors", "k=4"), ("ours", "k=2"),
             ("ours", "k=8"), ("ours", "progressive, stage 2 (k=2, 3 ops)")] + [("authors", t) for t in theirs[2:]]
    for code, label in order:
        if code == "authors" and label not in theirs:
            continue
        flags, paper = ours[label]
        if code == "ours":
            command = ctx.python("scripts/benchmark_search.py", "--space", "201", "--device", "cuda", "--steps", 20,
                                 "--warmup", 5, *flags)
        else:
            command = ctx.python("scripts/qa/authors_reference.py", "--authors", ctx.authors, "--device", "cuda",
                                 "--steps", 20, "--warmup", 5, *flags)
        row = json_of(*ctx.run(command), f"{code} {label}")
        ctx.measured[f"{code} {label}"] = row["median_step_s"]
        yield ("| " + " | ".join([code, label, f"{row['median_step_s'] * 1e3:.1f}", f"{row['images_per_s']:.0f}",
                                  *memory_cells(row), str(paper)]) + " |")
    for label in ("k=1", "k=4"):
        if f"authors {label}" in ctx.measured and f"ours {label}" in ctx.measured:
            ratio = ctx.measured[f"authors {label}"] / ctx.measured[f"ours {label}"]
            yield f"At {label} our step is {ratio:.2f}x as fast as the authors' code on this GPU."


def search_rows(ctx):
    """1-epoch searches end to end (two-stage for the progressive ones), results.json checked."""
    write_jpegs(ctx.work / "jpegs")
    common = ["--device", "cuda", "--report_freq", 1000]
    runs = [
        ("201, 1 epoch", ["201-space/train_search.py", "--dataset", "synthetic", "--epochs", 1]),
        ("201, 1 epoch, --cuda_graph", ["201-space/train_search.py", "--dataset", "synthetic", "--epochs", 1,
                                        "--cuda_graph"]),
        ("201 progressive, 1 + 1 epochs", ["201-space/train_search_progressive.py", "--dataset", "synthetic",
                                           "--train_epochs", 1, 1, "--arch_start_epoch", 0]),
        ("201 progressive, --cuda_graph", ["201-space/train_search_progressive.py", "--dataset", "synthetic",
                                           "--train_epochs", 1, 1, "--arch_start_epoch", 0, "--cuda_graph"]),
        ("DARTS space, 1 + 1 epochs, 1024 images", ["DARTS-space/train_search.py", "--dataset", "synthetic",
                                                    "--train_epochs", 1, 1, "--arch_start_epoch", 0,
                                                    "--data_limit", 1024]),
        ("ImageNet search, generated JPEGs, 1 + 1 epochs", [
            "DARTS-space/train_search_imagenet.py", "--data", ctx.work / "jpegs", "--train_epochs", 1, 1,
            "--arch_start_epoch", 0, "--warmup_epochs", 0, "--batch_size", 32, "--workers", 4,
            "--valid_from_epoch", 0]),
    ]
    yield header("search", "result", "images/s per epoch", "max allocated / reserved / device used per stage (MiB)",
                 "genotype or error")
    failed = []
    for index, (label, args) in enumerate(runs):
        out_dir = ctx.work / f"search{index}"
        code, _, err = ctx.run(ctx.python(*args, *common, "--output_dir", out_dir))
        record = read_results(out_dir)
        ok = code == 0 and record.get("finished") is True and "memory_mb_by_stage" in record
        speeds = ", ".join(f"{e['images_per_s']:.0f}" for e in record.get("epochs", []))
        memory = "; ".join(" / ".join(f"{s.get(k, s.get('rss', 0)):.0f}" for k in ("allocated", "reserved", "device_used"))
                           for s in record.get("memory_mb_by_stage", []))
        ctx.measured[f"search {label}"] = record
        detail = str(record.get("genotype")) if ok else err
        failed += [] if ok else [label]
        yield f"| {label} | {'passed' if ok else 'FAILED'} | {speeds} | {memory} | {detail[:160].replace('|', '/')} |"
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(runs)} searches failed: {', '.join(failed)}")


def read_results(folder):
    try:
        return json.loads((folder / "results.json").read_text())
    except (OSError, ValueError):
        return {}


def write_jpegs(root, classes=4, per_class=64):
    """Noise JPEGs of 500 x 375 in train/ and val/ class folders (a sampled-ImageNet layout)."""
    import numpy as np
    from PIL import Image

    if root.exists():
        return
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)).save(folder / f"{i}.JPEG",
                                                                                         quality=90)


def concurrency(ctx):
    """1, 4 and 8 NAS-Bench-201 searches at once on the one GPU (benchmark_search.py --concurrent):
    total images/s over the copies' common timed window."""
    yield header("searches at once", "total images/s", "median step per process (ms)", "throughput vs 1")
    single = None
    for count in (1, 4, 8):
        row = json_of(*ctx.run(ctx.python("scripts/benchmark_search.py", "--space", "201", "--device", "cuda",
                                          "--steps", 50, "--warmup", 5, "--concurrent", count)), f"{count} at once")
        ctx.measured[f"concurrent {count}"] = row["total_images_per_s"]
        single = single or row["total_images_per_s"]
        yield (f"| {count} | {row['total_images_per_s']:.0f} | {row['median_step_s'] * 1e3:.1f} | "
               f"{row['total_images_per_s'] / single:.2f}x |")
    yield ("The copies warm up apart, then meet at a barrier and time their 50 steps together; total images/s "
           "is every copy's images over the span from the first timed step to the last.")


def loader(ctx):
    """The ImageNet search loader: nvJPEG decoding against PIL worker processes."""
    write_jpegs(ctx.work / "jpegs")
    row = json_of(*ctx.run(ctx.python(
        "scripts/benchmark_search.py", "--space", "imagenet", "--batch_size", 64, "--device", "cuda", "--steps", 2,
        "--warmup", 1, "--loader_data", ctx.work / "jpegs", "--loader_batches", 20, "--workers", 4)), "loader")
    yield header("backend (batch 64, 4 workers, 500 x 375 JPEGs)", "images/s")
    for backend, speed in row["loader_images_per_s"].items():
        yield f"| {backend} | {speed:.0f} |"


def nccl(ctx):
    """A 1-process torchrun search with the NCCL backend."""
    out_dir = ctx.work / "torchrun"
    code, _, err = ctx.run(ctx.python(
        "-m", "torch.distributed.run", f"--nproc_per_node={ctx.gpus}", "--master_addr=127.0.0.1",
        "--master_port=29531", "201-space/train_search.py", "--dataset", "synthetic", "--device", "cuda",
        "--epochs", 1, "--report_freq", 1000, "--output_dir", out_dir))
    record = read_results(out_dir)
    ok = code == 0 and record.get("finished") is True
    yield f"torchrun --nproc_per_node={ctx.gpus} (NCCL): {'passed' if ok else 'FAILED: ' + err}"
    if not ok:
        raise RuntimeError("the torchrun search failed")


def tests(ctx):
    code, out, err = ctx.run(ctx.python("-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"))
    tail = "\n".join(out.strip().splitlines()[-12:])
    yield f"`pytest -m cuda` exited {code}:\n\n```\n{tail or err}\n```"
    if code:
        raise RuntimeError("CUDA tests failed")


CHECKS = [
    Check("env", 30, "Environment", probe("env")),
    Check("steps", 150, "NAS-Bench-201 step and memory, ours and the authors' code (batch 64, fp32)", steps),
    Check("graph", 120, "--cuda_graph against eager steps", probe("graph")),
    Check("sync", 45, "Host-device synchronisations per step (set_sync_debug_mode)", probe("sync")),
    Check("tests", 100, "CUDA tests", tests),
    Check("searches", 200, "Searches end to end", search_rows),
    Check("amp", 60, "--amp and --tf32 on the DARTS-space network", probe("amp")),
    Check("concurrency", 150, "Concurrent NAS-Bench-201 searches on one GPU", concurrency),
    Check("loader", 60, "ImageNet search loader", loader),
    Check("nccl", 60, "torchrun with NCCL", nccl),
    Check("deterministic", 60, "--deterministic", probe("deterministic")),
]


def extrapolations(measured):
    """The full searches' GPU time from the steps measured (labelled as extrapolations)."""
    rows = []
    for code in ("ours", "authors"):
        step = measured.get(f"{code} k=1")
        if step:
            hours = 100 * CIFAR_HALF_STEPS * step / 3600
            rows.append((f"NAS-Bench-201, 100 epochs of CIFAR-10 at k=1 ({code})", f"{hours:.2f} GPU-hours", "-"))
    darts = measured.get("search DARTS space, 1 + 1 epochs, 1024 images", {}).get("epochs", [])
    if len(darts) == 2:
        seconds = sum(25 * CIFAR_HALF_STEPS * 64 / epoch["images_per_s"] for epoch in darts)
        rows.append(("DARTS space, CIFAR-10, 25 + 25 epochs (from 8-step epochs: an upper bound)",
                     f"{seconds / 86400:.2f} GPU-days", f"{PAPER_DARTS_GPU_DAYS} GPU-days (GTX 1080 Ti)"))
    if not rows:
        return "_nothing measured to extrapolate from_"
    return header("search", "this GPU (extrapolated)", "paper") + "\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows)
