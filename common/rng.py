"""The global random streams a computation draws from, saved and replayed.

The search's mixing weights (Dirichlet, Gumbel) and its diagnostics draw from PyTorch's
global generators: the CPU one and, on a GPU, that device's. `capture` and `replay` let two
passes draw the same numbers (the second-order step's two finite-difference passes); `forked`
lets a diagnostic draw without moving the search's own stream.
"""
import contextlib

import torch


def _accelerator(device):
    device = torch.device(device)
    return device if device.type == "cuda" else None


def capture(device):
    """The state of the CPU generator and of `device`'s (when it is a GPU)."""
    gpu = _accelerator(device)
    return torch.get_rng_state(), (None if gpu is None else torch.cuda.get_rng_state(gpu)), gpu


def replay(state):
    """Put the generators back to a `capture`d state: the next draws repeat."""
    cpu, gpu_state, gpu = state
    torch.set_rng_state(cpu)
    if gpu is not None:
        torch.cuda.set_rng_state(gpu_state, gpu)


@contextlib.contextmanager
def forked(device):
    """Within, draws do not move the global streams of the CPU and of `device`."""
    gpu = _accelerator(device)
    with torch.random.fork_rng(devices=[] if gpu is None else [gpu]):
        yield
