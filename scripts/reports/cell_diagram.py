"""Cell diagrams: a found cell drawn as a graph (scripts/plot_genotype.py), as DARTS and PC-DARTS
drew theirs: the cell's inputs, its intermediate nodes, and one arrow per kept edge labelled
with its op.

    graphs = CELL_GRAPHS[space](genotype)         # [CellGraph], one per cell type
    draw(graphs, "out/DrNAS_cifar10", engine="auto")  # -> [out/DrNAS_cifar10.png, .pdf]

With Graphviz's `dot` on the PATH (engine "auto" or "graphviz") the graphs are laid out by it
from the DOT text of `dot_source`; otherwise (or engine "matplotlib") they are drawn with
matplotlib, a declared dependency: the nodes in a row, left to right, every edge an arc
labelled with its op and coloured by it.
"""
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError

INPUT, INNER, OUTPUT = "input", "inner", "output"
NODE_COLOURS = {INPUT: "#a9dfbf", INNER: "#aed6f1", OUTPUT: "#f9e79f"}
OP_COLOURS = {"sep_conv_3x3": "#1f77b4", "sep_conv_5x5": "#17becf", "dil_conv_3x3": "#2ca02c",
              "dil_conv_5x5": "#98df8a", "max_pool_3x3": "#d62728", "avg_pool_3x3": "#ff7f0e",
              "skip_connect": "#7f7f7f", "nor_conv_3x3": "#1f77b4", "nor_conv_1x1": "#9467bd",
              "conv_7x1_1x7": "#8c564b", "none": "#c7c7c7"}
FORMATS = ("png", "pdf")


@dataclass(frozen=True)
class CellGraph:
    title: str
    nodes: tuple  # (name, kind) in drawing order, left to right
    edges: tuple  # (source, target, op); op None for an unlabelled edge (into the cell output)


def darts_cells(genotype):
    """The normal and the reduction cell of a DARTS-space Genotype: inputs c_{k-2} and c_{k-1},
    one node per pair of (op, input), the concatenated nodes joined into c_{k}."""
    graphs = []
    for cell, title in (("normal", "normal cell"), ("reduce", "reduction cell")):
        pairs = list(getattr(genotype, cell))
        inner = [str(i) for i in range(len(pairs) // 2)]
        states = ["c_{k-2}", "c_{k-1}", *inner]
        edges = [(states[j], inner[index // 2], op) for index, (op, j) in enumerate(pairs)]
        edges += [(states[s], "c_{k}", None) for s in getattr(genotype, f"{cell}_concat")]
        nodes = (("c_{k-2}", INPUT), ("c_{k-1}", INPUT), *((n, INNER) for n in inner), ("c_{k}", OUTPUT))
        graphs.append(CellGraph(title, nodes, tuple(edges)))
    return graphs


def nb201_cell(cell):
    """The NAS-Bench-201 cell string `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`: node 0 the input,
    node 3 the output, one edge per op that is not `none` (a `none` edge carries nothing)."""
    from space201.model import parse_cell  # strict: a one-line error for anything else
    from space201.cell import EDGES, OPS

    ops = parse_cell(cell, source="cell")
    last = max(i for i, _ in EDGES)
    nodes = tuple((str(n), INPUT if n == 0 else OUTPUT if n == last else INNER) for n in range(last + 1))
    edges = tuple((str(j), str(i), OPS[o]) for (i, j), o in zip(EDGES, ops) if OPS[o] != "none")
    return [CellGraph("NAS-Bench-201 cell", nodes, edges)]


CELL_GRAPHS = {"darts": darts_cells, "imagenet": darts_cells, "201": nb201_cell}


def _dot_id(name):
    return '"' + name.replace('"', "") + '"'


def dot_source(graphs):
    """The DOT text of the graphs, one cluster per cell, left to right (DARTS' visualize.py style)."""
    lines = ["digraph cells {", '  rankdir=LR; node [style="filled,rounded", shape=rect, fontname=helvetica];',
             "  edge [fontname=helvetica, fontsize=11];"]
    for index, graph in enumerate(graphs):
        lines.append(f'  subgraph cluster_{index} {{ label="{graph.title}"; fontname=helvetica;')
        for name, kind in graph.nodes:
            lines.append(f'    {_dot_id(f"{index}:{name}")} [label={_dot_id(name)}, fillcolor="{NODE_COLOURS[kind]}"];')
        for source, target, op in graph.edges:
            label = f', label="{op}", color="{OP_COLOURS.get(op, "black")}"' if op else ', color="gray"'
            lines.append(f'    {_dot_id(f"{index}:{source}")} -> {_dot_id(f"{index}:{target}")} [{label[2:]}];')
        lines.append("  }")
    return "\n".join(lines + ["}"]) + "\n"


def _render_dot(graphs, stem):
    source = dot_source(graphs)
    written = []
    for fmt in FORMATS:
        path = Path(f"{stem}.{fmt}")
        done = subprocess.run(["dot", f"-T{fmt}", "-o", str(path)], input=source, text=True, capture_output=True)
        if done.returncode:
            raise UserError(f"graphviz's dot failed ({done.stderr.strip()[:120]}): pass --engine matplotlib")
        written.append(path)
    return written


def _arc(ax, x0, x1, above, colour, label, height):
    """One edge from x0 to x1 as a half ellipse above or below the row of nodes, an arrow head
    into the target, the label at the top."""
    from matplotlib.patches import Arc

    sign = 1 if above else -1
    ax.add_patch(Arc(((x0 + x1) / 2, 0), x1 - x0, 2 * height, theta1=0 if above else 180,
                     theta2=180 if above else 360, color=colour, linewidth=2.0 if label else 1.0, zorder=1))
    ax.annotate("", xy=(x1, sign * 0.24), xytext=(x1 + 0.01, sign * 0.36), zorder=2,
                arrowprops=dict(arrowstyle="-|>", color=colour, linewidth=1.0, mutation_scale=14))
    if label:
        ax.text((x0 + x1) / 2, sign * height, label, ha="center", va="center", fontsize=8.5, zorder=3,
                bbox=dict(boxstyle="round,pad=0.2", facecolor="white", edgecolor=colour, linewidth=1.0))


def _height(span, labelled=True):
    """An arc's height: labelled arcs apart by more than a label's height per node of span; the
    unlabelled ones (into the cell output) flatter."""
    return 0.3 + 0.27 * span if labelled else 0.25 + 0.1 * span


def _draw_graph(ax, graph):
    """One cell as an arc diagram: the nodes in a row, each op edge an arc above it (the longer
    the higher, so that labels do not meet; a second edge between the same nodes below), the
    unlabelled edges into the cell output below; returns the height drawn."""
    x = {name: 1.5 * index for index, (name, _) in enumerate(graph.nodes)}
    seen, arcs = set(), []
    for source, target, op in graph.edges:
        above = op is not None and (source, target) not in seen
        seen.add((source, target))
        colour = OP_COLOURS.get(op, "#555555") if op else "#bbbbbb"
        arcs.append((x[source], x[target], above, colour, op, _height(x[target] - x[source], op is not None)))
    for arc in arcs:
        _arc(ax, *arc)
    for name, kind in graph.nodes:
        ax.text(x[name], 0, name.replace("_{", "$_{").replace("}", "}$") if "_{" in name else name,
                ha="center", va="center", fontsize=11, zorder=4,
                bbox=dict(boxstyle="round,pad=0.45", facecolor=NODE_COLOURS[kind], edgecolor="#333333"))
    top, bottom = (max([arc[5] for arc in arcs if arc[2] == side] or [0.1]) + 0.35 for side in (True, False))
    ax.set_xlim(-0.9, max(x.values()) + 0.9)
    ax.set_ylim(-bottom, top)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(graph.title, fontsize=12)
    return top + bottom


def _render_matplotlib(graphs, stem):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = max(1.5 * (len(g.nodes) - 1) + 1.8 for g in graphs)
    heights = []
    fig, axes = plt.subplots(len(graphs), 1, squeeze=False)
    for ax, graph in zip(axes[:, 0], graphs):
        heights.append(_draw_graph(ax, graph))
    fig.set_size_inches(width * 1.25, sum(heights) * 1.25 + 0.45 * len(graphs))
    fig.tight_layout()
    written = []
    for fmt in FORMATS:
        path = Path(f"{stem}.{fmt}")
        fig.savefig(path, dpi=130)
        written.append(path)
    plt.close(fig)
    return written


ENGINES = ("auto", "graphviz", "matplotlib")


def draw(graphs, stem, engine="auto"):
    """Write `stem`.png and `stem`.pdf; returns their paths. Graphviz where its `dot` is
    installed (engine auto or graphviz), matplotlib otherwise."""
    has_dot = shutil.which("dot") is not None
    if engine == "graphviz" and not has_dot:
        raise UserError("--engine graphviz: graphviz's `dot` is not on the PATH: install graphviz, or leave "
                        "--engine out for the matplotlib drawing")
    if has_dot and engine != "matplotlib":
        return _render_dot(graphs, stem)
    return _render_matplotlib(graphs, stem)


def edge_count(graphs):
    return sum(1 for graph in graphs for _, _, op in graph.edges if op)

