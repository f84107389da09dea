"""The NAS-Bench-201 supernet, with partial channels `k`.

Cell: 4 nodes, 6 edges `i<-j` (j < i), 5 candidate ops. Network: 3x3 conv stem + BN,
three stages of N cells at C, 2C, 4C channels separated by stride-2 residual blocks,
then BN-ReLU, global average pooling and a linear classifier. All cells share one
draw of the mixing weights per forward pass. At C=16, N=5 the weight count equals the
authors' network: 1,686,106 for CIFAR-10 at k=1 and 174,106 at k=4.
"""
import functools

import torch.nn.functional as F
from torch import nn

from common.nas.fused import AvgPool, fresh_sum, shared_relu
from common.nas.mixed_op import MixedOp
from common.nas.mixing import ArchDistribution
from common.nas.network import SearchNetwork
from space201.cell import (EDGES, NUM_NODES, OPS, ReLUConvBN, ResidualBlock, Zero, genotype_string, make_op,
                           parse_genotype)

__all__ = ["Network", "build", "make_cell_op", "EDGES", "NUM_NODES", "OPS", "genotype_string", "parse_genotype",
           "ReLUConvBN", "ResidualBlock", "Zero"]


# a candidate op of a search cell: BN without affine, the fast equal average pool
make_cell_op = functools.partial(make_op, affine=False, avg_pool=lambda: AvgPool(3, stride=1, padding=1))


class SearchCell(nn.Module):
    def __init__(self, channels, k):
        super().__init__()
        self.edges = nn.ModuleList(MixedOp(OPS, make_cell_op, channels, k, edge=e, label=f"{i}<-{j}")
                                   for e, (i, j) in enumerate(EDGES))

    def forward(self, x, draw):
        nodes, relus = [x], [shared_relu(x)]  # ReLU(node) once for all edges leaving it
        for i in range(1, NUM_NODES):
            nodes.append(
                fresh_sum(self.edges[e](nodes[j], draw, relus[j]) for e, (node, j) in enumerate(EDGES) if node == i)
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
        self.arch = nn.ModuleDict({"cell": ArchDistribution(len(EDGES), len(OPS), method,
                                                           edge_nodes=[i for i, _ in EDGES])})

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
