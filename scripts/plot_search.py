"""Draw a search run's curves from its results.json (paper figures 1, 4 and 5).

    python scripts/plot_search.py RUN_DIR [RUN_DIR ...] [--out DIR] [--metric cifar10_test]
                                  [--labels A B ...] [--edges_run INDEX]

Writes three PNG files into `--out` (default: the first RUN_DIR):

- exploration.png (figure 1): per epoch, the min-max band of the benchmark accuracy of the
  architectures sampled from the Dirichlet (`exploration`, recorded with --sample_archs),
  their mean (thin line) and the accuracy of the Dirichlet-mean architecture (solid line);
  below it, the number of distinct sampled architectures (alone for runs without a benchmark).
  Accuracies from a stand-in benchmark (scripts/standin_benchmark.py) are made up, and its title
  and axis say so.
- eigenvalue.png (figures 4-5): the largest Hessian eigenvalue of the validation loss with
  respect to the architecture parameters (recorded with --hessian_freq), one line per run.
- edges.png: the expected mixing weight (Dirichlet mean) of every op on every edge over
  the epochs, one subplot per edge; of the first run, or of --edges_run INDEX. A space with
  more than 8 edges per cell (the DARTS space) gets a heatmap per cell type instead: the mean
  minus its uniform value at the last epoch (scripts/reports/edge_heatmap.py).

Several runs overlay on one figure, labelled by --labels or by "method seed". A figure
whose data no run recorded is skipped with a note.
"""
import math
import sys
from pathlib import Path

from common.errors import ArgumentParser, UserError, exit_on_user_error
from common.run.results import METHOD_TITLES, METRIC_TITLES, METRICS, results_file
from reports.edge_heatmap import plot_edge_heatmap
from reports.figure_kit import MaxNLocator, epoch_axis, nan, pyplot, save_figure
from reports.run_records import (edge_names, edge_series, epochs_of, exploration_series, is_standin,
                                load_run, number, op_names, readable_runs, stage_starts)

FIGURES = ("exploration.png", "eigenvalue.png", "edges.png")
MAX_LINE_EDGES = 8  # edges per cell type drawn as curves; more (the DARTS space's 14) as a heatmap


# ----------------------------------------------------------------------------- labels

def default_labels(runs):
    """'method seed N' per run; settings that differ (dataset, k, ...) are added to tell apart."""
    def base(run):
        args = run["args"]
        method = METHOD_TITLES.get(args.get("method"), args.get("method") or "run")
        return f"{method} seed {args.get('seed', '?')}"

    labels = [base(r) for r in runs]
    if len(set(labels)) == len(labels):
        return labels
    extra_keys = [key for key in ("dataset", "k", "reg_type", "reg_scale")
                  if len({str(r["args"].get(key)) for r in runs}) > 1]
    labels = [base(r) + "".join(f" {key}={r['args'].get(key)}" for key in extra_keys) for r in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({Path(r['dir']).name})" for label, r in zip(labels, runs)]
    return labels


# ----------------------------------------------------------------------------- figures

def exploration_title(runs):
    """The title of exploration.png: marked when a run's accuracies come from a stand-in benchmark."""
    title = "Exploration: benchmark accuracy of architectures sampled from the Dirichlet"
    if any(is_standin(run) for run in runs):
        title += "\nSTAND-IN benchmark: made-up accuracies, not NAS-Bench-201"
    return title


def plot_exploration(runs, labels, metric, out, note):
    plt = pyplot()
    series = []
    for run, label in zip(runs, labels):
        data = exploration_series(run, metric)
        if data is None:
            note(f"note: {label} ({run['dir']}): no exploration data (searched without --sample_archs); "
                 "left out of exploration.png")
        else:
            series.append((label, run, data))
            if all(v is None for v in data[1] + data[5]):
                note(f"note: {label} ({run['dir']}): no {metric} accuracies (searched without --api_path): "
                     "its distinct counts alone are drawn")
    if not series:
        note("note: exploration.png not drawn: no run has exploration data")
        return None
    accuracies = any(v is not None for _, _, data in series for v in data[1] + data[5])
    fig, axes = plt.subplots(1 + accuracies, 1, figsize=(8, 6.5 if accuracies else 3.2), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1.2] if accuracies else [1]})
    ax, ax_n = axes[0, 0], axes[-1, 0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, run, (ep, lo, mean, hi, distinct, arch)) in enumerate(series):
        color = colors[i % len(colors)]
        if accuracies:
            ax.fill_between(ep, nan(lo), nan(hi), color=color, alpha=0.2, linewidth=0,
                            label=f"{label}: sampled min-max")
            ax.plot(ep, nan(mean), color=color, linewidth=0.8, linestyle="--", label=f"{label}: sampled mean")
            ax.plot(ep, nan(arch), color=color, linewidth=2.0, label=f"{label}: Dirichlet-mean architecture")
        ax_n.plot(ep, nan(distinct), color=color, linewidth=1.2, marker=".", label=label)
        samples = {e.get("exploration", {}).get("samples") for e in epochs_of(run)
                   if isinstance(e.get("exploration"), dict)} - {None}
        if len(samples) == 1:
            ax_n.axhline(samples.pop(), color=color, linewidth=0.6, linestyle=":")
    if accuracies:
        made_up = any(is_standin(run) for _, run, _ in series)
        ax.set_ylabel(f"{METRIC_TITLES.get(metric, metric)} accuracy (%)" + (", MADE UP" if made_up else ""))
        ax.set_title(exploration_title([run for _, run, _ in series]))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    else:
        ax_n.legend(fontsize=7)
    epoch_axis(ax_n, "distinct", "distinct architectures among the samples (dotted: samples drawn)",
               fontsize=9)
    ax_n.set_ylim(bottom=0)
    return save_figure(fig, out, "exploration.png")


def plot_eigenvalue(runs, labels, out, note):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = 0
    for run, label in zip(runs, labels):
        points = [(e["epoch"], number(e.get("hessian_eigenvalue"))) for e in epochs_of(run)]
        points = [(x, y) for x, y in points if y is not None]
        if not points:
            freq = run["args"].get("hessian_freq")
            why = (f"--hessian_freq {freq} but only {len(epochs_of(run))} epochs" if freq
                   else "searched without --hessian_freq")
            note(f"note: {label} ({run['dir']}): no hessian_eigenvalue recorded ({why}); "
                 "left out of eigenvalue.png")
            continue
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.5, label=label)
        drawn += 1
    if not drawn:
        plt.close(fig)
        note("note: eigenvalue.png not drawn: no run has hessian_eigenvalue values")
        return None
    epoch_axis(ax, "largest eigenvalue", "Largest Hessian eigenvalue of the validation loss w.r.t. α",
               fontsize=11)
    ax.legend(fontsize=8)
    return save_figure(fig, out, "eigenvalue.png")


def edge_layout(series):
    """(cell, edges, ops, columns) per cell type, and the shared number of columns."""
    layout = []
    for cell, (_, weights) in series.items():
        n_edges = max(len(w) for w in weights)
        n_ops = max(len(edge) for w in weights for edge in w)
        layout.append((cell, n_edges, n_ops, 3 if n_edges <= 6 else 7 if n_edges == 14 else min(n_edges, 5)))
    return layout, max(item[3] for item in layout)


def y_range(series):
    """One y range for all edges, fitted to the data (early in a search the weights sit near 1/ops)."""
    values = [v for _, weights in series.values() for w in weights for edge in w for v in edge if v is not None]
    low, high = min(values), max(values)
    pad = max(0.06 * (high - low), 1e-3)
    return max(0.0, low - pad), min(1.0, high + pad)


def stage_segments(epochs, boundaries):
    """(start, end) index ranges of the epochs of each stage: pruning and widening happen between
    two epochs, so the lines break there."""
    cuts = [0] + [i for i, ep in enumerate(epochs) if i and any(epochs[i - 1] < b <= ep for b in boundaries)]
    return list(zip(cuts, cuts[1:] + [len(epochs)]))


def draw_edge(ax, epochs, weights, edge, n_ops, segments, boundaries, colors):
    """One edge's op weights over the epochs; returns the line of every op."""
    lines = []
    for op in range(n_ops):
        ys = [w[edge][op] if edge < len(w) and op < len(w[edge]) and w[edge][op] is not None
              else float("nan") for w in weights]
        for lo, hi in segments:
            (line,) = ax.plot(epochs[lo:hi], ys[lo:hi], color=colors[op % len(colors)],
                              linewidth=1.3, marker="." if hi - lo == 1 else None)
        lines.append(line)
    for start in boundaries:
        ax.axvline(start - 0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
    return lines


def plot_edges(run, label, out, note):
    series = edge_series(run, note, label)
    series = {cell: data for cell, data in series.items() if data[1] and data[1][-1]}
    if not series:
        note(f"note: edges.png not drawn: {label} ({run['dir']}) has no architecture records")
        return None
    plt = pyplot()
    if max(len(weights[-1]) for _, weights in series.values()) > MAX_LINE_EDGES:  # the DARTS space
        return plot_edge_heatmap(run, label, out, series, plt)
    layout, ncols = edge_layout(series)
    rows_of = [math.ceil(n_edges / ncols) for _, n_edges, _, _ in layout]
    fig, axes = plt.subplots(sum(rows_of), ncols, figsize=(2.9 * ncols, 2.3 * sum(rows_of) + 0.9),
                             sharex=True, sharey=True, squeeze=False)
    ylim, colors = y_range(series), plt.rcParams["axes.prop_cycle"].by_key()["color"]
    boundaries, handles, row = stage_starts(epochs_of(run)), {}, 0
    for (cell, n_edges, n_ops, _), rows in zip(layout, rows_of):
        epochs, weights = series[cell]
        names, titles = op_names(run, n_ops), edge_names(run, n_edges, cell)
        segments = stage_segments(epochs, boundaries)
        for edge in range(rows * ncols):
            ax = axes[row + edge // ncols][edge % ncols]
            if edge >= n_edges:
                ax.axis("off")
                continue
            for name, line in zip(names, draw_edge(ax, epochs, weights, edge, n_ops, segments, boundaries, colors)):
                handles.setdefault(name, line)
            ax.set_title(titles[edge], fontsize=9)
            ax.set_ylim(*ylim)
            if edge % ncols == 0:
                ax.set_ylabel("weight", fontsize=8)
            if edge // ncols == rows - 1 or edge + ncols >= n_edges:
                ax.set_xlabel("epoch", fontsize=8)
                ax.xaxis.set_tick_params(labelbottom=True)
        row += rows
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 7),
               fontsize=8, frameon=False)
    fig.suptitle(f"Expected op weight (Dirichlet mean) per edge: {label}", fontsize=11)
    height = 2.3 * sum(rows_of) + 0.9
    return save_figure(fig, out, "edges.png", dpi=110, rect=(0, 0.4 / height, 1, 1 - 0.35 / height))


# ----------------------------------------------------------------------------- main

def build_parser():
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="search run folders (each with results.json)")
    p.add_argument("--out", default=None, metavar="DIR", help="folder for the PNG files (default: the first RUN_DIR)")
    p.add_argument("--metric", default="cifar10_test", choices=METRICS,
                   help="benchmark accuracy shown in exploration.png")
    p.add_argument("--labels", nargs="+", default=None, help="one label per run (default: 'method seed N')")
    p.add_argument("--edges_run", type=int, default=0, metavar="INDEX",
                   help="which run (0-based, in the order given) edges.png shows")
    return p


def note(text):
    print(text, file=sys.stderr)


@exit_on_user_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.labels is not None and len(args.labels) != len(args.runs):
        raise UserError(f"--labels has {len(args.labels)} labels for {len(args.runs)} runs: give one per run")
    if not -len(args.runs) <= args.edges_run < len(args.runs):
        raise UserError(f"--edges_run {args.edges_run} is out of range: there are {len(args.runs)} runs (0-based)")
    kept = readable_runs([results_file(path) for path in args.runs], load_run, note)
    runs = [run for _, run in kept]
    labels = [args.labels[index] for index, _ in kept] if args.labels else default_labels(runs)
    out = Path(args.out) if args.out else Path(runs[0]["dir"])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the output folder {out}: {err.strerror or err}") from None
    wanted = args.edges_run % len(args.runs)
    edges_index = next((i for i, (index, _) in enumerate(kept) if index == wanted), None)
    if edges_index is None:
        edges_index = 0
        note(f"note: the --edges_run run was skipped; edges.png shows {args.runs[kept[0][0]]}")
    written = [plot_exploration(runs, labels, args.metric, out, note),
               plot_eigenvalue(runs, labels, out, note),
               plot_edges(runs[edges_index], labels[edges_index], out, note)]
    written = [path for path in written if path is not None]
    for path in written:
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    main()
