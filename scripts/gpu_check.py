"""Check a GPU machine end to end before a long search, and write what was measured.

    python scripts/gpu_check.py REPORT.md            # about 8 minutes on one modern GPU
    python scripts/gpu_check.py REPORT.md --dry_run  # the commands it would run

Writes a Markdown report, one table per check: the environment (torch, CUDA, cuDNN, the
GPUs); the CUDA-only tests (`pytest -m cuda`); the NAS-Bench-201 step time and CUDA memory at
k = 1, 2, 4, 8 and in the progressive second stage beside the paper's GTX 1080 Ti figures, and
the option table (fp32 and --amp bfloat16); 20 search steps under
`torch.cuda.set_sync_debug_mode("error")` for DrNAS, DARTS, SNAS (none may wait for the GPU)
and GDAS (its one documented read per forward); a 1-epoch plain and a two-stage progressive
search with their results.json checked; the ImageNet search loader's images/s (nvJPEG against
PIL workers) on generated JPEGs; a torchrun search over every GPU with NCCL; and the full
searches' costs extrapolated from the measured steps. Without CUDA it says so in one line and
exits 0. Every check runs under its own time limit; a failed check is a row, not an abort.
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPER_MB = {"k=1": 2437, "k=2": 1583, "k=4": 1159, "k=8": 949, "progressive, stage 2 (k=2, 3 ops)": 949}
CIFAR_HALF_STEPS = 391  # 25,000 images at batch 64


def commands(work, gpus):
    """(check, command) of every check that runs a program."""
    py = [sys.executable]
    search = [*py, "201-space/train_search.py", "--dataset", "synthetic", "--device", "cuda", "--report_freq", "1000"]
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    return [
        ("tests", [*py, "-m", "pytest", "-q", "-m", "cuda", "tests"]),
        ("memory", [*py, "scripts/benchmark_search.py", "--space", "201", "--memory_table", "--device", "cuda"]),
        ("compare", [*py, "scripts/benchmark_search.py", "--space", "201", "--compare", "--device", "cuda"]),
        ("step", [*py, "scripts/benchmark_search.py", "--space", "201", "--device", "cuda", "--steps", "20"]),
        ("darts", [*py, "scripts/benchmark_search.py", "--space", "darts", "--memory_table", "--device", "cuda",
                   "--steps", "5", "--warmup", "2"]),
        ("plain search", [*search, "--epochs", "1", "--output_dir", str(work / "plain")]),
        ("progressive search", [*py, "201-space/train_search_progressive.py", "--dataset", "synthetic", "--device",
                                "cuda", "--train_epochs", "1", "1", "--arch_start_epoch", "0", "--report_freq", "1000",
                                "--output_dir", str(work / "progressive")]),
        ("loader", [*py, "scripts/benchmark_search.py", "--space", "imagenet", "--batch_size", "64", "--device",
                    "cuda", "--steps", "2", "--warmup", "1", "--loader_data", str(work / "jpegs"),
                    "--loader_batches", "20", "--workers", "4"]),
        ("torchrun", [torchrun, f"--nproc_per_node={gpus}", "--master_addr=127.0.0.1", "--master_port=29511",
                      "201-space/train_search.py", "--dataset", "synthetic", "--device", "cuda", "--epochs", "1",
                      "--report_freq", "1000", "--output_dir", str(work / "torchrun")]),
    ]


def run(command, timeout):
    """(ok, seconds, stdout, last line of stderr) of one command under a time limit."""
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, timeout, "", f"stopped after {timeout} s"
    tail = (done.stderr.strip().splitlines() or [""])[-1]
    return done.returncode == 0, time.perf_counter() - started, done.stdout, tail


def environment():
    import torch

    rows = [("torch", torch.__version__), ("CUDA", torch.version.cuda), ("cuDNN", torch.backends.cudnn.version())]
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        rows.append((f"GPU {index}", f"{props.name}, {props.total_memory / 2**30:.1f} GiB"))
    return table(["item", "value"], rows)


def sync_free(method, steps=20):
    """20 NAS-Bench-201 search steps of `method` on the GPU under set_sync_debug_mode("error"):
    None when nothing waited for the GPU, else what did."""
    import torch

    from common.architect import Architect
    from common.errors import one_line
    from common.search import search_step
    from common.spaces import SPACES

    model = SPACES["201"].build({"method": method}, num_classes=10, k=1).cuda()
    architect = Architect(model, lr=3e-4)
    optimizer = torch.optim.SGD(model.weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    batch = (torch.randn(64, 3, 32, 32, device="cuda"), torch.randint(0, 10, (64,), device="cuda"))
    search_step(model, architect, optimizer, batch, batch, update_arch=True, grad_clip=5.0)  # lazy set-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(steps):
            search_step(model, architect, optimizer, batch, batch, update_arch=True, grad_clip=5.0)
        return None
    except RuntimeError as err:
        return one_line(err)[:160]
    finally:
        torch.cuda.set_sync_debug_mode(0)


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def step_seconds(stdout):
    try:
        return json.loads(stdout)["median_step_s"]
    except (ValueError, KeyError):
        return None


def extrapolated(outputs):
    """The full searches' GPU time from the measured steps (labelled as extrapolations)."""
    rows = []
    step = step_seconds(outputs.get("step", ""))
    if step:
        hours = 100 * CIFAR_HALF_STEPS * step / 3600
        rows.append(("NAS-Bench-201 search, 100 epochs of CIFAR-10 (k=1)", f"{hours:.1f} GPU-hours (extrapolated)", "-"))
    medians = [float(line.split("|")[2]) for line in outputs.get("darts", "").splitlines()
               if line.startswith("| stage")]
    if len(medians) == 2:
        days = 25 * CIFAR_HALF_STEPS * sum(medians) / 86400
        rows.append(("DARTS-space CIFAR-10 search, 25 + 25 epochs", f"{days:.2f} GPU-days (extrapolated)",
                     "0.6 GPU-days (GTX 1080 Ti)"))
    return table(["search", "this GPU", "paper"], rows)


def write_jpegs(root, classes=4, per_class=64):
    """The loader check's data: noise JPEGs of 500 x 375 in train/ and val/ class folders."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.JPEG", quality=90)


def results_complete(folder):
    """Whether a search's results.json says finished and holds what every search records."""
    try:
        record = json.loads((Path(folder) / "results.json").read_text())
    except (OSError, ValueError):
        return False
    needed = ("args", "versions", "space", "op_names", "edge_labels", "genotype", "epochs", "peak_memory_mb")
    return record.get("finished") is True and all(key in record for key in needed)


def check_rows(results, work):
    """One row per command: passed or failed, its time, what it says."""
    rows = []
    for name, (ok, seconds, stdout, tail) in results.items():
        if name in ("plain search", "progressive search") and ok:
            ok = results_complete(work / name.split()[0])
            tail = "results.json complete" if ok else "results.json incomplete"
        rows.append((name, "passed" if ok else "FAILED", f"{seconds:.0f} s", tail.replace("|", "/")[:120]))
    return table(["check", "result", "time", "last line"], rows)


def report(results, work):
    outputs = {name: out for name, (_, _, out, _) in results.items()}
    sync = [(method, "no host-device synchronisation" if found is None else f"waits: {found}")
            for method, found in ((m, sync_free(m)) for m in ("dirichlet", "darts", "snas", "gdas"))]
    loader = json.loads(outputs["loader"]).get("loader_images_per_s", {}) if results["loader"][0] else {}
    parts = ["# GPU check", time.strftime("%Y-%m-%d %H:%M"), "## Environment", environment(),
             "## Checks", check_rows(results, work),
             "## NAS-Bench-201 step time and CUDA memory (batch 64)", outputs.get("memory", ""),
             "## Option sets", outputs.get("compare", ""),
             "## Sync-free steps (20 steps under set_sync_debug_mode('error'); GDAS reads its sampled ops "
             "once per forward, documented)", table(["method", "result"], sync),
             "## ImageNet search loader (batch 64, 4 workers, 500 x 375 JPEGs)",
             table(["backend", "images/s"], [(k, f"{v:.0f}") for k, v in loader.items()]),
             "## Extrapolated search costs", extrapolated(outputs)]
    return "\n\n".join(parts) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", help="the Markdown report to write")
    p.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--timeout", type=int, default=150, help="seconds each command may take")
    args = p.parse_args(argv)
    import torch

    if args.dry_run:
        for name, command in commands(Path(tempfile.gettempdir()) / "drnas-gpu-check", max(torch.cuda.device_count(), 1)):
            print(f"{name}: {' '.join(command)}")
        return 0
    if not torch.cuda.is_available():
        print("no CUDA GPU on this machine: nothing to check (run this on the GPU machine)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="drnas-gpu-check-"))
    try:
        write_jpegs(work / "jpegs")
        results = {name: run(command, args.timeout) for name, command in commands(work, torch.cuda.device_count())}
        Path(args.report).write_text(report(results, work))
        print(f"wrote {args.report}")
        return 0 if all(ok for ok, *_ in results.values()) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
