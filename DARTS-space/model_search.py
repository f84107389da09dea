"""The DARTS-space search network (SPEC section 3) with partial channels `k`, as DrNAS uses it.

Stem (CIFAR: 3x3 conv to `stem_multiplier * C` channels + BN; ImageNet: two stride-2
convs, then one more), then `layers` cells; the cells at `layers // 3` and
`2 * layers // 3` are reduction cells and double the channels. A cell has two inputs (the
outputs of the two previous cells, preprocessed by 1x1 ReLU-conv-BN, or by a
FactorizedReduce when the cell before reduced the size), `steps` intermediate nodes, one
mixed op per edge (14 edges for 4 nodes: node i takes the two inputs and nodes < i), and
outputs the concatenation of the last `multiplier` nodes. Global average pooling and a
linear classifier end the network.

Normal and reduction cells have separate architecture weights (`common.arch.ArchWeights`,
edges x 7 ops); every forward draws ONE sample of each, shared by all cells of that type.
Each edge is a `common.mixed_op.MixedOp` on `C // k` channels; in a reduction cell the edges
from the two cell inputs have stride 2 and their bypassed channels go through a 2x2 max
pool. Search BatchNorms have no affine parameters (running statistics tracked).
"""
import functools

import torch
import torch.nn.functional as F
from torch import nn

from common.arch import DERIVE_RULES, ArchWeights
from common.mixed_op import MixedOp, fresh_sum, shared_relu
from darts_space.genotypes import derive, genotype_to_json, num_edges
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
                                     bypass=nn.MaxPool2d(2, 2) if stride == 2 else None))
        self.edges = nn.ModuleList(edges)

    def forward(self, s0, s1, weights, kept, hard_choices=None):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        relus = [shared_relu(state) for state in states]  # ReLU(node) once for all edges leaving it
        offset = 0
        for _ in range(self.steps):
            states.append(fresh_sum(
                self.edges[offset + j](h, weights[offset + j], kept[offset + j],
                                       None if hard_choices is None else hard_choices[offset + j], relus[j])
                for j, h in enumerate(states)
            ))
            relus.append(shared_relu(states[-1]))
            offset += len(states) - 1
        return torch.cat(states[-self.multiplier:], dim=1)


class Network(nn.Module):
    """DARTS-space search network; `arch` holds the 'normal' and 'reduce' ArchWeights."""

    def __init__(self, C=36, num_classes=10, layers=20, method="dirichlet", k=1, steps=4, multiplier=4,
                 stem_multiplier=3, stem="cifar", derive="softmax"):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; known: {', '.join(STEMS)}")
        if derive not in DERIVE_RULES:
            raise ValueError(f"unknown derivation rule {derive!r}; known: {', '.join(DERIVE_RULES)}")
        self.steps, self.multiplier = steps, multiplier
        self.derive = derive  # what genotype() ranks ops and edges by (common.arch.DERIVE_RULES)
        if stem == "cifar":
            c_stem = stem_multiplier * C
            self.stem = nn.Sequential(nn.Conv2d(3, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
            C_prev_prev, C_prev, reduction_prev = c_stem, c_stem, False
        else:  # ImageNet (PC-DARTS / DrNAS): stem0 divides the size by 4, stem1 by 2 more
            self.stem0 = nn.Sequential(
                nn.Conv2d(3, C // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C // 2),
                nn.ReLU(inplace=True),
                nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C),
            )
            self.stem1 = nn.Sequential(
                nn.ReLU(inplace=False), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C),
            )
            C_prev_prev, C_prev, reduction_prev = C, C, True
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
            name: ArchWeights(num_edges(steps), len(PRIMITIVES), method) for name in CELL_TYPES
        })

    def forward(self, x):
        weights = {name: arch.sample() for name, arch in self.arch.items()}
        hard = {name: self.arch[name].hard_choices(w) for name, w in weights.items()}
        kept = {name: arch.kept for name, arch in self.arch.items()}
        if self.stem_type == "cifar":
            s0 = s1 = self.stem(x)
        else:
            s0 = self.stem0(x)
            s1 = self.stem1(s0)
        for cell in self.cells:
            t = cell.cell_type
            s0, s1 = s1, cell(s0, s1, weights[t], kept[t], hard[t])
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))

    # --- the interface the architect and the search loop use -------------------------
    def weights(self):
        """Network weights: every parameter but the architecture parameters."""
        return [p for name, p in self.named_parameters() if not name.startswith("arch.")]

    def arch_parameters(self):
        """[normal alpha, reduce alpha]."""
        return [self.arch[name].alpha for name in CELL_TYPES]

    def arch_weights(self):
        """{'normal': ArchWeights, 'reduce': ArchWeights}."""
        return {name: self.arch[name] for name in CELL_TYPES}

    def edge_ops(self):
        """(cell type, edge index, MixedOp) for every edge of every cell."""
        for cell in self.cells:
            for edge, op in enumerate(cell.edges):
                yield cell.cell_type, edge, op

    def loss(self, x, y):
        return F.cross_entropy(self(x), y)

    def anchor_kl(self):
        """KL(Dir(beta) || Dir(1)) summed over the edges of both cell types."""
        return sum(self.arch[name].anchor_kl() for name in CELL_TYPES)

    def genotype(self):
        """The derived cells as a JSON-able dict: per node the 2 edges whose best op weighs most,
        by softmax of alpha over the kept ops (the authors' genotype(), `derive="softmax"`) or by
        the expected mixing weights (`derive="mean"`, the Dirichlet mean for DrNAS)."""
        return self.genotype_from({name: self.arch[name].derivation_weights(self.derive) for name in CELL_TYPES})

    def genotype_from(self, weights):
        """The genotype dict given mixing weights {'normal': edges x ops, 'reduce': edges x ops}."""
        return genotype_to_json(derive(weights["normal"], weights["reduce"], PRIMITIVES,
                                       self.steps, self.multiplier))
