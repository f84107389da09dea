"""Cheaper, equal sums for the mixed ops (same values up to float rounding; see
docs/performance.md and tests/test_performance.py):

- one hook: an op may define `weighted_term(x, relu_x, weight) -> (term, factor)` with
  term * factor = weight * op(x), which a mixed op adds into its sum in one pass; `relu_x(C)`
  is ReLU of the first C channels of x, computed once per node for all the edges leaving it
  (`shared_relu`), where each op used to compute and keep its own copy;
- an op that ends with a BatchNorm (ReLU-conv-BN, separable and dilated convs, the DARTS-space
  pools) folds the mixing weight into it (`scaled_batch_norm`): theta * BN(z) is BN(z) with
  affine weight theta, one pass instead of two, forward and back; its factor is None and it
  says so with `folds_weight = True` (its term then starts the edge's sum);
- the average pool of both spaces (`AvgPool`, count_include_pad=False) runs on the CPU as a
  depthwise convolution with a ones kernel divided by the count of each window;
- sums accumulate in place (`fresh_sum`).

`reference_computation()` switches all of it off: the literal sum, as the authors compute it.
"""
import contextlib
import functools
import operator

import torch
import torch.nn.functional as F
from torch import nn

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

    def weighted_term(self, x, relu_x, weight):
        """(t, f) with t * f = weight * self(x): a mixed op multiplies them into its sum in one
        pass, so that the division by the counts costs nothing extra (`relu_x` unused)."""
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
