"""Widening (progressive learning) where the authors' code decides: FactorizedReduce keeps each
filter in its pixel phase, every tensor keeps its dtype and device, and with partial channels
the widened network is a new function in both codes (an initialisation)."""
import functools

import pytest
import torch

from authors_code import needs_authors, run_authors
from common.nas.architect import Architect
from common.nas.mixed_op import MixedOp, channel_map
from common.nas.progressive import Stage, enter_stage
from common.nas.search import search_step
from darts_space.model_search import Network as DartsNetwork
from darts_space.operations import search_op
from space201.model_search import Network as Network201


# --- FactorizedReduce ------------------------------------------------------------------------------
def reduce_edge(seed=0):
    """A reduction cell's edge holding skip_connect alone (FactorizedReduce) on 8 channels at k 2,
    with running statistics of its own."""
    torch.manual_seed(seed)
    edge = MixedOp(["skip_connect"], functools.partial(search_op, stride=2), 8, 2, bypass=torch.nn.MaxPool2d(2, 2))
    op = edge.ops[0]
    with torch.no_grad():
        op.bn.running_mean.normal_()
        op.bn.running_var.uniform_(0.5, 2.0)
    return edge, op


def source_rows(old_weight, new_weight, source_channel):
    """For every output channel of the widened conv, the old channel whose filter it holds."""
    old = old_weight[:, :, 0, 0][:, source_channel]  # old rows read through the input map
    return [next(r for r in range(old.shape[0]) if torch.equal(new_weight[row, :, 0, 0], old[r]))
            for row in range(new_weight.shape[0])]


def test_factorized_reduce_widens_each_pixel_phase_apart():
    edge, op = reduce_edge()
    old_weight, old_mean = op.conv.weight.detach().clone(), op.bn.running_mean.clone()
    x = torch.randn(3, 4, 6, 6)
    op.eval()
    old_out = op(x)
    g = channel_map(4, 8)
    edge.widen(1, [0], g)
    new = edge.ops[0]
    rows = source_rows(old_weight, new.conv.weight.detach(), g)
    # group 0 (channels 0-3) reads the even phase, group 1 (4-7) the odd one: each filter stays in
    # its phase (old 0-1 even, 2-3 odd), the old ones in place, as the authors' conv_1 and conv_2
    assert all(r < 2 for r in rows[:4]) and all(r >= 2 for r in rows[4:])
    assert rows[:2] == [0, 1] and rows[4:6] == [2, 3]
    assert torch.equal(new.bn.running_mean, old_mean[rows])  # the statistics follow their filters
    new.eval()
    out = new(torch.cat([x, torch.zeros_like(x)], dim=1))  # the newly active channels silent
    torch.testing.assert_close(out[:, [0, 1, 4, 5]], old_out, rtol=0, atol=0)


@needs_authors
def test_the_authors_factorized_reduce_keeps_the_phases_too():
    """Their FactorizedReduce widened from 4 to 8 channels: the old filters of each phase keep
    their outputs (train mode), at the places ours puts them; in eval mode their BatchNorm
    applies other channels' statistics (one index over both halves), ours its own."""
    found = run_authors("DARTS-space", """
        from operations import FactorizedReduce
        torch.manual_seed(0)
        op = FactorizedReduce(4, 4, affine=False)
        with torch.no_grad():
            op.bn.running_mean.normal_()
            op.bn.running_var.uniform_(0.5, 2.0)
        x = torch.randn(3, 4, 6, 6)
        wide_x = torch.cat([x, torch.zeros_like(x)], dim=1)
        outs = {}
        for mode in ("train", "eval"):
            getattr(op, mode)()
            outs[mode] = op(x)
        op.wider(8, 8)
        result = {}
        for mode in ("train", "eval"):
            getattr(op, mode)()
            new = op(wide_x)[:, [0, 1, 4, 5]]
            result[mode] = torch.allclose(new, outs[mode], atol=1e-6)
        print(json.dumps(result))
    """)
    assert found == {"train": True, "eval": False}


# --- dtype and device ------------------------------------------------------------------------------
def float64_steps(model, optimizer, architect, count, size):
    g = torch.Generator().manual_seed(1)
    for _ in range(count):
        x, xa = torch.randn(2, 4, 3, size, size, generator=g, dtype=torch.float64)
        y, ya = torch.randint(0, 10, (2, 4), generator=g)
        search_step(model, architect, optimizer, (x, y), (xa, ya), update_arch=True, grad_clip=5.0)


@pytest.mark.parametrize("space", ["201", "darts"])
def test_a_float64_progressive_search_widens_in_float64(space):
    """Built in the default dtype (float32) and turned to float64: widening used to build every
    new op in float32 and load the old state into it (the next forward then failed)."""
    torch.manual_seed(0)
    model = (Network201(8, 1, 10, "dirichlet", 4) if space == "201" else DartsNetwork(8, 10, 3, k=4)).double()
    optimizer = torch.optim.SGD(model.weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    architect = Architect(model, lr=3e-4)
    float64_steps(model, optimizer, architect, 2, 16)
    enter_stage(model, optimizer, Stage(1, k=2, num_keep=3), memory_format=torch.contiguous_format)
    tensors = [*model.parameters(), *model.buffers(), *(s["momentum_buffer"] for s in optimizer.state.values())]
    floats = [t for t in tensors if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float64 for t in floats)
    float64_steps(model, optimizer, architect, 2, 16)  # the widened network trains on
    assert all(torch.isfinite(w).all() for w in model.weight_parameters())


# --- widening with partial channels: an initialisation ------------------------------------------------
def test_widening_partial_channels_changes_the_function():
    """At k 2 half of the channels bypass the ops; widened to k 1 they pass through them: the
    same channel map cannot keep the function, in this code as in the authors'."""
    torch.manual_seed(0)
    edge = MixedOp(["sep_conv_3x3", "skip_connect"], functools.partial(search_op, stride=1), 8, 2)
    edge.eval()
    x, mixing = torch.randn(2, 8, 6, 6), torch.tensor([0.7, 0.3])
    before = edge.mix(x, mixing, [0, 1])
    edge.widen(1, [0, 1], channel_map(4, 8))
    assert not torch.allclose(edge.mix(x, mixing, [0, 1]), before, atol=1e-3)


@needs_authors
def test_the_authors_widening_with_partial_channels_changes_the_function():
    found = run_authors("DARTS-space", """
        from model_search import MixedOp
        torch.manual_seed(0)
        edge = MixedOp(8, 1, 2)
        edge.eval()
        x, weights = torch.randn(2, 8, 6, 6), torch.full((7,), 1 / 7)
        before = edge(x, weights)
        edge.wider(1)
        print(json.dumps(torch.allclose(edge(x, weights), before, atol=1e-3)))
    """)
    assert found is False
