"""Data-parallel training across processes started by torchrun (DistributedDataParallel).

    torchrun --nproc_per_node=2 DARTS-space/train.py ...   # same flags as a single process

`init_distributed` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); without it
(or with WORLD_SIZE 1) the run is a single process and nothing changes. The loaders shard
themselves over the ranks (common/data/device_loader.py, common/data/imagenet_loader.py): `--batch_size`
stays the global batch.

The search (common/nas/search.py) runs the same way: its weight step goes through DDP, its
architecture gradients are averaged over the ranks (`average_gradients`) before every Adam
step, so every rank holds the same alpha, prunes and widens identically, and only rank 0
logs and checkpoints.

Set DRNAS_CHECK_SYNC=1 to compare every rank's parameters after each optimizer step (an
all-gather of the flattened parameters; for tests and debugging, it costs a copy per step).
"""
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as torch_dist

from common.errors import UserError
from common.device import resolve_device

CHECK_SYNC_ENV = "DRNAS_CHECK_SYNC"
# How long the other ranks wait, on the CPU, for rank 0's own work at an epoch's end
# (diagnostics, benchmark queries, checkpoint): far past NCCL's 10-minute watchdog.
MAIN_WORK_TIMEOUT = timedelta(hours=12)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    cpu_group: object = None  # gloo, for host-side collectives and waits (None: one process)

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1

    def all_reduce_max_cpu(self, tensor):
        """Max of a CPU tensor over the ranks, in place, without touching the GPU."""
        if self.distributed:
            torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX, group=self.cpu_group)
        return tensor

    def all_reduce_sum(self, tensor):
        """Sum `tensor` over the ranks, in place; returns it."""
        if self.distributed:
            torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
        return tensor

    def all_gather_objects(self, obj):
        """[obj of rank 0, obj of rank 1, ...] on every rank ([obj] in one process)."""
        if not self.distributed:
            return [obj]
        gathered = [None] * self.world_size
        torch_dist.all_gather_object(gathered, obj)
        return gathered

    def barrier(self):
        if self.distributed:
            torch_dist.barrier()

    def wait_for_main(self):
        """Every rank waits here, in a gloo barrier on the CPU, while rank 0 does its own work
        (the sharpness and exploration diagnostics, benchmark queries, the checkpoint). Waiting
        in the next NCCL collective instead would let NCCL's watchdog kill the job after 10
        minutes of a long diagnostic."""
        if self.distributed:
            torch_dist.barrier(group=self.cpu_group)

    def close(self):
        if self.distributed and torch_dist.is_initialized():
            torch_dist.destroy_process_group()

    def check_sync(self, module):
        """Raise if the ranks' parameters differ (called after a step when DRNAS_CHECK_SYNC=1)."""
        if not self.distributed:
            return
        flat = torch.cat([p.detach().reshape(-1).float() for p in module.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(self.world_size)]
        torch_dist.all_gather(gathered, flat)
        for rank, other in enumerate(gathered):
            if not torch.equal(other, gathered[0]):
                diff = (other - gathered[0]).abs().max().item()
                raise RuntimeError(f"parameters of rank {rank} differ from rank 0's (max |diff| {diff:.3e})")


ONE_PROCESS = Dist()  # a run in one process: what every `dist` parameter defaults to


def average_gradients(grads, dist):
    """Average a list of gradient tensors over the ranks, in place, in one all-reduce."""
    if not dist.distributed or not grads:
        return grads
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch_dist.all_reduce(flat, op=torch_dist.ReduceOp.SUM)
    flat /= dist.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
    return grads


def wrap_ddp(module, dist, *, find_unused_parameters=False, ignore=()):
    """`module` inside DistributedDataParallel when `dist` is distributed (else `module`).

    `ignore`: names of parameters DDP must leave alone (the search's architecture
    parameters, whose gradients the architect averages itself)."""
    if not dist.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    if ignore:
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, list(ignore))
    device_ids = [dist.device] if dist.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=find_unused_parameters)


def distributed_main(run_fn, args):
    """Run `run_fn(args, dist)` as one rank of a torchrun job (or alone), tearing down cleanly."""
    dist = init_distributed(args.device)
    try:
        results = run_fn(args, dist)
        dist.barrier()  # no rank tears the process group down while another still writes or talks
        return results
    finally:
        dist.close()


def check_sync_enabled():
    return os.environ.get(CHECK_SYNC_ENV, "") not in ("", "0")


def init_distributed(device_arg="auto"):
    """A Dist from torchrun's environment; a single-process Dist without one."""
    world_size = _env_int("WORLD_SIZE", "1")
    if world_size <= 1:
        return Dist(device=resolve_device(device_arg))
    if "RANK" not in os.environ:
        raise UserError(f"WORLD_SIZE={world_size} is set but RANK is not: start the run with torchrun, or unset "
                        "WORLD_SIZE (a value left from another job) for one process")
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK", "0")
    if not 0 <= rank < world_size:
        raise UserError(f"RANK={rank} does not lie in 0..{world_size - 1} (WORLD_SIZE={world_size}): start the "
                        "run with torchrun, or unset both for one process")
    if not os.environ.get("MASTER_ADDR") or not 1 <= _env_int("MASTER_PORT", "0") <= 65535:
        raise UserError(f"WORLD_SIZE={world_size} needs MASTER_ADDR and MASTER_PORT (a port, 1 to 65535) in the "
                        "environment: start the run with torchrun, which sets them")
    device = resolve_device(device_arg)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise UserError(f"distributed training runs on CUDA or CPU, not on --device {device_arg}")
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    torch_dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)
    cpu_group = torch_dist.new_group(backend="gloo", timeout=MAIN_WORK_TIMEOUT)
    return Dist(rank, world_size, local_rank, device, cpu_group)


def _env_int(name, default=None):
    """A whole number from torchrun's environment; one line when it is not one."""
    text = os.environ.get(name, default)
    try:
        return int(text)
    except (TypeError, ValueError):
        raise UserError(f"{name}={text!r} in the environment is not a whole number: start the run with torchrun, "
                        f"or unset {name} for one process") from None


def global_to_local_batch(batch_size, dist):
    if batch_size % dist.world_size:
        raise UserError(f"--batch_size {batch_size} (the global batch) does not divide among "
                        f"{dist.world_size} processes: use a multiple of {dist.world_size}")
    return batch_size // dist.world_size
