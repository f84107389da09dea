"""The mixed operation of an edge, with partial channels (paper section 2.3, after PC-DARTS).

`sum_o theta_o * o(x)` is computed on the first `C/k` channels only; the other channels
bypass the edge (max-pooled in a DARTS reduction cell to match the spatial size), the two
parts are concatenated and channel-shuffled with `k` groups. `k = 1` is the plain supernet.

Operations that cannot contribute are not computed: ops pruned away on this edge (known
from the host-side kept list) and `none`, whose output is zero (its weight's gradient
<grad, 0> is zero too, so skipping it changes nothing). The sum takes the fused paths of
common/nas/fused.py. Widening (progressive learning) rebuilds the kept ops on more channels.

Every MixedOp knows where it sits: its cell type, its edge index within the cell and the
edge's label (e.g. "2<-0"), so that a network finds and names its edges without a map.
"""
import functools
import operator

import torch
from torch import nn

from common.nas.fused import fast_paths, shared_relu
from common.spaces import ZERO_OP



def channel_shuffle(x, groups):
    """Interleave `groups` channel groups: (B, g*c, H, W) -> groups alternate."""
    if groups == 1:
        return x
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2)
    return x.reshape(batch, channels, height, width)


def widen_like(tensor, new_shape, old_width, new_width, source_channel, output_channel=None):
    """Index every dimension that grows from `old_width` to `new_width` with g (paper eq. 8);
    the first (output channels, BatchNorm features) with `output_channel` where the op maps its
    outputs apart from its inputs (FactorizedReduce's two phases)."""
    for dim, (old, new) in enumerate(zip(tensor.shape, new_shape)):
        if old != new:
            if (old, new) != (old_width, new_width):
                raise ValueError(f"cannot widen a {tuple(tensor.shape)} tensor to {tuple(new_shape)}")
            index = output_channel if dim == 0 and output_channel is not None else source_channel
            tensor = tensor.index_select(dim, index)
    return tensor


def channel_map(old_width, new_width, device=None):
    """g(j) = j for j < n, a random old channel for j >= n (paper eq. 7); global torch RNG."""
    extra = torch.randint(0, old_width, (new_width - old_width,))
    return torch.cat([torch.arange(old_width), extra]).to(device)


class PrunedOp(nn.Module):
    """Stands in for a pruned op: holds no weights and must never run."""

    def __init__(self, name):
        super().__init__()
        self.name = name

    def forward(self, x):
        raise RuntimeError(f"pruned op {self.name} was called")


class MixedOp(nn.Module):
    """One edge: candidate ops built by `make_op(name, channels)` on `C // k` channels.

    `cell_type` and `edge` say which row of which ArchDistribution mixes it; `label` names
    the edge for records and plots."""

    def __init__(self, op_names, make_op, channels, k=1, bypass=None, *, cell_type="cell", edge=0, label=""):
        super().__init__()
        if channels % k:
            raise ValueError(f"k={k} does not divide the {channels} channels of an edge")
        self.cell_type, self.edge, self.label = cell_type, edge, label or f"edge {edge}"
        self.op_names = list(op_names)
        self.make_op, self.channels, self.k = make_op, channels, k
        self.ops = nn.ModuleList(make_op(name, channels // k) for name in self.op_names)
        self.bypass = bypass  # e.g. MaxPool2d(2, 2) in a DARTS reduction cell
        self.zero_ops = {i for i, name in enumerate(self.op_names) if name == ZERO_OP}

    def drop(self, kept):
        """Free the modules of the ops pruned from this edge (they are never called again)."""
        for index in range(len(self.ops)):
            if index not in kept:
                self.ops[index] = PrunedOp(self.op_names[index])

    def widen(self, k_new, kept, source_channel):
        """Rebuild the kept ops on `channels // k_new` channels from the current ones (paper eq. 7-8).

        `source_channel[j]` is g(j): new channel j copies old channel g(j) in every tensor
        dimension that grows (conv output and input channels, depthwise groups, BatchNorm
        weights and running statistics). One map serves every op of the edge, so the
        widened channels stay consistent through the sum of the ops; an op whose outputs are
        laid out apart from its inputs maps them itself (`output_channel_map`). Every tensor
        keeps its dtype and device. Returns {old parameter: (new parameter, widen function)}
        for the optimizer's state to follow.
        """
        old_width, new_width = self.channels // self.k, self.channels // k_new
        moved = {}
        for index in kept:
            old = self.ops[index]
            new = self.make_op(self.op_names[index], new_width)
            output_map = getattr(old, "output_channel_map", None)
            widen = functools.partial(widen_like, old_width=old_width, new_width=new_width,
                                      source_channel=source_channel,
                                      output_channel=output_map(source_channel, old_width) if output_map else None)
            old_params = dict(old.named_parameters())
            state = {name: widen(tensor, new_tensor.shape)
                     for (name, tensor), new_tensor in zip(old.state_dict().items(), new.state_dict().values())}
            new.load_state_dict(state, assign=True)  # the widened tensors themselves: dtype and device kept
            for name, param in new.named_parameters():
                moved[old_params[name]] = (param, functools.partial(widen, new_shape=param.shape))
            self.ops[index] = new
        self.k = k_new
        return moved

    def _unfused(self, index):
        return not getattr(self.ops[index], "folds_weight", False)

    def _split(self, x):
        if self.k == 1:
            return x, None
        active = x.shape[1] // self.k
        return x[:, :active], x[:, active:]

    def _join(self, out, rest):
        if rest is None:
            return out
        if self.bypass is not None:
            rest = self.bypass(rest)
        return channel_shuffle(torch.cat([out, rest], dim=1), self.k)

    def _accumulate(self, out, index, x, relu_x, weight):
        """`out + weight * op(x)` (`out` None: the first term), in place into `out`, through the
        op's `weighted_term` hook when it has one (common/nas/fused.py), else one fused multiply-add."""
        op = self.ops[index]
        hook = getattr(op, "weighted_term", None)
        term, factor = hook(x, relu_x, weight) if hook is not None else (op(x), weight)
        if factor is None:  # the weight is folded into the term
            return term if out is None else out.add_(term)
        return term * factor if out is None else out.addcmul_(term, factor)

    def forward(self, x, draw, relu_x=None):
        """This edge's output in one forward pass: `draw` (common.nas.network.Draw) is its cell
        type's draw, of which the edge reads its own row (mixing weights, kept ops, GDAS's
        sampled op) and applies its own PC-DARTS edge weight. `relu_x`: the cell's
        `shared_relu(x)` (default: one for this edge's ops only)."""
        e = self.edge
        out = self.mix(x, draw.mixing[e], draw.kept[e], None if draw.hard is None else draw.hard[e], relu_x)
        return draw.edge_output(e, out)

    def mix(self, x, mixing, kept, hard_choice=None, relu_x=None):
        """`mixing`: this edge's row of mixing weights; `kept`: indices of live ops.

        `hard_choice` (GDAS) is the sampled op: only it is computed; the other live ops
        add their (zero-valued) weight so that they still receive a gradient, as the
        GDAS implementation in NAS-Bench-201 does.
        """
        x_active, rest = self._split(x)
        fast = fast_paths()
        if fast and relu_x is None:
            relu_x = shared_relu(x_active)
        if hard_choice is not None:
            if fast:
                out = self._accumulate(None, hard_choice, x_active, relu_x, mixing[hard_choice])
            else:
                out = mixing[hard_choice] * self.ops[hard_choice](x_active)
            if len(kept) > 1:  # the others' weights: the row's sum but the chosen (pruned ops hold 0)
                out = out + (mixing.sum() - mixing[hard_choice])  # no index tensor: no host-device copy
            return self._join(out, rest)
        if not fast:  # the literal sum (see `reference_computation`)
            return self._join(functools.reduce(operator.add, (mixing[o] * self.ops[o](x_active) for o in kept)), rest)
        # ops with a fused path first: their output starts the sum, the others add into it
        computed = sorted((o for o in kept if o not in self.zero_ops), key=self._unfused)
        if not computed:  # only `none` left: a zero output of the right shape
            return self._join(mixing[kept[0]] * self.ops[kept[0]](x_active), rest)
        out = None
        for index in computed:
            out = self._accumulate(out, index, x_active, relu_x, mixing[index])
        return self._join(out, rest)
