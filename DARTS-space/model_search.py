"""The DARTS-space search network with partial channels `k`, as DrNAS uses it.

Stem (CIFAR: 3x3 conv to `stem_multiplier * C` channels + BN; ImageNet: two stride-2
convs to `stem_multiplier * C / 2`, then `stem_multiplier * C` channels, then one more at that
width, as the authors' model_search_imagenet.py), then `layers` cells; the cells at `layers // 3` and
`2 * layers // 3` are reduction cells and double the channels. A cell has two inputs (the
outputs of the two previous cells, preprocessed by 1x1 ReLU-conv-BN, or by a
FactorizedReduce when the cell before reduced the size), `steps` intermediate nodes, one
mixed op per edge (14 edges for 4 nodes: node i takes the two inputs and nodes < i), and
outputs the concatenation of the last `multiplier` nodes. Global average pooling and a
linear classifier end the network.

Normal and reduction cells have separate architecture distributions
(`common.nas.mixing.ArchDistribution`, edges x 7 ops); every forward draws ONE sample of each,
shared by all cells of that type.
Each edge is a `common.nas.mixed_op.MixedOp` on `C // k` channels; in a reduction cell the edges
from the two cell inputs have stride 2 and their bypassed channels go through a 2x2 max
pool. Search BatchNorms have no affine parameters (running statistics tracked).
"""
import functools

import torch
import torch.nn.functional as F
from torch import nn

from common.nas.fused import fresh_sum, shared_relu
from common.nas.mixed_op import MixedOp
from common.nas.mixing import DERIVE_RULES, ArchDistribution
from common.nas.network import SearchNetwork
from darts_space.genotype_text import genotype_text
from darts_space.genotypes import derive as derive_genotype, genotype_to_json, num_edges
from darts_space.operations import PRIMITIVES, FactorizedReduce, ReLUConvBN, search_op

CELL_TYPES = ("normal", "reduce")
STEMS = ("cifar", "imagenet")


class SearchCell(nn.Module):
    def __init__(self, steps, multiplier, C_prev_prev, C_prev, C, reduction, reduction_prev, k):
        super().__init__()
        self.reduction = reduction
        self.cell_type = "reduce" if reduction else "normal"
        self.steps, self.multiplier = steps, multiplier
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        edges = []
        for i in range(steps):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                edges.append(MixedOp(PRIMITIVES, functools.partial(search_op, stride=stride), C, k,
                                     bypass=nn.MaxPool2d(2, 2) if stride == 2 else None,
                                     cell_type=self.cell_type, edge=len(edges), label=f"{i + 2}<-{j}"))
        self.edges = nn.ModuleList(edges)

    def forward(self, s0, s1, draw):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        relus = [shared_relu(state) for state in states]  # ReLU(node) once for all edges leaving it
        offset = 0
        for _ in range(self.steps):
            states.append(fresh_sum(self.edges[offset + j](h, draw, relus[j]) for j, h in enumerate(states)))
            relus.append(shared_relu(states[-1]))
            offset += len(states) - 1
        return torch.cat(states[-self.multiplier:], dim=1)


class Network(SearchNetwork):
    """DARTS-space search network; `arch` holds the 'normal' and 'reduce' ArchDistributions."""

    def __init__(self, C=36, num_classes=10, layers=20, method="dirichlet", k=1, steps=4, multiplier=4,
                 stem_multiplier=3, stem="cifar", derive="softmax"):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; known: {', '.join(STEMS)}")
        if derive not in DERIVE_RULES:
            raise ValueError(f"unknown derivation rule {derive!r}; known: {', '.join(DERIVE_RULES)}")
        self.steps, self.multiplier = steps, multiplier
        self.derive = derive  # what genotype() ranks ops and edges by (common.nas.mixing.DERIVE_RULES)
        if stem == "cifar":
            c_stem = stem_multiplier * C
            self.stem = nn.Sequential(nn.Conv2d(3, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
            C_prev_prev, C_prev, reduction_prev = c_stem, c_stem, False
        else:  # ImageNet (PC-DARTS / DrNAS search): stem0 divides the size by 4, stem1 by 2 more;
            # 3 -> 72 -> 144 -> 144 channels at C 48 (the evaluation network's stem stays at C)
            c_stem = stem_multiplier * C
            self.stem0 = nn.Sequential(
                nn.Conv2d(3, c_stem // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_stem // 2),
                nn.ReLU(inplace=True),
                nn.Conv2d(c_stem // 2, c_stem, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_stem),
            )
            self.stem1 = nn.Sequential(
                nn.ReLU(inplace=False), nn.Conv2d(c_stem, c_stem, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_stem),
            )
            C_prev_prev, C_prev, reduction_prev = c_stem, c_stem, True
        self.stem_type = stem
        cells, C_curr = [], C
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cells.append(SearchCell(steps, multiplier, C_prev_prev, C_prev, C_curr, reduction, reduction_prev, k))
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, multiplier * C_curr
        self.cells = nn.ModuleList(cells)
        self.classifier = nn.Linear(C_prev, num_classes)
        self.arch = nn.ModuleDict({
            name: ArchDistribution(num_edges(steps), len(PRIMITIVES), method,
                                   edge_nodes=[i for i in range(steps) for _ in range(2 + i)])
            for name in CELL_TYPES
        })

    def forward(self, x):
        draws = self.draw()
        if self.stem_type == "cifar":
            s0 = s1 = self.stem(x)
        else:
            s0 = self.stem0(x)
            s1 = self.stem1(s0)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, draws[cell.cell_type])
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))

    def genotype_from(self, mixing):
        """The genotype (a JSON-able dict) given mixing weights {'normal': edges x ops, 'reduce': ...}:
        per node the 2 edges whose best op weighs most (darts_space.genotypes.derive)."""
        return genotype_to_json(derive_genotype(mixing["normal"], mixing["reduce"], PRIMITIVES, self.steps, self.multiplier))

    def genotype_text(self, genotype):
        """`Genotype(...)`, as the authors' logs print it: pastable into genotypes.py and `--arch`."""
        return genotype_text(genotype)


def build(*, num_classes, k, init_channels, layers, method, derive):
    """The CIFAR search network from the flags of a search script (common/spaces.py)."""
    return Network(init_channels, num_classes, layers, method, k, derive=derive)
