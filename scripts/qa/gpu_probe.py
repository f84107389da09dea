"""The in-process measurements of scripts/qa/gpu_check.py, one Markdown section each.

    python scripts/qa/gpu_probe.py env|sync|graph|amp|deterministic [--device cuda]

env            the machine: torch, CUDA, cuDNN, the GPU, its driver
sync           host-device synchronisations per search step, per method, under
               torch.cuda.set_sync_debug_mode("warn") (GDAS: its one documented read per forward)
graph          the NAS-Bench-201 step eager against --cuda_graph (k 1 and 4, batch 64 and 256):
               median step, and alpha after 20 steps of each from the same start
amp            the DARTS-space search network (stage 1, k 6): fp32, TF32, bfloat16 autocast
deterministic  two 10-step runs with --deterministic, and two without: is alpha the same?

Every section but env also runs on a CPU (`--device cpu --tiny`: small networks, for the
tests), where the GPU-only columns say so.
"""
import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # common/, when this checkout is not installed

from common.nas.architect import Architect  # noqa: E402
from common.nas.cuda_graph import StepGraph  # noqa: E402
from common.device import configure_backends, memory_mb, reset_peak_memory  # noqa: E402
from common.nas.search import search_step  # noqa: E402
from common.spaces import SPACES  # noqa: E402


NETWORKS = {"201": {}, "darts": {}}  # the spaces' own defaults; --tiny: small ones
TINY = {"201": {"init_channels": 8, "num_cells": 1}, "darts": {"init_channels": 12, "layers": 5}}


def header(*names):
    """The first two lines of a Markdown table."""
    return "| " + " | ".join(names) + " |\n|" + " --- |" * len(names)


def row(*cells):
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Search:
    """A supernet, its architect and SGD, and random batches on the device, seeded."""

    def __init__(self, device, space="201", method="dirichlet", k=1, batch_size=64, graph=False, seed=0):
        torch.manual_seed(seed)
        entry = SPACES[space]
        self.device, self.graph = device, StepGraph() if graph else None
        flags = entry.network_flags({"method": method, **NETWORKS[space]})
        self.model = entry.build(flags, num_classes=entry.num_classes, k=k)
        self.model = self.model.to(device, memory_format=torch.channels_last)
        self.architect = Architect(self.model, lr=3e-4, reg_scale=1e-3, capturable=graph)
        self.optimizer = torch.optim.SGD(self.model.weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
        g = torch.Generator().manual_seed(seed)
        self.batches = [(torch.randn(batch_size, *entry.input_shape, generator=g).to(device).contiguous(
            memory_format=torch.channels_last), torch.randint(0, entry.num_classes, (batch_size,), generator=g).to(device))
            for _ in range(4)]

    def step(self, index, amp=False):
        tensors = (*self.batches[index % 4], *self.batches[(index + 1) % 4])

        def eager(x, y, arch_x, arch_y):
            return search_step(self.model, self.architect, self.optimizer, (x, y), (arch_x, arch_y),
                               update_arch=True, grad_clip=5.0, amp=amp)

        return eager(*tensors) if self.graph is None else self.graph(0.025, tensors, eager)

    def median_step(self, steps=20, warmup=5, amp=False):
        times = []
        for index in range(warmup + steps):
            synchronize(self.device)
            started = time.perf_counter()
            self.step(index, amp)
            synchronize(self.device)
            if index >= warmup:
                times.append(time.perf_counter() - started)
        return statistics.median(times)

    def alpha(self):
        return torch.cat([a.detach().flatten() for a in self.model.arch_parameters()])


def env(device):
    import platform
    import subprocess

    yield header("item", "value")
    for name, value in (("python", platform.python_version()), ("torch", torch.__version__),
                        ("CUDA", torch.version.cuda), ("cuDNN", torch.backends.cudnn.version()),
                        ("CPU cores", len(__import__("os").sched_getaffinity(0)))):
        yield row(name, value)
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        yield row(f"GPU {index}", f"{props.name}, {props.total_memory / 2**30:.1f} GiB, "
                                  f"{props.multi_processor_count} SMs, compute {props.major}.{props.minor}")
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        yield row("driver, max SM clock, power limit", smi.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        yield row("nvidia-smi", "not found")


def sync(device):
    """Host-device synchronisations per step: each one is a warning under "warn" mode."""
    yield header("method", "synchronisations per step", "expected")
    for method in ("dirichlet", "darts", "snas", "gdas", "pcdarts"):
        search = Search(device, method=method, k=4 if method == "pcdarts" else 1)
        search.step(0)  # lazy set-up (cuDNN autotuning, optimizer state)
        synchronize(device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("warn")
            try:
                for index in range(1, 6):
                    search.step(index)
            finally:
                if device.type == "cuda":
                    torch.cuda.set_sync_debug_mode(0)
        count = sum("synchroniz" in str(w.message) for w in caught) / 5
        expected = "2 (one host read of the sampled ops per forward)" if method == "gdas" else "0"
        yield row(method, f"{count:g}" if device.type == "cuda" else "(CPU: not measured)", expected)


def graph(device):
    """Eager against --cuda_graph: speed at k 1 and 4, batch 64 and 256; equality after 20 steps."""
    if device.type != "cuda":
        yield "(CUDA graphs need a GPU)"
        return
    configure_backends(device)
    yield header("configuration", "eager step (ms)", "graph step (ms)", "speed-up", "max |alpha eager - alpha graph|",
                 "captures")
    for space, k, batch in (("201", 1, 64), ("201", 4, 64), ("201", 1, 256), ("darts", 6, 64)):
        try:
            yield row(*graph_row(device, space, k, batch))
        except Exception as err:  # a failed capture is a row, not the end of the table
            yield row(f"{space}, k={k}, batch {batch}", "FAILED", " ".join(str(err).split())[:200], "", "", "")


def graph_row(device, space, k, batch):
    shared = dict(space=space, k=k, batch_size=batch)
    steps = 20 if space == "201" else 8
    eager_s = Search(device, **shared).median_step(steps=steps, warmup=5)
    graphed = Search(device, graph=True, **shared)
    graph_s = graphed.median_step(steps=steps, warmup=5)
    first, second = Search(device, **shared), Search(device, graph=True, **shared)
    for index in range(steps):
        first.step(index)
        second.step(index)
    diff = (first.alpha() - second.alpha()).abs().max().item()
    scale = first.alpha().abs().max().item()
    return (f"{space}, k={k}, batch {batch}", f"{eager_s * 1e3:.2f}", f"{graph_s * 1e3:.2f}",
            f"{eager_s / graph_s:.2f}x", f"{diff:.2e} (of {scale:.2e}, {steps} steps)", graphed.graph.captures)


def amp(device):
    """The DARTS-space search network's step in fp32, TF32 and bfloat16 autocast."""
    yield header("DARTS space, stage 1 (k=6), batch 64", "median step (ms)", "images/s", "max allocated (MiB)")
    for label, tf32, use_amp in (("fp32 (default)", False, False), ("--tf32", True, False), ("--amp (bfloat16)", False, True)):
        configure_backends(device, tf32=tf32)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        reset_peak_memory(device)
        search = Search(device, space="darts", k=6, batch_size=64)
        step_s = search.median_step(steps=10, warmup=3, amp=use_amp)
        memory = memory_mb(device)
        yield row(label, f"{step_s * 1e3:.1f}", f"{64 / step_s:.0f}", f"{memory.get('allocated', memory.get('rss')):.0f}")
        del search
    configure_backends(device)


def deterministic(device):
    """Alpha after 10 steps, twice, with and without deterministic kernels."""
    yield header("setting", "alpha after 10 steps, two runs")
    for flag in (True, False):
        configure_backends(device, deterministic=flag)
        alphas = []
        for _ in range(2):
            search = Search(device, k=1)
            for index in range(10):
                search.step(index)
            alphas.append(search.alpha())
        same = torch.equal(alphas[0], alphas[1])
        yield row("--deterministic" if flag else "default (cuDNN autotuning)", "identical" if same else
                  f"differ by up to {(alphas[0] - alphas[1]).abs().max().item():.2e}")
    configure_backends(device)


SECTIONS = {"env": env, "sync": sync, "graph": graph, "amp": amp, "deterministic": deterministic}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("section", choices=sorted(SECTIONS))
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="small networks (a CPU test)")
    args = p.parse_args(argv)
    if args.tiny:
        NETWORKS.update(TINY)
    device = torch.device(args.device)
    for line in SECTIONS[args.section](device):  # each row as soon as it is measured
        print(line, flush=True)


if __name__ == "__main__":
    main()
