"""Draw a found cell as a graph: the normal and reduction cells of a DARTS-space genotype, or a
NAS-Bench-201 cell, to PNG and PDF.

    python scripts/plot_genotype.py RUN_DIR            # a search's (or a training's) folder or results.json
    python scripts/plot_genotype.py DrNAS_cifar10      # a genotype of DARTS-space/genotypes.py
    python scripts/plot_genotype.py "Genotype(normal=[...], ...)"        # as the authors' logs print it
    python scripts/plot_genotype.py "|nor_conv_3x3~0|+|...|"              # a NAS-Bench-201 cell
        [--out DIR] [--name STEM] [--engine auto|graphviz|matplotlib]

Writes STEM.png and STEM.pdf into --out (default: the run folder for a run, else the current
folder; STEM: the genotype's name, or "cell"). Graphviz lays the graph out where its `dot` is
installed; otherwise matplotlib draws it (scripts/reports/cell_diagram.py). Nothing given is executed:
`Genotype(...)` text is read as data.
"""
import os
from pathlib import Path

from reports.cell_diagram import CELL_GRAPHS, ENGINES, draw
from common.errors import ArgumentParser, UserError, exit_on_user_error
from common.run.genotype_source import run_genotype


def resolve(target):
    """(space name, genotype in the space's own type, default stem, default folder) of what
    the command line names."""
    if os.path.exists(target):
        space, genotype = run_genotype(target, allow_unfinished=True)
        folder = Path(target) if os.path.isdir(target) else Path(target).parent
        return space, genotype, "cell", folder
    text = target.strip()
    if "|" in text:  # a NAS-Bench-201 cell string, or the authors' Structure(4 nodes with |...|)
        from space201.model import STRUCTURE

        printed = STRUCTURE.fullmatch(text)
        return "201", printed.group(1) if printed else text, "cell", Path(".")
    from darts_space.model import resolve_genotype  # a name in genotypes.py or Genotype(...) text

    named = text if text.isidentifier() else "cell"
    try:
        return "darts", resolve_genotype(text), named, Path(".")
    except UserError:
        from darts_space.genotype_text import named_genotypes

        if text.startswith("Genotype("):
            raise
        names = ", ".join(named_genotypes())
        raise UserError(f"{target[:80]!r} is neither a run folder or results.json, a genotype of genotypes.py "
                        f"({names}), Genotype(...) text, nor a NAS-Bench-201 cell string") from None


def build_parser():
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("target", metavar="RUN_DIR|NAME|TEXT",
                   help="a run folder or results.json, a genotype's name in genotypes.py, Genotype(...) text, "
                        "or a NAS-Bench-201 cell string")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder for STEM.png and STEM.pdf (default: the run folder, or the current folder)")
    p.add_argument("--name", default=None, metavar="STEM", help="file name without suffix (default: the "
                   "genotype's name, or 'cell')")
    p.add_argument("--engine", default="auto", choices=ENGINES,
                   help="graphviz (its `dot` on the PATH), matplotlib, or auto: graphviz where installed")
    return p


@exit_on_user_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    space, genotype, stem, folder = resolve(args.target)
    graphs = CELL_GRAPHS[space](genotype)
    out = Path(args.out) if args.out else folder
    if args.name is not None and (not args.name or "/" in args.name):
        raise UserError(f"--name {args.name!r} is a file name without a folder: use --out for the folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the output folder {out}: {err.strerror or err}") from None
    written = draw(graphs, out / (args.name or stem), args.engine)
    for path in written:
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    main()
