"""The NAS-Bench-201 supernet, with partial channels `k`.

Cell: 4 nodes, 6 edges `i<-j` (j < i), 5 candidate ops. Network: 3x3 conv stem + BN,
three stages of N cells at C, 2C, 4C channels separated by stride-2 residual blocks,
then BN-ReLU, global average pooling and a linear classifier. All cells share one
draw of the mixing weights per forward pass. At C=16, N=5 the weight count equals the
authors' network: 1,686,106 for CIFAR-10 at k=1 and 174,106 at k=4.
"""
import torch.nn.functional as F
from torch import nn

from common.fused import AvgPool, fresh_sum, scaled_batch_norm, shared_relu
from common.mixed_op import MixedOp
from common.mixing import ArchDistribution
from common.network import SearchNetwork

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

    def weighted_after_relu(self, relu_x, weight):
        """weight * self(x) given ReLU(x) (common/mixed_op.py: the fused path of a mixed op)."""
        return scaled_batch_norm(self[2], self[1](relu_x), weight)


class Zero(nn.Module):
    def forward(self, x):
        return x.mul(0.0)


def make_cell_op(name, channels):
    """A candidate op of a search cell: stride 1, BN without affine, running stats tracked."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0, affine=False)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1, affine=False)
    if name == "avg_pool_3x3":
        return AvgPool(3, stride=1, padding=1)
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


class SearchCell(nn.Module):
    def __init__(self, channels, k):
        super().__init__()
        self.edges = nn.ModuleList(MixedOp(OPS, make_cell_op, channels, k, edge=e, label=f"{i}<-{j}")
                                   for e, (i, j) in enumerate(EDGES))

    def forward(self, x, draw):
        nodes, relus = [x], [shared_relu(x)]  # ReLU(node) once for all edges leaving it
        for i in range(1, NUM_NODES):
            nodes.append(
                fresh_sum(
                    self.edges[e](nodes[j], draw.mixing[e], draw.kept[e], draw.hard and draw.hard[e], relus[j])
                    for e, (node, j) in enumerate(EDGES)
                    if node == i
                )
            )
            relus.append(shared_relu(nodes[-1]))
        return nodes[-1]


class Network(SearchNetwork):
    """NAS-Bench-201 search network: one cell type, "cell", mixed by `self.arch["cell"]`."""

    def __init__(self, C=16, N=5, num_classes=10, method="dirichlet", k=1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        widths = [C] * N + [2 * C] + [2 * C] * N + [4 * C] + [4 * C] * N
        reductions = {N, 2 * N + 1}
        layers, c_prev = [], C
        for index, width in enumerate(widths):
            layers.append(ResidualBlock(c_prev, width) if index in reductions else SearchCell(width, k))
            c_prev = width
        self.layers = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(c_prev, num_classes)
        self.arch = nn.ModuleDict({"cell": ArchDistribution(len(EDGES), len(OPS), method)})

    def forward(self, x):
        draw = self.draw()["cell"]
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x, draw) if isinstance(layer, SearchCell) else layer(x)
        x = self.lastact(x)
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))

    def genotype_from(self, mixing):
        """The cell as a benchmark string: the strongest op of every edge (paper eq. 4)."""
        return genotype_string(mixing["cell"].argmax(-1).tolist())


def build(*, num_classes, k, init_channels, num_cells, method):
    """The network from the flags of a search script (common/spaces.py)."""
    return Network(init_channels, num_cells, num_classes, method, k)


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
