"""Four small fixed-seed runs whose outputs must not change when the code is reorganised.

    python tests/golden_runs.py --record     # writes tests/data/golden.json (after a change of results only)

Each run reads a CIFAR-10-format set generated here from a fixed seed (random pixels: the
numbers, not the learning, are what is pinned), on the CPU with one thread, in float64 (the
default dtype while it runs: weights, batches and losses), where another CPU's kernels move the
results by rounding only (tests/test_golden.py derives its tolerance from that). The outputs
kept are every epoch's alpha, losses and genotype, and the keys of results.json and of its
epoch records; tests/test_golden.py compares a fresh run against the recorded file.
"""
import json
import pickle
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import common  # noqa: F401  first: space201 and darts_space are then this checkout's folders

GOLDEN = Path(__file__).resolve().parent / "data" / "golden.json"
COMMON = ["--dataset", "cifar10", "--device", "cpu", "--report_freq", "1000"]
RUNS = {  # name: (module, flags)
    "201_plain": ("space201.train_search",
                  ["--data_limit", "192", "--batch_size", "32", "--epochs", "2", "--init_channels", "8",
                   "--num_cells", "1"]),
    "201_progressive": ("space201.train_search_progressive",
                        ["--data_limit", "192", "--batch_size", "32", "--init_channels", "8", "--num_cells", "1",
                         "--train_epochs", "1", "1", "--arch_start_epoch", "0"]),
    "darts_progressive": ("darts_space.train_search",
                          ["--data_limit", "48", "--batch_size", "16", "--init_channels", "8", "--layers", "3",
                           "--ks", "2", "1", "--num_keeps", "4", "2", "--train_epochs", "1", "1",
                           "--arch_start_epoch", "0"]),
    "darts_train": ("darts_space.train",
                    ["--data_limit", "64", "--batch_size", "32", "--epochs", "1", "--init_channels", "8",
                     "--layers", "3", "--auxiliary", "--cutout", "--drop_path_prob", "0.2"]),
}
EPOCH_VALUES = ("train_loss", "train_acc", "valid_loss", "test_loss", "lr", "genotype")
DTYPE = torch.float64


def machine():
    """The CPU model and a digest of its feature flags: float kernels (and so the last bits of
    every result) are chosen by them."""
    import hashlib

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields = {key.strip(): value.strip() for key, value in
              (line.split(":", 1) for line in info.splitlines() if ":" in line)}
    flags, model = fields.get("flags", ""), fields.get("model name", "")
    return f"{model} / flags {hashlib.sha256(flags.encode()).hexdigest()[:12]}"


def write_cifar10(root, seed=0):
    """A CIFAR-10 folder (5 training batches of 40 images, a test batch of 40) of random pixels."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (40, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, 40).tolist()}
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)
    return Path(root)


def outputs(out_dir):
    """What is pinned of one run: per-epoch alpha, losses, lr and genotype, and the keys."""
    results = json.loads((Path(out_dir) / "results.json").read_text())
    epochs = results["epochs"]
    return {
        "epochs": [{key: epoch[key] for key in EPOCH_VALUES if key in epoch} for epoch in epochs],
        "alpha": [{cell: summary["alpha"] for cell, summary in epoch["arch"].items()} for epoch in epochs
                  if "arch" in epoch],
        "keys": sorted(results),
        "epoch_keys": sorted(epochs[0]),
    }


def run(name, data, out_dir, threads=1):
    """One run in float64 on `threads` threads (another count sums in another order)."""
    import importlib

    module, flags = RUNS[name]
    saved = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(threads)
    torch.set_default_dtype(DTYPE)
    try:
        importlib.import_module(module).main([*COMMON, *flags, "--data", str(data), "--output_dir", str(out_dir)])
    finally:
        torch.set_num_threads(saved[0])
        torch.set_default_dtype(saved[1])
    return outputs(out_dir)


def record():
    with tempfile.TemporaryDirectory() as tmp:
        data = write_cifar10(Path(tmp) / "data")
        golden = {"machine": machine(), "torch": str(torch.__version__), "dtype": str(DTYPE),
                  "runs": {name: run(name, data, Path(tmp) / name) for name in RUNS}}
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/golden_runs.py --record")
    record()
