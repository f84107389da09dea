"""The edges of a search with many of them (the DARTS space: 14 per cell type), drawn so that
their differences show: per cell type a heatmap of edges x ops of the mean mixing weight (the
Dirichlet mean for DrNAS) at the last epoch recorded, minus its uniform value 1 / (ops kept on
the edge). Early in a search every weight sits near 1/7 and the differences are about 1e-4, so
the colour scale is fitted to them (symmetric about 0) and each square is written in the
colour bar's unit; pruned ops are blank; the ops the run's genotype keeps are framed.
Torch-free: scripts/plot_search.py draws it from results.json.
"""
import math
from pathlib import Path

from reports.run_records import edge_names, op_names


def deviations(weights):
    """weights[edge][op] -> (mean - 1/kept)[edge][op], None for a pruned op (weight 0)."""
    rows = []
    for edge in weights:
        kept = [w for w in edge if w]
        rows.append([w - 1.0 / len(kept) if w else None for w in edge] if kept else [None] * len(edge))
    return rows


def chosen_cells(genotype, cell, labels):
    """{(edge, op name)} a DARTS-space genotype (results.json's dict) keeps in `cell`, edges by
    their labels ("node<-input"); empty for other genotypes."""
    pairs = genotype.get(cell) if isinstance(genotype, dict) else None
    if not isinstance(pairs, list):
        return set()
    index = {label: e for e, label in enumerate(labels)}
    found = set()
    for position, pair in enumerate(pairs):
        if isinstance(pair, list) and len(pair) == 2:
            edge = index.get(f"{position // 2 + 2}<-{pair[1]}")
            if edge is not None:
                found.add((edge, str(pair[0])))
    return found


def unit_exponent(values):
    """The power of ten the squares are written in: the largest deviation reads 1 to 10."""
    largest = max((abs(v) for row in values for v in row if v is not None), default=0.0)
    return math.floor(math.log10(largest)) if largest > 0 else 0


def _panel(ax, plt, values, row_names, col_names, chosen, exponent):
    import numpy as np

    grid = np.array([[np.nan if v is None else v / 10 ** exponent for v in row] for row in values])
    limit = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    for (r, c), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(c, r, f"{v:+.1f}", ha="center", va="center", fontsize=7,
                    color="white" if abs(v) > 0.6 * limit else "black")
    for edge, op in chosen:
        if op in col_names:
            ax.add_patch(plt.Rectangle((col_names.index(op) - 0.5, edge - 0.5), 1, 1, fill=False, linewidth=2,
                                       edgecolor="black"))
    ax.set_xticks(range(len(col_names)), col_names, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(row_names)), row_names, fontsize=8)
    ax.set_facecolor("#e6e6e6")  # pruned ops
    return image


CELL_TITLES = {"normal": "normal cell", "reduce": "reduction cell", "cell": "cell"}


def plot_edge_heatmap(run, label, out, series, plt):
    """edges.png as heatmaps (see the module doc); `series` is run_records.edge_series's, `plt`
    matplotlib.pyplot on a file backend."""
    last = {cell: weights[-1] for cell, (_, weights) in series.items()}
    values = {cell: deviations(w) for cell, w in last.items()}
    exponent = unit_exponent([row for rows in values.values() for row in rows])
    epoch = max(epochs[-1] for epochs, _ in series.values())
    size = (3.9 * len(values) + 1.4, 0.34 * max(map(len, last.values())) + 2.4)
    fig, axes = plt.subplots(1, len(values), figsize=size, squeeze=False, layout="constrained")
    recorded = run.get("edge_labels") if isinstance(run.get("edge_labels"), dict) else {}
    for ax, (cell, rows) in zip(axes[0], values.items()):
        labels = recorded.get(cell) if isinstance(recorded.get(cell), list) else []
        rows_named = ([str(name).replace("<-", "←") for name in labels] if len(labels) == len(rows)
                      else edge_names(run, len(rows), cell))
        image = _panel(ax, plt, rows, rows_named, op_names(run, len(rows[0])),
                       chosen_cells(run.get("genotype"), cell, labels), exponent)
        ax.set_title(CELL_TITLES.get(cell, cell), fontsize=10)
    bar = fig.colorbar(image, ax=list(axes[0]), shrink=0.85)
    bar.set_label(f"mean weight − 1/(ops kept), in units of 1e{exponent}", fontsize=9)
    fig.suptitle(f"{label}: mean op weight minus uniform per edge at epoch {epoch}\n"
                 "(framed: the ops of the run's genotype; blank: pruned)", fontsize=10)
    path = Path(out) / "edges.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
