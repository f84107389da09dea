"""The mixed operation of an edge, with partial channels (paper section 2.3, after PC-DARTS).

`sum_o theta_o * o(x)` is computed on the first `C/k` channels only; the other channels
bypass the edge (max-pooled in a DARTS reduction cell to match the spatial size), the two
parts are concatenated and channel-shuffled with `k` groups. `k = 1` is the plain supernet.

Operations that cannot contribute are not computed: ops pruned away on this edge (known
from the host-side kept list) and `none`, whose output is zero (its weight's gradient
<grad, 0> is zero too, so skipping it changes nothing).
"""
import torch
from torch import nn

ZERO_OP = "none"


def channel_shuffle(x, groups):
    """Interleave `groups` channel groups: (B, g*c, H, W) -> groups alternate."""
    if groups == 1:
        return x
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2)
    return x.reshape(batch, channels, height, width)


class MixedOp(nn.Module):
    """One edge: candidate ops built by `make_op(name, channels)` on `C // k` channels."""

    def __init__(self, op_names, make_op, channels, k=1, bypass=None):
        super().__init__()
        if channels % k:
            raise ValueError(f"k={k} does not divide the {channels} channels of an edge")
        self.op_names = list(op_names)
        self.k = k
        self.ops = nn.ModuleList(make_op(name, channels // k) for name in self.op_names)
        self.bypass = bypass  # e.g. MaxPool2d(2, 2) in a DARTS reduction cell
        self.zero_ops = {i for i, name in enumerate(self.op_names) if name == ZERO_OP}

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

    def forward(self, x, weights, kept, hard_choice=None):
        """`weights`: this edge's row of mixing weights; `kept`: indices of live ops.

        `hard_choice` (GDAS) is the sampled op: only it is computed; the other live ops
        add their (zero-valued) weight so that they still receive a gradient, as the
        GDAS implementation in NAS-Bench-201 does.
        """
        x_active, rest = self._split(x)
        if hard_choice is not None:
            out = weights[hard_choice] * self.ops[hard_choice](x_active)
            others = [o for o in kept if o != hard_choice]
            if others:
                out = out + weights[others].sum()
            return self._join(out, rest)
        computed = [o for o in kept if o not in self.zero_ops]
        if not computed:  # only `none` left: a zero output of the right shape
            return self._join(weights[kept[0]] * self.ops[kept[0]](x_active), rest)
        out = sum(weights[o] * self.ops[o](x_active) for o in computed)
        return self._join(out, rest)
