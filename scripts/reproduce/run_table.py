"""Run one of the paper's tables: all its runs, several at once on every GPU, stopped and started
again without losing anything; list them with an estimate of their GPU-hours; or write SLURM job
arrays for a cluster.

    python scripts/reproduce/run_table.py nb201 --api_path /path/NAS-Bench-201-v1_0-e61699.pth
    python scripts/reproduce/run_table.py darts_cifar10 --dry_run
    python scripts/reproduce/run_table.py imagenet --imagenet /data/imagenet --slurm slurm/imagenet
    python scripts/reproduce/run_table.py my_table.json --per_gpu 2 --output_root /scratch/runs

TABLE is nb201, partial_channels, anchor_ablation, darts_cifar10 or imagenet (scripts/reproduce/tables.py), or
a JSON file of your own runs. Every run goes to OUTPUT_ROOT/TABLE/RUN (OUTPUT_ROOT: experiments/);
a finished run is skipped, an unfinished one continued with --resume, an evaluation starts once
the search it trains has finished. `--per_gpu N` runs N at once on each GPU of `--gpus` (all
visible ones by default); without a GPU, one at a time unless `--per_gpu` says otherwise.
SIGTERM, SIGUSR1 or Ctrl-C stop every run at a step boundary with a checkpoint; run the same
command again to go on. When every run is done, scripts/aggregate.py's tables go to
OUTPUT_ROOT/TABLE/table.md. `--dry_run` lists the runs with an ESTIMATE of their GPU-hours from the
H200 step times in docs/performance.md (scripts/reproduce/run_costs.py). `--slurm DIR` writes one
`sbatch --array` script per wave of runs and DIR/submit.sh, which submits them in order.
"""
import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # scripts/: the reports package

from common.errors import ArgumentParser, UserError, exit_on_user_error  # noqa: E402
from reports.report import render_markdown  # noqa: E402
from reports.run_records import load_runs  # noqa: E402
from run_costs import SOURCE, format_hours  # noqa: E402
from slurm_array import write_slurm  # noqa: E402
from table_runner import ROOT, command, visible_gpus  # noqa: E402
from table_schedule import TableRunner, run_task  # noqa: E402
from tables import NEEDS, TABLES, TableOptions, build_table  # noqa: E402


def build_parser():
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("table", help=f"{', '.join(TABLES)}, or a table file (.json)")
    p.add_argument("--output_root", default=str(ROOT / "experiments"), help="runs go to OUTPUT_ROOT/TABLE/RUN")
    p.add_argument("--dry_run", action="store_true", help="list the runs, their state and estimated GPU-hours")
    p.add_argument("--gpus", nargs="+", default=None, metavar="ID", help="the GPUs to use (default: all visible)")
    p.add_argument("--per_gpu", type=int, default=None,
                   help="runs at once per GPU (default: the table's, 4 for NAS-Bench-201 searches, 1 for the "
                        "DARTS space; not yet measured on a GPU); on a CPU, runs at once (default 1)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the table's)")
    p.add_argument("--api_path", default=None, help="the NAS-Bench-201 file (nb201, partial_channels, anchor_ablation)")
    p.add_argument("--data", default=None, help="the dataset folder (--data of every run)")
    p.add_argument("--imagenet", default=None, help="the ImageNet folder with train/ and val/ (imagenet)")
    p.add_argument("--search_flags", default="", help="more flags for every search, e.g. '--cuda_graph'")
    p.add_argument("--eval_flags", default="", help="more flags for every training from scratch")
    p.add_argument("--python", default=sys.executable, help="the Python that runs the scripts")
    p.add_argument("--slurm", default=None, metavar="DIR", help="write SLURM job arrays and DIR/submit.sh")
    p.add_argument("--slurm_time", default="48:00:00", help="--time of every array task")
    p.add_argument("--slurm_partition", default=None)
    p.add_argument("--slurm_cpus", type=int, default=8, help="CPUs per GPU of a run (--cpus-per-task)")
    p.add_argument("--slurm_max_parallel", type=int, default=None, help="array tasks running at once (%%N)")
    p.add_argument("--task", type=int, default=None, help=argparse.SUPPRESS)  # one run, as an array task runs it
    return p


def absolute(path):
    return str(Path(path).expanduser().resolve()) if path else None


def options_of(args):
    try:
        split = (tuple(shlex.split(args.search_flags)), tuple(shlex.split(args.eval_flags)))
    except ValueError as err:
        raise UserError(f"--search_flags / --eval_flags: {err}") from None
    return TableOptions(seeds=tuple(args.seeds) if args.seeds else None, api_path=absolute(args.api_path),
                        data=absolute(args.data), imagenet=absolute(args.imagenet), search_flags=split[0],
                        eval_flags=split[1])


def listing(table, table_dir, per_gpu):
    """The dry run: every run, its state, its estimated GPU-hours and its command."""
    lines = [f"table {table.name}: {table.title}", *(f"  {note}" for note in table.notes),
             f"runs in {table_dir}/, {per_gpu} at once per GPU (--per_gpu)", ""]
    total, unknown = 0.0, []
    for index, run in enumerate(table.runs):
        argv, state = command(run, table_dir, "python")
        shown = shlex.join(argv).replace(str(ROOT) + "/", "")
        hours = run.cost.hours if run.cost else None
        total += hours or 0.0
        unknown += [] if hours is not None else [run.name]
        gpus = f", {run.gpus} GPUs" if run.gpus > 1 else ""
        cost = "GPU-h not measured" if hours is None else f"~{format_hours(hours)} GPU-h"
        lines.append(f"{index:3d} {run.name} [{run.kind}{gpus}, {state}] {cost}: {shown}")
    lines += ["", f"total: ~{total:.1f} GPU-hours for the {len(table.runs) - len(unknown)} runs with a figure, an "
                  f"ESTIMATE from the {SOURCE} (training steps only, one run alone on its GPU, eager fp32)"]
    if unknown:
        lines.append(f"no figure measured for {len(unknown)} run(s): {', '.join(unknown)}")
    return "\n".join(lines)


def task_command(args, options, table_dir):
    """This script's command for one run of the table (an array task appends --task INDEX):
    every path absolute, as the tasks run from the repository root."""
    table = absolute(args.table) if args.table not in TABLES else args.table
    parts = [args.python, str(Path(__file__).resolve()), table, "--output_root", str(table_dir.parent)]
    for flag, value in (("--api_path", options.api_path), ("--data", options.data), ("--imagenet", options.imagenet),
                        ("--search_flags", args.search_flags), ("--eval_flags", args.eval_flags)):
        parts += [flag, value] if value else []
    return parts + (["--seeds", *map(str, args.seeds)] if args.seeds else [])


def check_needs(name, options):
    need = NEEDS.get(name)
    if need and getattr(options, need) is None:
        raise UserError(f"the {name} table needs --{need}: give it (--dry_run lists the runs without it)")


def aggregate(table_dir):
    """The tables of the finished table, in TABLE/table.md."""
    text = render_markdown(load_runs([table_dir], recursive=True, note=lambda line: None))
    out = Path(table_dir) / "table.md"
    out.write_text(text)
    print(f"tables of {table_dir}: {out}")
    return out


@exit_on_user_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    options = options_of(args)
    table = build_table(args.table, options)
    table_dir = Path(args.output_root).expanduser().resolve() / table.name
    if args.per_gpu is not None and args.per_gpu < 1:
        raise UserError(f"--per_gpu {args.per_gpu}: give 1 or more")
    if args.dry_run:
        text = listing(table, table_dir, args.per_gpu or table.per_gpu)
        print(text)
        return text
    check_needs(args.table, options)
    if args.slurm:
        task = shlex.join(task_command(args, options, table_dir))
        written = write_slurm(table, args.slurm, repo=ROOT, task_command=task, table_dir=table_dir,
                              time_limit=args.slurm_time, partition=args.slurm_partition, cpus=args.slurm_cpus,
                              max_parallel=args.slurm_max_parallel)
        print("wrote " + ", ".join(str(path) for path in written) + f"; submit with: bash {written[-1]}")
        return written
    if args.task is not None:
        code = run_task(table, table_dir, args.task, args.python)
    else:
        gpus = args.gpus or visible_gpus()
        per_gpu = args.per_gpu or (table.per_gpu if gpus else 1)
        code = TableRunner(table, table_dir, gpus=gpus, per_gpu=per_gpu, python=args.python).run()
        if code == 0:
            aggregate(table_dir)
    if code:
        raise SystemExit(code)
    return 0


if __name__ == "__main__":
    main()
