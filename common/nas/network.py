"""The search-space contract, written once: what the search loop, the architect, progressive
learning and the diagnostics need of a supernet.

A space's search network subclasses `SearchNetwork`. It puts one `ArchDistribution` per
cell type in `self.arch` (an `nn.ModuleDict`, cell type -> distribution), builds its edges
as `MixedOp`s that know their cell type, edge index and label, wires its forward pass with
`self.draw()`, and implements one hook, `genotype_from(mixing)`: the space's discrete cell
(a JSON-able value) from one mixing-weight matrix per cell type. Everything else is derived:

    weight_parameters()    the network's weights: every parameter but alpha
    arch_parameters()      [alpha of each cell type (and PC-DARTS's edge_beta)]
    arch_distributions()   {cell type: ArchDistribution}
    edge_ops()             (cell type, edge index, MixedOp) of every edge of every cell
    edge_labels()          {cell type: [label of each edge]}
    op_names               the candidate ops, in alpha's column order
    loss(x, y)             cross-entropy of the logits
    anchor_kl()            the KL anchor summed over the cell types (paper eq. 2)
    genotype()             genotype_from(the weights the derivation rule ranks by)
    genotype_text(g)       the genotype as text that --arch takes (a space may override it)

docs/architecture.md shows a whole space written against it.
"""
import json
from typing import NamedTuple, Optional

import torch.nn.functional as F
from torch import nn

from common.nas.mixed_op import MixedOp


class Draw(NamedTuple):
    """One forward pass's mixing weights of a cell type, its kept ops, GDAS's sampled ops and
    PC-DARTS's edge weights."""

    mixing: object  # edges x ops tensor
    kept: list  # kept op indices per edge
    hard: Optional[list]  # the sampled op per edge (GDAS), else None
    edge_weights: Optional[object] = None  # PC-DARTS: a weight per edge, else None

    def edge_output(self, edge, out):
        """Edge `edge`'s output `out` as its node sums it: scaled by its weight (PC-DARTS: the
        whole output, partial channels' bypass included, as their cell does)."""
        return out if self.edge_weights is None else out * self.edge_weights[edge]


class SearchNetwork(nn.Module):
    """Base class of the search networks (see the module doc)."""

    derive = "softmax"  # what genotype() ranks by (common.nas.mixing.DERIVE_RULES)

    def draw(self):
        """{cell type: Draw}: one sample of every cell type's mixing weights, shared by all cells
        of that type in this forward pass (cell types in the order of `self.arch`)."""
        draws = {}
        for cell_type, arch in self.arch.items():
            mixing = arch.sample()
            draws[cell_type] = Draw(mixing, arch.kept, arch.hard_choices(mixing), arch.edge_weights())
        # GDAS: the op each edge computes in this forward (common/nas/unsampled_ops.py)
        self.sampled_ops = {cell_type: draw.hard for cell_type, draw in draws.items() if draw.hard is not None}
        return draws

    def weight_parameters(self):
        return [p for name, p in self.named_parameters() if not name.startswith("arch.")]

    def arch_parameters(self):
        return [p for arch in self.arch.values() for p in arch.parameters()]

    def arch_distributions(self):
        return dict(self.arch.items())

    def edge_ops(self):
        for module in self.modules():
            if isinstance(module, MixedOp):
                yield module.cell_type, module.edge, module

    def edge_labels(self):
        labels = {cell_type: {} for cell_type in self.arch}
        for cell_type, edge, op in self.edge_ops():
            labels[cell_type].setdefault(edge, op.label)
        return {cell_type: [found[e] for e in sorted(found)] for cell_type, found in labels.items()}

    @property
    def op_names(self):
        return next(self.edge_ops())[2].op_names

    def loss(self, x, y):
        return F.cross_entropy(self(x), y)

    def anchor_kl(self):
        return sum(arch.anchor_kl() for arch in self.arch.values())

    def genotype(self):
        return self.genotype_from({name: arch.for_derivation(self.derive) for name, arch in self.arch.items()})

    def genotype_from(self, mixing):
        """The space's discrete cell given {cell type: edges x ops mixing weights}."""
        raise NotImplementedError

    def genotype_text(self, genotype):
        """`genotype` (genotype_from's value) as the text `--arch` takes; a space whose genotype
        is not a string says how it is written (the DARTS space: `Genotype(...)`)."""
        return genotype if isinstance(genotype, str) else json.dumps(genotype)
