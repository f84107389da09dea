"""The mixed operation of an edge, with partial channels (paper section 2.3, after PC-DARTS).

`sum_o theta_o * o(x)` is computed on the first `C/k` channels only; the other channels
bypass the edge (max-pooled in a DARTS reduction cell to match the spatial size), the two
parts are concatenated and channel-shuffled with `k` groups. `k = 1` is the plain supernet.

Operations that cannot contribute are not computed: ops pruned away on this edge (known
from the host-side kept list) and `none`, whose output is zero (its weight's gradient
<grad, 0> is zero too, so skipping it changes nothing).

Two equivalent rewrites make the sum cheaper (same values up to float rounding; see
docs/performance.md and tests/test_performance.py):
- an op that starts with ReLU on its input (ReLU-conv-BN, separable and dilated convs)
  exposes `weighted_after_relu(relu_x, weight)`; ReLU(x) is then computed once for every
  such op of the edge, and once per node for all the edges leaving it (`shared_relu`), where
  each op used to compute and keep its own copy;
- that method folds the mixing weight into the op's last BatchNorm (`scaled_batch_norm`):
  theta * BN(z) is BN(z) with affine weight theta, one pass instead of two, forward and back;
  an op that ends with a BatchNorm but does not start with ReLU (the DARTS-space pools)
  exposes `weighted(x, weight)` for the same folding;
- the average pool of both spaces (`AvgPool`, count_include_pad=False) runs on the CPU as a
  depthwise convolution with a ones kernel divided by the count of each window.
"""
import contextlib
import functools
import operator

import torch
import torch.nn.functional as F
from torch import nn

ZERO_OP = "none"


_fast_paths = [True]


@contextlib.contextmanager
def reference_computation():
    """Within: every mixed op computes `sum_o theta_o * o(x)` literally, each op on its own
    (its ReLU included), `none` included, the pools as pooling kernels, sums out of place.
    The fast paths must give the same numbers to float tolerance: tests/test_performance.py
    checks it and scripts/benchmark_search.py --compare times both."""
    _fast_paths.append(False)
    try:
        yield
    finally:
        _fast_paths.pop()


def fast_paths():
    return _fast_paths[-1]


def fresh_sum(tensors):
    """The sum, accumulated in place into the first tensor, which must be a fresh intermediate
    that no backward function saved (an op's output, as every edge's is): no new buffer per
    addition, and no leading `0 + t` as Python's sum() has."""
    if not fast_paths():
        return functools.reduce(operator.add, tensors)
    return functools.reduce(lambda total, t: total.add_(t), tensors)


def scaled_batch_norm(bn, x, scale):
    """`scale * bn(x)` in one BatchNorm call: the scale joins (or becomes) its affine weight.

    Same running-statistics update as `bn(x)`; BatchNorms outside the plain case (no running
    statistics, or a cumulative momentum, which nn.BatchNorm reads on the host) take the
    two-pass route."""
    if not bn.track_running_stats or bn.momentum is None:
        return scale * bn(x)
    if bn.affine:
        weight, bias = scale * bn.weight, scale * bn.bias
    else:
        # a real (C,) tensor: CPU kernels for channels_last read the weight as contiguous memory
        weight, bias = scale.expand(bn.num_features).contiguous(), None
    if bn.training:
        bn.num_batches_tracked.add_(1)
    return F.batch_norm(x, bn.running_mean, bn.running_var, weight, bias, bn.training, bn.momentum, bn.eps)


class AvgPool(nn.Module):
    """nn.AvgPool2d(kernel_size, stride, padding, count_include_pad=False), the same values.

    On the CPU it is computed as a depthwise convolution with a ones kernel (the window sums)
    times 1 / (the number of unpadded inputs in each window): PyTorch's CPU pooling kernel is
    about 3x slower, forward and backward, on the channels_last 32x32 maps of the search
    (docs/performance.md). Other devices use the pooling kernel. Holds no state."""

    def __init__(self, kernel_size, stride=1, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self._constants = {}  # (what, shape, dtype, device) -> ones kernel or inverse counts

    def _constant(self, what, shape, like):
        key = (what, shape, like.dtype, like.device)
        if key not in self._constants:
            k = self.kernel_size
            if what == "ones":
                value = torch.ones(shape[0], 1, k, k, dtype=like.dtype, device=like.device)
            else:  # the count of unpadded inputs of every window, inverted
                count = F.conv2d(torch.ones(1, 1, *shape, dtype=like.dtype, device=like.device),
                                 torch.ones(1, 1, k, k, dtype=like.dtype, device=like.device),
                                 stride=self.stride, padding=self.padding)
                value = count.reciprocal()
            self._constants[key] = value
        return self._constants[key]

    def _sums_and_scale(self, x):
        """(t, s) with t * s = self(x); s is None where t is already the average."""
        if x.device.type != "cpu" or not fast_paths():
            return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, count_include_pad=False), None
        channels, height, width = x.shape[1:]
        sums = F.conv2d(x, self._constant("ones", (channels,), x), stride=self.stride,
                        padding=self.padding, groups=channels)
        return sums, self._constant("inverse_count", (height, width), x)

    def term_and_factor(self, x, weight):
        """(t, f) with t * f = weight * self(x): a mixed op multiplies them into its sum in one
        pass, so that the division by the counts costs nothing extra."""
        term, scale = self._sums_and_scale(x)
        return term, weight if scale is None else weight * scale

    def forward(self, x):
        term, scale = self._sums_and_scale(x)
        return term if scale is None else term * scale

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def shared_relu(x):
    """ReLU of the first channels of `x`, computed on first use and then reused: a cell hands one
    to every edge leaving node x, and every edge takes the same first C/k channels."""
    cached = {}

    def relu_of_first(channels):
        if channels not in cached:
            cached[channels] = F.relu(x if channels == x.shape[1] else x[:, :channels])
        return cached[channels]

    return relu_of_first


def channel_shuffle(x, groups):
    """Interleave `groups` channel groups: (B, g*c, H, W) -> groups alternate."""
    if groups == 1:
        return x
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2)
    return x.reshape(batch, channels, height, width)


def widen_like(tensor, new_shape, old_width, new_width, source_channel):
    """Index every dimension that grows from `old_width` to `new_width` with g (paper eq. 8)."""
    for dim, (old, new) in enumerate(zip(tensor.shape, new_shape)):
        if old != new:
            if (old, new) != (old_width, new_width):
                raise ValueError(f"cannot widen a {tuple(tensor.shape)} tensor to {tuple(new_shape)}")
            tensor = tensor.index_select(dim, source_channel)
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
    """One edge: candidate ops built by `make_op(name, channels)` on `C // k` channels."""

    def __init__(self, op_names, make_op, channels, k=1, bypass=None):
        super().__init__()
        if channels % k:
            raise ValueError(f"k={k} does not divide the {channels} channels of an edge")
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
        widened channels stay consistent through the sum of the ops. Returns
        {old parameter: (new parameter, widen function)} for the optimizer's state to follow.
        """
        old_width, new_width = self.channels // self.k, self.channels // k_new
        moved = {}
        for index in kept:
            old = self.ops[index]
            new = self.make_op(self.op_names[index], new_width).to(source_channel.device)
            old_params = dict(old.named_parameters())
            state = {name: widen_like(tensor, new_tensor.shape, old_width, new_width, source_channel)
                     for (name, tensor), new_tensor in zip(old.state_dict().items(), new.state_dict().values())}
            new.load_state_dict(state)
            for name, param in new.named_parameters():
                moved[old_params[name]] = (param, functools.partial(
                    widen_like, new_shape=param.shape, old_width=old_width,
                    new_width=new_width, source_channel=source_channel))
            self.ops[index] = new
        self.k = k_new
        return moved

    def _unfused(self, index):
        op = self.ops[index]
        return not (hasattr(op, "weighted_after_relu") or hasattr(op, "weighted"))

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
        op's fused path when it has one (`weighted_after_relu`, `weighted`, `term_and_factor`),
        else one fused multiply-add."""
        op = self.ops[index]
        fused = getattr(op, "weighted_after_relu", None)
        if fused is not None:
            term = fused(relu_x(x.shape[1]), weight)
            return term if out is None else out.add_(term)
        if hasattr(op, "weighted"):
            term = op.weighted(x, weight)
            return term if out is None else out.add_(term)
        split = getattr(op, "term_and_factor", None)
        term, factor = split(x, weight) if split is not None else (op(x), weight)
        return term * factor if out is None else out.addcmul_(term, factor)

    def forward(self, x, weights, kept, hard_choice=None, relu_x=None):
        """`weights`: this edge's row of mixing weights; `kept`: indices of live ops;
        `relu_x`: the cell's `shared_relu(x)` (default: one for this edge's ops only).

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
                out = self._accumulate(None, hard_choice, x_active, relu_x, weights[hard_choice])
            else:
                out = weights[hard_choice] * self.ops[hard_choice](x_active)
            others = [o for o in kept if o != hard_choice]
            if others:
                out = out + weights[others].sum()
            return self._join(out, rest)
        if not fast:  # the literal sum (see `reference_computation`)
            return self._join(functools.reduce(operator.add, (weights[o] * self.ops[o](x_active) for o in kept)), rest)
        # ops with a fused path first: their output starts the sum, the others add into it
        computed = sorted((o for o in kept if o not in self.zero_ops), key=self._unfused)
        if not computed:  # only `none` left: a zero output of the right shape
            return self._join(weights[kept[0]] * self.ops[kept[0]](x_active), rest)
        out = None
        for index in computed:
            out = self._accumulate(out, index, x_active, relu_x, weights[index])
        return self._join(out, rest)
