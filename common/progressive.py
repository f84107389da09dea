"""Progressive learning (paper section 2.3): prune every edge, then widen every op.

At the end of a stage each edge keeps its `num_keep` strongest ops (by alpha); the modules
of the others are freed and never run again. Then every kept op is widened from `C/k_old`
to `C/k_new` channels by copying randomly chosen channels (net2wider, paper eq. 7-8), and
the SGD momentum buffers follow the same copies. The weight optimizer keeps its identity
(its param list is re-pointed), so the cosine schedule simply continues.

A model takes part by exposing `arch_weights()` ({cell type: ArchWeights}) and
`edge_ops()` (yielding (cell type, edge index, MixedOp) for every edge of every cell).
"""
import collections

from common.mixed_op import channel_map


def apply_masks(model):
    """Free the modules of every op pruned on its edge (after pruning, or on resume)."""
    arch = model.arch_weights()
    for cell_type, edge, op in model.edge_ops():
        op.drop(arch[cell_type].kept[edge])


def prune(model, num_keep):
    for arch in model.arch_weights().values():
        arch.prune(num_keep)
    apply_masks(model)


def widen(model, k_new):
    """Widen every kept op to `channels // k_new`; returns {old param: (new param, widen fn)}."""
    arch = model.arch_weights()
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
    for param in model.weights():
        old_state = optimizer.state.get(origin.get(param, param))
        if not old_state:
            continue
        fn = transform.get(param)
        state[param] = {key: fn(value) if fn is not None and getattr(value, "shape", None) not in (None, ())
                        else value for key, value in old_state.items()}
    (group,) = optimizer.param_groups
    group["params"] = model.weights()
    optimizer.state = state


def prune_and_widen(model, optimizer, num_keep, k_new):
    """The transition between two stages: prune to `num_keep` ops, widen to `k_new`."""
    prune(model, num_keep)
    follow(optimizer, model, widen(model, k_new))
