"""The figure plumbing of scripts/plot_search.py: matplotlib on a file backend, imported late
so that reading runs needs no matplotlib; an epoch axis; writing a figure."""
from pathlib import Path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def MaxNLocator(**kwargs):  # noqa: N802 (matplotlib's class, imported late)
    from matplotlib.ticker import MaxNLocator as locator

    return locator(**kwargs)


def epoch_axis(ax, ylabel, title, **title_kw):
    """Label an axis whose x is the epoch (integer ticks), and grid it."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_title(title, **title_kw)
    ax.grid(alpha=0.3)


def save_figure(fig, out, name, dpi=120, **layout):
    """Lay out `fig`, write it as `out`/`name`, close it; return the path."""
    fig.tight_layout(**layout)
    path = Path(out) / name
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def nan(values):
    return [float("nan") if v is None else v for v in values]
