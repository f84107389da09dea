"""The candidate operations of the DARTS search space (Liu et al., DARTS, 2019), as DrNAS uses them.

Every constructor in `OPS` takes `(C, stride, affine)` and maps C channels to C channels
(spatial size divided by `stride`). Inside every op all channel dimensions equal C
(depthwise convolutions have `groups=C`), so `common.nas.mixed_op.widen_like` can widen any of
them from C/k_old to C/k_new channels (progressive learning, paper section 2.3).

`FactorizedReduce` is the usual two-phase 1x1 reduction (half of the output channels see the
input at even pixels, half at odd pixels), written as one 1x1 convolution with two groups
over [x at even pixels, x at odd pixels]: the same function and parameter count as DARTS'
pair of stride-2 convolutions, but a single (C_out, C_in, 1, 1) weight, so inside a mixed op
every tensor dimension is C and the op can be widened. Widening keeps every filter in its
phase, as the authors widen their two convolutions apart (`output_channel_map`); widened
weights are an initialisation, as the newly active input channels of a partial-channel edge
are new data anyway. Unlike DARTS' version it also accepts odd spatial sizes (the odd phase
is zero-padded at the bottom/right).

`PRIMITIVES` are the 7 candidates of DrNAS's DARTS space (no `none`). Both pools are followed
by a BatchNorm without affine parameters (`PoolBN`), in the search network and in the evaluation
networks alike: the authors' op table has them so, and their model.py builds its cells from it.
"""
import torch
import torch.nn.functional as F
from torch import nn

from common.nas.fused import AvgPool, scaled_batch_norm

PRIMITIVES = (
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class ReLUConvBN(nn.Module):
    """ReLU, convolution, BatchNorm."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)

    folds_weight = True  # the fused path of a mixed op (common/nas/fused.py)

    def weighted_term(self, x, relu_x, weight):
        """(weight * self(x), None): the shared ReLU(x), the weight folded into the BatchNorm."""
        return scaled_batch_norm(self.op[2], self.op[1](relu_x(x.shape[1])), weight), None


class DilConv(nn.Module):
    """ReLU, depthwise (dilated) convolution, pointwise convolution, BatchNorm."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, dilation, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride=stride, padding=padding, dilation=dilation,
                      groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)

    def after_relu(self, relu_x):
        """self(x) given ReLU(x)."""
        return self.op[3](self.op[2](self.op[1](relu_x)))

    folds_weight = True

    def weighted_after_relu(self, relu, weight):
        """weight * self(x) given relu = ReLU(x), the weight folded into the BatchNorm."""
        return scaled_batch_norm(self.op[3], self.op[2](self.op[1](relu)), weight)

    def weighted_term(self, x, relu_x, weight):
        """(weight * self(x), None), from the shared ReLU(x)."""
        return self.weighted_after_relu(relu_x(x.shape[1]), weight), None


class SepConv(nn.Module):
    """A separable convolution applied twice; the first one carries the stride."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine),
            DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine),
        )

    def forward(self, x):
        return self.op(x)

    folds_weight = True

    def weighted_term(self, x, relu_x, weight):
        """(weight * self(x), None): the first ReLU shared, the weight in the last BatchNorm."""
        return self.op[1].weighted_after_relu(F.relu(self.op[0].after_relu(relu_x(x.shape[1]))), weight), None


class PoolBN(nn.Sequential):
    """A 3x3 pool followed by BatchNorm without affine parameters (no weights, only statistics)."""

    def __init__(self, pool, C):
        super().__init__(pool, nn.BatchNorm2d(C, affine=False))

    folds_weight = True

    def weighted_term(self, x, relu_x, weight):
        """(weight * self(x), None), the weight folded into the BatchNorm (no ReLU: `relu_x` unused)."""
        return scaled_batch_norm(self[1], self[0](x), weight), None


class Zero(nn.Module):
    """The `none` op: zeros, spatially subsampled by the stride."""

    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """ReLU, then halve the spatial size with two 1x1 convolutions on the even and the odd
    pixel phases (C_out/2 channels each, concatenated), then BatchNorm. See the module doc."""

    def __init__(self, C_in, C_out, affine=True):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv = nn.Conv2d(2 * C_in, C_out, 1, bias=False, groups=2)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        even, odd = x[:, :, ::2, ::2], x[:, :, 1::2, 1::2]
        if odd.shape[2:] != even.shape[2:]:  # odd height or width
            odd = F.pad(odd, (0, even.shape[3] - odd.shape[3], 0, even.shape[2] - odd.shape[2]))
        return self.bn(self.conv(torch.cat([even, odd], dim=1)))

    @staticmethod
    def output_channel_map(source_channel, old_width):
        """Where each output channel of the widened op comes from (common/nas/mixed_op.py), given the
        edge's map g of `old_width` channels onto len(g): each half (phase) widened apart, as the
        authors widen conv_1 and conv_2. A half keeps its old channels in place, and each new one
        copies a channel of its own half, drawn from g's random part (uniform over the half)."""
        half_old, grow = old_width // 2, (len(source_channel) - old_width) // 2
        drawn = source_channel[old_width:] % half_old
        kept = torch.arange(half_old, device=source_channel.device)
        return torch.cat([kept, drawn[:grow], half_old + kept, half_old + drawn[grow:]])


def _skip(C, stride, affine):
    return nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine)


def _conv_7x1_1x7(C, stride, affine):
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(C, C, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
        nn.Conv2d(C, C, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
        nn.BatchNorm2d(C, affine=affine),
    )


# name -> constructor(C, stride, affine). sep_conv_7x7 and conv_7x1_1x7 are not DrNAS
# candidates; they are here because the NASNet and AmoebaNet genotypes use them.
OPS = {
    "none": lambda C, stride, affine: Zero(stride),
    "avg_pool_3x3": lambda C, stride, affine: PoolBN(AvgPool(3, stride=stride, padding=1), C),
    "max_pool_3x3": lambda C, stride, affine: PoolBN(nn.MaxPool2d(3, stride=stride, padding=1), C),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine),
    "sep_conv_7x7": lambda C, stride, affine: SepConv(C, C, 7, stride, 3, affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine),
    "conv_7x1_1x7": _conv_7x1_1x7,
}


def search_op(name, C, stride=1):
    """A candidate op of a search cell: every BatchNorm without affine parameters.

    `functools.partial(search_op, stride=s)` is the `make_op(name, channels)` of a
    `common.nas.mixed_op.MixedOp`."""
    if name not in OPS:
        raise ValueError(f"unknown DARTS-space op {name!r}; known: {', '.join(OPS)}")
    return OPS[name](C, stride, False)
