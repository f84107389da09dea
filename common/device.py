"""The device a run computes on: choosing it, seeding it, bfloat16 autocast, peak memory."""
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


def peak_memory_mb(device):
    """CUDA max allocated on a GPU, peak resident set size of the process on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
