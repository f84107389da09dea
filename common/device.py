"""The device a run computes on: choosing it, seeding it, its numerics (TF32, deterministic
kernels), bfloat16 autocast, and its memory in the three figures a GPU gives."""
import os
import random
import resource

import numpy as np
import torch

from common.errors import UserError

DEVICE_TYPES = ("cpu", "cuda")


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # all devices


def resolve_device(name):
    """`auto` picks CUDA when present; an unknown or unavailable device is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type not in DEVICE_TYPES:
        raise UserError(f"--device {name} is not supported: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for, but no CUDA GPU is available: use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: there are {torch.cuda.device_count()} GPUs (cuda:0 to "
                        f"cuda:{torch.cuda.device_count() - 1})")
    return device


def autocast(device, amp):
    """bfloat16 autocast when `amp` (no loss scaling needed: bfloat16 has fp32's range)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp)


def check_amp(device):
    """--amp needs bfloat16 on the device: one line otherwise."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(f"--amp uses bfloat16, which {torch.cuda.get_device_name(device)} does not "
                        "support: run without --amp")


def configure_backends(device, *, deterministic=False, tf32=False):
    """The numerics of a run, the same for every script and benchmark: cuDNN autotuning on a GPU
    (off with `deterministic`), TF32 for convolutions and matrix products only when asked (IEEE
    fp32 by default: the authors' GPU had no TF32), and with `deterministic` PyTorch's
    deterministic kernels (a warning where an op has none). Returns the settings as recorded."""
    if deterministic:
        # cuBLAS needs a fixed workspace for reproducible results; read when it first starts
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    return {"tf32": tf32, "deterministic": deterministic, "cudnn_benchmark": torch.backends.cudnn.benchmark}


def reset_peak_memory(device):
    """Start a new peak (a new stage of a search); the CPU's peak RSS cannot be reset."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def memory_mb(device):
    """The peak memory figures of `device` in MiB. On a GPU: `allocated`, what tensors held
    (max_memory_allocated); `reserved`, what the caching allocator held from the driver
    (max_memory_reserved); `device_used`, the GPU's use as nvidia-smi shows it, the CUDA
    context included: what lies outside the allocator now (total minus free minus reserved)
    plus the allocator's peak. (cuDNN's autotuning empties the allocator's cache now and then,
    so the use at one moment can be far under the peak.) On a CPU: `rss`, the process's peak
    resident set size."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        outside = total - free - torch.cuda.memory_reserved(device)
        peak_reserved = torch.cuda.max_memory_reserved(device)
        return {"allocated": torch.cuda.max_memory_allocated(device) / 2**20, "reserved": peak_reserved / 2**20,
                "device_used": (outside + peak_reserved) / 2**20}
    return {"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # KiB on Linux


def peak_memory_mb(device):
    """CUDA max allocated on a GPU, peak resident set size of the process on a CPU."""
    figures = memory_mb(device)
    return figures["allocated"] if device.type == "cuda" else figures["rss"]


MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
