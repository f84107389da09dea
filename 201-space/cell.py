"""The NAS-Bench-201 cell space, free of the search: its ops, edges and cell strings, and the
building blocks the search network (model_search.py) and the evaluation network (model.py)
share."""
from torch import nn

from common.nas.fused import scaled_batch_norm

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_NODES = 4
# Edge order of NAS-Bench-201: sorted '{i}<-{j}' keys, i.e. (1,0), (2,0), (2,1), (3,0), (3,1), (3,2).
EDGES = tuple((i, j) for i in range(1, NUM_NODES) for j in range(i))


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, kernel, stride, padding, affine):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )

    folds_weight = True  # the fused path of a mixed op (common/nas/fused.py)

    def weighted_term(self, x, relu_x, weight):
        """(weight * self(x), None): the shared ReLU(x), the weight folded into the BatchNorm."""
        return scaled_batch_norm(self[2], self[1](relu_x(x.shape[1])), weight), None


class Zero(nn.Module):
    def forward(self, x):
        return x.mul(0.0)


def make_op(name, channels, *, affine, avg_pool):
    """A cell op: stride 1, `channels` in and out, running BN statistics tracked; BN affine in
    the evaluation network, not in the search; `avg_pool()` builds the 3x3 average pool."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name in ("nor_conv_1x1", "nor_conv_3x3"):
        kernel = int(name[-1])
        return ReLUConvBN(channels, channels, kernel, 1, kernel // 2, affine=affine)
    if name == "avg_pool_3x3":
        return avg_pool()
    raise ValueError(f"unknown NAS-Bench-201 op {name!r}")


class ResidualBlock(nn.Module):
    """The stride-2 basic block between stages (affine BN, as in NAS-Bench-201)."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1, affine=True)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, affine=True)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(2, stride=2, padding=0), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x):
        return self.conv_b(self.conv_a(x)) + self.downsample(x)


def genotype_string(op_indices):
    """`|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` from the op index of every edge."""
    names = {edge: OPS[o] for edge, o in zip(EDGES, op_indices)}
    nodes = []
    for i in range(1, NUM_NODES):
        nodes.append("|" + "|".join(f"{names[(i, j)]}~{j}" for j in range(i)) + "|")
    return "+".join(nodes)


def parse_genotype(arch_str):
    """The op index of every edge (EDGES order) from a NAS-Bench-201 architecture string."""
    ops = {}
    for i, node in enumerate(arch_str.split("+"), start=1):
        for item in filter(None, node.split("|")):
            name, j = item.split("~")
            ops[(i, int(j))] = OPS.index(name)
    return [ops[edge] for edge in EDGES]
