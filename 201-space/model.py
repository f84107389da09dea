"""The NAS-Bench-201 evaluation network: one cell stacked into the benchmark's macro skeleton,
the `TinyNetwork` of the benchmark authors' package (xautodl.models.cell_infers).

    TinyNetwork(C=16, N=5, genotype=BEST_CELL, num_classes=10)   # forward -> (logits, None)
    parse_cell(text) -> op indices, EDGES order   # strict: a UserError for anything else
    resolve_cell(arch) -> cell string             # a cell string, a search's results.json or run folder
    count_parameters(model) -> float              # millions

The network: 3x3 conv stem (3 -> C) + BN; three stages of N cells at C, 2C and 4C channels,
the stages joined by ResNet basic blocks of stride 2 (ReLU-conv-BN a with stride 2, ReLU-conv-BN
b, shortcut 2x2 average pool + 1x1 conv); BN + ReLU, global average pooling, a linear classifier.

A cell is the DAG of the genotype over 4 nodes: node i (1..3) sums one op per earlier node j,
the edges in the benchmark's order (cell.EDGES), and its output is node 3. The ops keep
size and channels: `none` is x * 0 (xautodl's Zero, NaN-propagating like theirs), `skip_connect`
the identity, `nor_conv_KxK` ReLU-conv-BN, `avg_pool_3x3` a 3x3 average pool of stride 1 that
does not count the padding. Every BatchNorm is affine and tracks running statistics and no
convolution has a bias, as in xautodl (affine=True, track_running_stats=True).

The modules are built in xautodl's order, so `named_parameters()` and `named_buffers()` follow
theirs one to one (the names differ: their ReLU-conv-BN wraps its layers in `.op`). The building
blocks and the cell-string parser are shared with the search network (cell.py), so both read a
cell the same way.
"""
import functools
import os
import re

from torch import nn

from common.errors import UserError
from common.run.genotype_source import final_genotype, read_arch_json
from common.run.results import RESULTS_NAME
from common.run.train import count_parameters  # noqa: F401  (part of this module's API)
from space201.cell import EDGES, NUM_NODES, OPS, ResidualBlock, genotype_string, make_op, parse_genotype

# The default --arch: NAS-Bench-201's best cell on CIFAR-10
BEST_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
CELL_FORM = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
STRUCTURE = re.compile(r"Structure\(\d+ nodes with (\|.*\|)\)")  # how xautodl's Structure prints a cell


# --- the cell string -----------------------------------------------------------------------------
def parse_cell(text, source="--arch"):
    """The op index of every edge (EDGES order) of the cell string `text`. Anything but a
    well-formed cell of the benchmark is a one-line UserError that begins with `source`:
    the string must be exactly what `genotype_string` writes for the ops it names."""
    text = str(text).strip()
    try:
        ops = parse_genotype(text)
    except (ValueError, KeyError):  # an item that is not op~j, an unknown op, a missing edge
        ops = None
    if ops is not None and genotype_string(ops) == text:
        return ops
    unknown = sorted({item.split("~")[0] for item in re.split(r"[|+]", text) if item} - set(OPS))
    why = f"unknown op {', '.join(unknown)}" if unknown else f"expected the form {CELL_FORM}"
    raise UserError(f"{source} {text[:120]!r} is not a NAS-Bench-201 cell: {why}, "
                    f"each op one of {', '.join(OPS)} (e.g. {BEST_CELL})")


def cell_ops(genotype):
    """Op indices from a cell string or a sequence of op indices (one per edge)."""
    if isinstance(genotype, str):
        return parse_cell(genotype, source="genotype")
    ops = [int(o) for o in genotype]
    if len(ops) != len(EDGES) or not all(0 <= o < len(OPS) for o in ops):
        raise ValueError(f"a NAS-Bench-201 cell has {len(EDGES)} op indices in [0, {len(OPS)}), got {ops}")
    return ops


def resolve_cell(arch, allow_unfinished=False):
    """The cell string that `--arch` names: a cell string (or the authors' logged
    `Structure(4 nodes with |...|)`), or a NAS-Bench-201 search's
    results.json (its final "genotype") or run folder, read by common/run/genotype_source.py; a
    search that has not finished is refused unless `allow_unfinished`. One-line UserErrors."""
    arch = str(arch).strip()
    printed = STRUCTURE.fullmatch(arch)  # the authors' logs print their genotype as Structure(...)
    if printed:
        arch = printed.group(1)
    if "|" in arch and not os.path.exists(arch):  # no path has a '|', every cell string has
        parse_cell(arch)
        return arch
    file, data = read_arch_json(
        arch, missing=f"--arch {arch!r} is neither a NAS-Bench-201 cell string ({CELL_FORM}, e.g. {BEST_CELL}) "
                      f"nor an existing {RESULTS_NAME} or run folder of a NAS-Bench-201 search",
        folder_hint=f"pass a NAS-Bench-201 search run folder, its {RESULTS_NAME} or a cell string")
    genotype = final_genotype(data, file, arch, allow_unfinished, kind=str, space="NAS-Bench-201",
                              other="DARTS-space")
    if genotype is None:
        raise UserError(f"--arch file {file} holds no genotype: expected a NAS-Bench-201 search's "
                        f"{RESULTS_NAME} (after its first epoch)")
    parse_cell(genotype, source=f"--arch file {file}: its genotype")
    return genotype.strip()


# --- the network ---------------------------------------------------------------------------------
# an op of an evaluation cell: affine BN (xautodl's InferCell); the pooling kernel itself, not the
# search's faster equal one: the benchmark's exact numbers
make_eval_op = functools.partial(make_op, affine=True,
                                 avg_pool=lambda: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False))


class InferCell(nn.Module):
    """One cell of fixed ops, `channels` in and out (see the module doc)."""

    def __init__(self, ops, channels):
        super().__init__()
        self.edges = nn.ModuleList(make_eval_op(OPS[o], channels) for o in ops)

    def forward(self, x):
        nodes = [x]
        for i in range(1, NUM_NODES):
            # summed in edge order from 0, as xautodl's sum(): the same float result
            nodes.append(sum(self.edges[e](nodes[j]) for e, (node, j) in enumerate(EDGES) if node == i))
        return nodes[-1]


def _cells(ops, C, N):
    """The three stages of N cells, a stride-2 residual block before the second and third."""
    layers, c_prev = [], C
    for stage in range(3):
        width = C * 2**stage
        if stage:
            layers.append(ResidualBlock(c_prev, width))
        layers.extend(InferCell(ops, width) for _ in range(N))
        c_prev = width
    return layers, c_prev


class TinyNetwork(nn.Module):
    """The NAS-Bench-201 network of a cell (a cell string or op indices; see the module doc)."""

    def __init__(self, C=16, N=5, genotype=BEST_CELL, num_classes=10):
        super().__init__()
        ops = cell_ops(genotype)
        self.genotype = genotype_string(ops)
        # the training loop sets this every epoch; the benchmark's network drops no paths
        self.drop_path_prob = 0.0
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers, c_out = _cells(ops, C, N)
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_out, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        logits = self.classifier(self.global_pooling(self.lastact(x)).flatten(1))
        return logits, None  # no auxiliary head: the shared loop's (logits, logits_aux)
