"""Turn runs' results.json files into the paper's tables (Markdown), searches and evaluations apart.

    python scripts/aggregate.py experiments/nb201 --recursive [--out table.md]
    python scripts/aggregate.py RUN_DIR [RUN_DIR ...]

Search runs and evaluation runs (trainings from scratch) never share a table, and each space
has its own (scripts/reports/report.py):

NAS-Bench-201 space
(a) the benchmark table: one row per method and search dataset, the six accuracies of the
    final cell (runs with k = 1, one stage and the anchor l2 1e-3);
(b) partial channels: one row per k and for progressive searches, test accuracy and peak memory;
(c) anchor ablation: one row per lambda (`--reg_scale`, `--reg_type`);
(d) cells trained from scratch (201-space/train.py), one row per cell, named by the search it
    came from.
DARTS space
(e) searches: their cost in GPU-days from their own wall time, the supernet's validation accuracy;
(f) architectures trained from scratch (train.py, train_imagenet.py): test error (top-5 on
    ImageNet), parameters, and the cost of the search each came from; one row per search or
    published genotype, and one row pooling the cells of all searches of a method.

Every cell reads `mean ± std (n=N)`: std is the population standard deviation (ddof=0),
N the runs with a value. Runs of a row whose flags differ beyond the seed (and where they ran)
are split into rows of their own, labelled with the flags that differ. Accuracies from a
stand-in benchmark (scripts/standin_benchmark.py) are made up: their rows are apart and the
title of every table holding them says so. Unfinished runs are left out with a note on
stderr, unless `--include_unfinished`.
"""
import sys
from pathlib import Path

from common.errors import ArgumentParser, UserError, exit_on_user_error
from reports.report import render_markdown
from reports.run_records import load_runs


def build_parser():
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="run folders (each with results.json), or folders above them with --recursive")
    p.add_argument("--recursive", action="store_true",
                   help="use every results.json found in the folders below the given ones")
    p.add_argument("--out", default=None, metavar="FILE", help="write the tables here (default: stdout)")
    p.add_argument("--include_unfinished", action="store_true",
                   help="also use runs that have not finished (their latest values)")
    return p


def write_report(text, out, count):
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    except OSError as err:
        raise UserError(f"cannot write {out}: {err.strerror or err}") from None
    print(f"wrote {out} ({count} runs)", file=sys.stderr)


@exit_on_user_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    runs = load_runs(args.runs, args.recursive, args.include_unfinished)
    text = render_markdown(runs)
    if not text:
        raise UserError(f"none of the {len(runs)} run(s) is a search or a training from scratch of a known space: "
                        "pass the folders of searches or trainings")
    if args.out:
        write_report(text, args.out, len(runs))
    else:
        sys.stdout.write(text)
    return text


if __name__ == "__main__":
    main()
