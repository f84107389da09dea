"""The DARTS-space evaluation networks: a searched cell stacked into the
standard DARTS `NetworkCIFAR` / `NetworkImageNet`, with auxiliary head and drop-path.

    Cell(genotype, C_prev_prev, C_prev, C, reduction, reduction_prev)
    NetworkCIFAR(C, num_classes, layers, auxiliary, genotype)      # C 36, 20 layers
    NetworkImageNet(C, num_classes, layers, auxiliary, genotype)   # C 48, 14 layers
    resolve_genotype(arch) -> Genotype   # a name in genotypes.py, Genotype(...) text, a results / genotype JSON
    count_parameters(model) -> float     # millions, auxiliary head not counted

A cell preprocesses its two inputs (the outputs of the two previous cells) to C channels:
1x1 ReLU-conv-BN, or a FactorizedReduce for the older input when the previous cell halved
the spatial size. Every intermediate node is the sum of the genotype's two ops applied to
the chosen earlier states (ops on the two cell inputs have stride 2 in a reduction cell);
the cell output concatenates the genotype's `concat` states, `len(concat) * C` channels.
In training, every op output except an identity (stride-1 skip) goes through drop-path.

The networks: the cells at `layers // 3` and `2 * layers // 3` are reduction cells and
double C; the auxiliary head (training mode only) reads the output of the second reduction
cell; global average pooling and a linear classifier end the network. `forward` returns
`(logits, logits_aux)`, `logits_aux` None unless the network has an auxiliary head and is
in training mode. The training script sets `model.drop_path_prob` (0 by default) each epoch.

Activations that the DARTS code applies in place on a tensor still in use (the auxiliary
head's first ReLU, `stem1`'s ReLU) are not in place here; every consumer of those tensors
starts with a ReLU, so the function is the same. Like the DARTS code (see the note there),
the ImageNet auxiliary head has no BatchNorm after its 768-channel convolution.
"""
import torch
from torch import nn

from common.errors import UserError, one_line
from common.run.genotype_source import final_genotype, read_arch_json
from common.run.results import RESULTS_NAME
from common.run.train import count_parameters  # noqa: F401  (part of this module's API)
from darts_space.genotype_text import genotype_from_text, named_genotypes
from darts_space.genotypes import Genotype, genotype_from_json
from darts_space.operations import OPS, FactorizedReduce, ReLUConvBN


def drop_path(x, drop_prob):
    """Zero whole samples of `x` (batch-first) with probability `drop_prob` and scale the
    kept ones by 1 / (1 - drop_prob), so the expectation is unchanged. The mask is drawn on
    x's device (no host synchronisation); `drop_prob` <= 0 returns x itself."""
    if drop_prob <= 0.0:
        return x
    keep_prob = 1.0 - drop_prob
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
    mask.bernoulli_(keep_prob)
    return x * mask.div_(keep_prob)


def _as_genotype(genotype):
    if isinstance(genotype, Genotype):
        return genotype
    return genotype_from_json(genotype)  # a genotype_to_json dict


class Cell(nn.Module):
    """One evaluation cell of `genotype` (see the module doc)."""

    def __init__(self, genotype, C_prev_prev, C_prev, C, reduction, reduction_prev):
        super().__init__()
        genotype = _as_genotype(genotype)
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C, affine=True)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=True)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=True)
        pairs, concat = (genotype.reduce, genotype.reduce_concat) if reduction else \
            (genotype.normal, genotype.normal_concat)
        self.reduction = reduction
        self.steps = len(pairs) // 2
        self.concat = [int(s) for s in concat]
        self.multiplier = len(self.concat)
        self.indices = [int(j) for _, j in pairs]
        self.ops = nn.ModuleList(
            OPS[name](C, 2 if reduction and j < 2 else 1, True) for name, j in pairs
        )

    def forward(self, s0, s1, drop_prob=0.0):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        drop = self.training and drop_prob > 0.0
        for node in range(self.steps):
            total = 0
            for e in (2 * node, 2 * node + 1):
                op = self.ops[e]
                h = op(states[self.indices[e]])
                if drop and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                total = total + h
            states.append(total)
        return torch.cat([states[s] for s in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """Auxiliary classifier on the output of the second reduction cell (DARTS):
    ReLU, 5x5 average pool to 2x2, 1x1 conv to 128, BN, ReLU, 2x2 conv to 768, [BN], ReLU, linear."""

    def __init__(self, C, num_classes, pool_stride, bn_after_768):
        super().__init__()
        layers = [
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=pool_stride, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),  # 2x2 -> 1x1
        ]
        if bn_after_768:
            layers.append(nn.BatchNorm2d(768))
        self.features = nn.Sequential(*layers, nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class AuxiliaryHeadCIFAR(AuxiliaryHead):
    """On the 8x8 output at CIFAR size (pool stride 3)."""

    def __init__(self, C, num_classes):
        super().__init__(C, num_classes, pool_stride=3, bn_after_768=True)


class AuxiliaryHeadImageNet(AuxiliaryHead):
    """On the 7x7 output at 224x224 (pool stride 2; the DARTS code's comment says 14x14, its
    arithmetic needs 7x7). No BatchNorm after the 768-channel convolution, as in the DARTS code."""

    def __init__(self, C, num_classes):
        super().__init__(C, num_classes, pool_stride=2, bn_after_768=False)

class _Network(nn.Module):
    """The cell stack shared by the CIFAR and ImageNet networks."""

    def _build_cells(self, genotype, layers, C, C_prev_prev, C_prev, reduction_prev):
        self._layers = layers
        self._aux_index = 2 * layers // 3
        cells, C_curr, C_to_auxiliary = [], C, None
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell = Cell(genotype, C_prev_prev, C_prev, C_curr, reduction, reduction_prev)
            cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
            if i == self._aux_index:
                C_to_auxiliary = C_prev
        self.cells = nn.ModuleList(cells)
        return C_prev, C_to_auxiliary

    def _run_cells(self, s0, s1):
        logits_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self._aux_index and self._auxiliary and self.training:
                logits_aux = self.auxiliary_head(s1)
        return s1, logits_aux


class NetworkCIFAR(_Network):
    """The DARTS CIFAR evaluation network (3x3 conv stem to 3C channels)."""

    def __init__(self, C, num_classes, layers, auxiliary, genotype, stem_multiplier=3):
        super().__init__()
        genotype = _as_genotype(genotype)
        self.genotype = genotype
        self._auxiliary = bool(auxiliary)
        self.drop_path_prob = 0.0
        c_stem = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        C_prev, C_aux = self._build_cells(genotype, layers, C, c_stem, c_stem, False)
        if self._auxiliary:
            self.auxiliary_head = AuxiliaryHeadCIFAR(C_aux, num_classes)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x):
        s0 = s1 = self.stem(x)
        out, logits_aux = self._run_cells(s0, s1)
        logits = self.classifier(self.global_pooling(out).flatten(1))
        return logits, logits_aux


class NetworkImageNet(_Network):
    """The DARTS ImageNet (mobile setting) evaluation network: 224x224 input, stems down to
    28x28, 7x7 after the second reduction cell, 7x7 average pool."""

    def __init__(self, C, num_classes, layers, auxiliary, genotype):
        super().__init__()
        genotype = _as_genotype(genotype)
        self.genotype = genotype
        self._auxiliary = bool(auxiliary)
        self.drop_path_prob = 0.0
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        C_prev, C_aux = self._build_cells(genotype, layers, C, C, C, True)
        if self._auxiliary:
            self.auxiliary_head = AuxiliaryHeadImageNet(C_aux, num_classes)
        self.global_pooling = nn.AvgPool2d(7)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x):
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        out, logits_aux = self._run_cells(s0, s1)
        logits = self.classifier(self.global_pooling(out).flatten(1))
        return logits, logits_aux


# --- --arch ----------------------------------------------------------------------------------
def resolve_genotype(arch, allow_unfinished=False):
    """The Genotype that `--arch` names: the name of any Genotype in genotypes.py (the
    published ones and any added there), `Genotype(...)` text as the authors' logs print it
    (read as data, never run), or a JSON file: a DARTS-space search's results.json (its
    "genotype" entry, the final one) or a bare genotype (`genotype_to_json`'s dict). A search
    run folder holding results.json is accepted too. A Genotype passes through. Anything else
    is a one-line UserError, and so is a search that has not finished (its genotype is an
    intermediate one) unless `allow_unfinished`. Reading the file is common/run/genotype_source.py's,
    shared with 201-space."""
    if isinstance(arch, Genotype):
        return arch
    arch, named = str(arch).strip(), named_genotypes()
    if arch in named:
        return named[arch]
    if arch.startswith("Genotype("):
        try:
            return genotype_from_text(arch)
        except ValueError as err:
            raise UserError(f"--arch {arch[:60]!r}...: not a genotype: {one_line(err)}") from None
    names = ", ".join(named)
    file, data = read_arch_json(
        arch, missing=f"--arch {arch[:120]!r} is neither a genotype of genotypes.py ({names}), nor Genotype(...) "
                      f"text, nor an existing JSON file (a search's {RESULTS_NAME} or a genotype)",
        folder_hint=f"pass a DARTS-space search run folder, its {RESULTS_NAME}, a genotype JSON or one of {names}")
    if isinstance(data, dict) and all(key in data for key in Genotype._fields):
        genotype = data  # a bare genotype
    else:
        genotype = final_genotype(data, file, arch, allow_unfinished, kind=dict, space="DARTS-space",
                                  other="NAS-Bench-201")
    if genotype is None:
        raise UserError(f"--arch file {file} holds no genotype: expected a DARTS-space search's "
                        f"{RESULTS_NAME} (after its first epoch) or a genotype JSON with keys "
                        f"{', '.join(Genotype._fields)}")
    try:
        return genotype_from_json(genotype)
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"--arch file {file}: bad genotype: {one_line(err)}") from None
