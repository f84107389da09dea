"""DARTS-space cell genotypes: the published ones, JSON round-trip, and the derivation rule.

A genotype lists, for every intermediate node of a cell (nodes 2, 3, ... after the two cell
inputs 0 and 1), two `(op, input state)` pairs, and the states concatenated into the cell
output. All genotypes here use lists (never `range`), so a genotype read back from JSON
compares equal to the original.

Derivation rule (`derive`, DARTS section 2.4 / DrNAS eq. 4), given one weight per edge and op
(the search network passes softmax(alpha) over the kept ops, as the authors' genotype() does,
or with `--derive mean` the Dirichlet mean), for each intermediate node:
  * on every incoming edge, the candidate ops are those whose weight is not exactly 0 (0
    marks an op pruned by progressive learning) and whose name is not `none`; the edge's
    op is the candidate with the largest weight, ties going to the lower op index (the
    earlier op in `op_names`);
  * the node keeps the 2 edges whose chosen op weighs most, ties going to the lower input
    state; the two pairs are listed strongest first (DARTS' order);
  * an edge with no candidate (all its weights 0, or only `none`) is never kept; if a node
    has fewer than 2 edges with a candidate, `derive` raises ValueError (weights coming
    from `common.arch.ArchWeights` always have >= 1 positive weight per edge).
"""
import math
from collections import namedtuple

from common.spaces import ZERO_OP
from darts_space.operations import OPS, PRIMITIVES

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")

_CONCAT = [2, 3, 4, 5]

# --- published genotypes -----------------------------------------------------------------
NASNet = Genotype(
    normal=[
        ("sep_conv_5x5", 1), ("sep_conv_3x3", 0),
        ("sep_conv_5x5", 0), ("sep_conv_3x3", 0),
        ("avg_pool_3x3", 1), ("skip_connect", 0),
        ("avg_pool_3x3", 0), ("avg_pool_3x3", 0),
        ("sep_conv_3x3", 1), ("skip_connect", 1),
    ],
    normal_concat=[2, 3, 4, 5, 6],
    reduce=[
        ("sep_conv_5x5", 1), ("sep_conv_7x7", 0),
        ("max_pool_3x3", 1), ("sep_conv_7x7", 0),
        ("avg_pool_3x3", 1), ("sep_conv_5x5", 0),
        ("skip_connect", 3), ("avg_pool_3x3", 2),
        ("sep_conv_3x3", 2), ("max_pool_3x3", 1),
    ],
    reduce_concat=[4, 5, 6],
)

AmoebaNet = Genotype(
    normal=[
        ("avg_pool_3x3", 0), ("max_pool_3x3", 1),
        ("sep_conv_3x3", 0), ("sep_conv_5x5", 2),
        ("sep_conv_3x3", 0), ("avg_pool_3x3", 3),
        ("sep_conv_3x3", 1), ("skip_connect", 1),
        ("skip_connect", 0), ("avg_pool_3x3", 1),
    ],
    normal_concat=[4, 5, 6],
    reduce=[
        ("avg_pool_3x3", 0), ("sep_conv_3x3", 1),
        ("max_pool_3x3", 0), ("sep_conv_7x7", 2),
        ("sep_conv_7x7", 0), ("avg_pool_3x3", 1),
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),
        ("conv_7x1_1x7", 0), ("sep_conv_3x3", 5),
    ],
    reduce_concat=[3, 4, 6],
)

DARTS_V1 = Genotype(
    normal=[
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
        ("skip_connect", 0), ("sep_conv_3x3", 1),
        ("skip_connect", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0), ("skip_connect", 2),
    ],
    normal_concat=list(_CONCAT),
    reduce=[
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),
        ("skip_connect", 2), ("max_pool_3x3", 0),
        ("max_pool_3x3", 0), ("skip_connect", 2),
        ("skip_connect", 2), ("avg_pool_3x3", 0),
    ],
    reduce_concat=list(_CONCAT),
)

DARTS_V2 = Genotype(
    normal=[
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1), ("skip_connect", 0),
        ("skip_connect", 0), ("dil_conv_3x3", 2),
    ],
    normal_concat=list(_CONCAT),
    reduce=[
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),
        ("skip_connect", 2), ("max_pool_3x3", 1),
        ("max_pool_3x3", 0), ("skip_connect", 2),
        ("skip_connect", 2), ("max_pool_3x3", 1),
    ],
    reduce_concat=list(_CONCAT),
)

PC_DARTS_cifar = Genotype(
    normal=[
        ("sep_conv_3x3", 1), ("skip_connect", 0),
        ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
        ("sep_conv_5x5", 0), ("sep_conv_3x3", 1),
        ("avg_pool_3x3", 0), ("dil_conv_3x3", 1),
    ],
    normal_concat=list(_CONCAT),
    reduce=[
        ("sep_conv_5x5", 1), ("max_pool_3x3", 0),
        ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 3),
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 2),
    ],
    reduce_concat=list(_CONCAT),
)

PC_DARTS_image = Genotype(
    normal=[
        ("skip_connect", 1), ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 0), ("skip_connect", 1),
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 3),
        ("sep_conv_3x3", 1), ("dil_conv_5x5", 4),
    ],
    normal_concat=list(_CONCAT),
    reduce=[
        ("sep_conv_3x3", 0), ("skip_connect", 1),
        ("dil_conv_5x5", 2), ("max_pool_3x3", 1),
        ("sep_conv_3x3", 2), ("sep_conv_3x3", 1),
        ("sep_conv_5x5", 0), ("sep_conv_3x3", 3),
    ],
    reduce_concat=list(_CONCAT),
)

DrNAS_cifar10 = Genotype(
    normal=[
        ("sep_conv_3x3", 0), ("sep_conv_5x5", 1),
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 2),
        ("skip_connect", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 2), ("dil_conv_5x5", 3),
    ],
    normal_concat=list(_CONCAT),
    reduce=[
        ("max_pool_3x3", 0), ("sep_conv_5x5", 1),
        ("dil_conv_5x5", 2), ("sep_conv_5x5", 1),
        ("sep_conv_5x5", 1), ("dil_conv_5x5", 3),
        ("skip_connect", 4), ("sep_conv_5x5", 1),
    ],
    reduce_concat=list(_CONCAT),
)

DrNAS_imagenet = Genotype(
    normal=[
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0), ("dil_conv_3x3", 3),
        ("skip_connect", 0), ("sep_conv_3x3", 1),
    ],
    normal_concat=list(_CONCAT),
    reduce=[
        ("max_pool_3x3", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0), ("skip_connect", 2),
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 2),
        ("sep_conv_3x3", 3), ("sep_conv_3x3", 1),
    ],
    reduce_concat=list(_CONCAT),
)

DARTS = DARTS_V2  # the DARTS code's alias

GENOTYPES = {
    "DrNAS_cifar10": DrNAS_cifar10,
    "DrNAS_imagenet": DrNAS_imagenet,
    "DARTS_V1": DARTS_V1,
    "DARTS_V2": DARTS_V2,
    "DARTS": DARTS_V2,
    "PC_DARTS_cifar": PC_DARTS_cifar,
    "PC_DARTS_image": PC_DARTS_image,
    "NASNet": NASNet,
    "AmoebaNet": AmoebaNet,
}


# --- JSON ----------------------------------------------------------------------------------
def genotype_to_json(genotype):
    """{'normal': [[op, input], ...], 'normal_concat': [...], 'reduce': ..., 'reduce_concat': ...}"""
    out = {}
    for cell in ("normal", "reduce"):
        out[cell] = [[str(op), int(j)] for op, j in getattr(genotype, cell)]
        out[f"{cell}_concat"] = [int(s) for s in getattr(genotype, f"{cell}_concat")]
    return out


def _index(value, where):
    """A state index: an int (not a bool, not a float such as 0.9 that int() would truncate)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: state indices are whole numbers, got {value!r}")
    return value


def _pairs(items, cell):
    """The (op name, input) pairs of a cell, each checked to be a pair of a name and a value."""
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"{cell} cell: expected a list of (op, input) pairs")
    for item in items:
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str):
            raise ValueError(f"{cell} cell: expected (op, input) pairs, got {str(item)[:40]}")
    return items


def genotype_from_json(data):
    """The Genotype of `genotype_to_json`'s dict (a Genotype is accepted too).

    Checks the structure: two pairs per node, known op names, inputs among the states
    before the node, concatenated states among the cell's states. Raises ValueError."""
    if isinstance(data, Genotype):
        data = genotype_to_json(data)
    missing = [key for key in Genotype._fields if key not in data]
    if missing:
        raise ValueError(f"not a genotype: missing {', '.join(missing)}")
    fields = {}
    for cell in ("normal", "reduce"):
        pairs = [(op, _index(j, cell)) for op, j in _pairs(data[cell], cell)]
        if not pairs or len(pairs) % 2:
            raise ValueError(f"{cell} cell: need two (op, input) pairs per node, got {len(pairs)} pairs")
        for index, (op, j) in enumerate(pairs):
            node = index // 2 + 2
            if op not in OPS:
                raise ValueError(f"{cell} cell: unknown op {op!r}")
            if not 0 <= j < node:
                raise ValueError(f"{cell} cell: node {node} cannot take input {j}")
        if not isinstance(data[f"{cell}_concat"], (list, tuple)):
            raise ValueError(f"{cell}_concat: expected a list of states")
        concat = [_index(s, f"{cell}_concat") for s in data[f"{cell}_concat"]]
        states = len(pairs) // 2 + 2
        if not concat or any(not 0 <= s < states for s in concat):
            raise ValueError(f"{cell} cell: concat {concat} outside states 0..{states - 1}")
        fields[cell], fields[f"{cell}_concat"] = pairs, concat
    return Genotype(**fields)


# --- derivation ----------------------------------------------------------------------------
def num_edges(steps=4):
    """Edges of a cell: node i (0-based) has inputs from the 2 cell inputs and nodes < i."""
    return sum(2 + i for i in range(steps))


def _rows(weights):
    rows = weights.tolist() if hasattr(weights, "tolist") else [list(row) for row in weights]
    return [[float(v) for v in row] for row in rows]


def derive_cell(weights, op_names=PRIMITIVES, steps=4):
    """The (op, input) pairs of one cell from its mixing weights (edges x ops); see module doc."""
    rows = _rows(weights)
    if len(rows) != num_edges(steps) or any(len(row) != len(op_names) for row in rows):
        raise ValueError(f"weights must be {num_edges(steps)} edges x {len(op_names)} ops")
    if any(math.isnan(v) for row in rows for v in row):
        raise ValueError("weights contain NaN")
    candidates = [o for o, name in enumerate(op_names) if name != ZERO_OP]
    gene, start = [], 0
    for node in range(steps):
        inputs = node + 2
        best = {}  # input state -> (weight, op index) of its strongest candidate op
        for j in range(inputs):
            row = rows[start + j]
            live = [o for o in candidates if row[o] != 0.0]
            if live:
                op = max(live, key=lambda o: row[o])  # first maximum: lower op index wins ties
                best[j] = (row[op], op)
        if len(best) < 2:
            raise ValueError(f"node {node + 2}: fewer than 2 incoming edges have a live op")
        kept = sorted(best, key=lambda j: -best[j][0])[:2]  # stable: lower input wins ties
        gene.extend((op_names[best[j][1]], j) for j in kept)
        start += inputs
    return gene


def derive(weights_normal, weights_reduce, op_names=PRIMITIVES, steps=4, multiplier=None):
    """The Genotype derived from the normal and reduction cells' mixing weights (see module doc).
    The concatenated states are the last `multiplier` (default: all `steps`) nodes."""
    multiplier = steps if multiplier is None else multiplier
    concat = list(range(2 + steps - multiplier, steps + 2))
    return Genotype(
        normal=derive_cell(weights_normal, op_names, steps), normal_concat=concat,
        reduce=derive_cell(weights_reduce, op_names, steps), reduce_concat=list(concat),
    )
