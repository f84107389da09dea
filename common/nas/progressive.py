"""Progressive learning (paper section 2.3): the search runs in stages; between two stages
every edge is pruned to its strongest ops, then every op is widened.

At the end of a stage each edge keeps its `num_keep` strongest ops (by alpha); the modules
of the others are freed and never run again. Then every kept op is widened from `C/k_old`
to `C/k_new` channels by copying randomly chosen channels (net2wider, paper eq. 7-8), and
the SGD momentum buffers follow the same copies. The weight optimizer keeps its identity
(its param list is re-pointed); the learning rate of the new stage is the schedule's
(common/run/schedule.py).

A network takes part through the search-space contract (common/nas/network.py):
`arch_distributions()` and `edge_ops()`.
"""
import collections
from dataclasses import dataclass
from typing import Optional

import torch

from common.nas.mixed_op import channel_map


@dataclass(frozen=True)
class Stage:
    epochs: int
    k: int = 1  # partial-channel parameter during this stage
    num_keep: Optional[int] = None  # ops kept per edge from this stage on (None: all)
    arch_start: int = 0  # first epoch *within this stage* with architecture updates (the
    # authors count the warm-up per stage, kept on purpose)


def stage_of(stages, epoch):
    """(stage index, epoch within the stage) of a global epoch index."""
    for index, stage in enumerate(stages):
        if epoch < stage.epochs:
            return index, epoch
        epoch -= stage.epochs
    raise ValueError("epoch beyond the last stage")


def masks(model):
    """{cell type: kept op indices per edge}: plain lists, for checkpoints and digests."""
    return {name: arch.kept for name, arch in model.arch_distributions().items()}


def load_masks(model, saved):
    """Restore the kept ops (from a checkpoint) and free the modules of the pruned ones."""
    for name, arch in model.arch_distributions().items():
        arch.set_kept(saved[name])
    apply_masks(model)


def apply_masks(model):
    """Free the modules of every op pruned on its edge (after pruning, or on resume)."""
    arch = model.arch_distributions()
    for cell_type, edge, op in model.edge_ops():
        op.drop(arch[cell_type].kept[edge])


def prune(model, num_keep):
    for arch in model.arch_distributions().values():
        arch.prune(num_keep)
    apply_masks(model)


def widen(model, k_new):
    """Widen every kept op to `channels // k_new`; returns {old param: (new param, widen fn)}."""
    arch = model.arch_distributions()
    device = next(iter(arch.values())).alpha.device
    moved = {}
    for cell_type, edge, op in model.edge_ops():
        if k_new == op.k:
            continue
        old_width, new_width = op.channels // op.k, op.channels // k_new
        if new_width < old_width or op.channels % k_new:
            raise ValueError(f"cannot widen an edge of {op.channels} channels from k={op.k} to k={k_new}")
        moved.update(op.widen(k_new, arch[cell_type].kept[edge], channel_map(old_width, new_width, device)))
    return moved


def follow(optimizer, model, moved=None):
    """Point a one-group optimizer at the model's current weights; per-parameter state
    (momentum buffers) of widened weights is widened the same way, that of freed weights dropped."""
    moved = moved or {}
    origin = {new: old for old, (new, _) in moved.items()}
    transform = {new: fn for new, fn in moved.values()}
    state = collections.defaultdict(dict)
    for param in model.weight_parameters():
        old_state = optimizer.state.get(origin.get(param, param))
        if not old_state:
            continue
        fn = transform.get(param)
        state[param] = {key: fn(value) if fn is not None and getattr(value, "shape", None) not in (None, ())
                        else value for key, value in old_state.items()}
    (group,) = optimizer.param_groups
    group["params"] = model.weight_parameters()
    optimizer.state = state


def prune_and_widen(model, optimizer, num_keep, k_new):
    """The transition between two stages: prune to `num_keep` ops, widen to `k_new`."""
    prune(model, num_keep)
    follow(optimizer, model, widen(model, k_new))


def enter_stage(model, optimizer, stage, *, memory_format, shared_seed=None):
    """Prune and widen into `stage`, and put the widened ops (built contiguous) back into the
    model's memory format. Under torchrun `shared_seed`, the same on every rank, draws the
    channel maps, so every rank widens alike; the rank's own RNG stream is left as it was."""
    with torch.random.fork_rng(devices=[], enabled=shared_seed is not None):
        if shared_seed is not None:
            torch.manual_seed(shared_seed)
        prune_and_widen(model, optimizer, stage.num_keep, stage.k)
    model.to(memory_format=memory_format)


def stage_lines(model, stage_number, stage):
    """The log lines of entering a stage, as the authors logged it: the ops left on every edge
    and the new k."""
    names = model.op_names
    lines = [f"stage {stage_number}: pruned to {stage.num_keep} ops per edge, widened to k {stage.k} "
             f"(the ops see C/{stage.k} channels); the ops left:"]
    labels = model.edge_labels()
    for cell_type, arch in model.arch_distributions().items():
        for label, kept in zip(labels[cell_type], arch.kept):
            lines.append(f"  {cell_type} {label}: {' '.join(names[o] for o in kept)}")
    return lines


def arch_warnings(stages, arch_start_epoch):
    """Warning lines for the stages in which --arch_start_epoch leaves alpha untouched; one
    line, the strongest, when that is every stage."""
    idle = [index for index, stage in enumerate(stages) if stage.arch_start >= stage.epochs]
    if not idle:
        return []
    lengths = ", ".join(str(stage.epochs) for stage in stages)
    if len(idle) == len(stages):
        return [f"warning: --arch_start_epoch {arch_start_epoch} is not before the last epoch of any stage "
                f"(epochs per stage: {lengths}): alpha will never be updated, and the architecture found will be "
                f"the one its initial values give: lower --arch_start_epoch or raise the epochs"]
    return [f"warning: stage {index + 1} has {stages[index].epochs} epochs, not more than --arch_start_epoch "
            f"{arch_start_epoch}: alpha is not updated in it" for index in idle]
