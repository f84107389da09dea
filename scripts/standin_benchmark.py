"""Write a STAND-IN NAS-Bench-201 benchmark: made-up accuracies, NOT the real ones.

    python scripts/standin_benchmark.py /tmp/standin.pth
    python 201-space/train_search.py --dataset synthetic --api_path /tmp/standin.pth ...

For smoke runs of everything that needs `--api_path` (per-epoch queries, the exploration
band, the plots, the tables) on a machine without the 2-4.7 GB benchmark file. It writes a
small placeholder file and, beside it, the compact accuracy table that `common.bench.benchmark`
reads instead of the file. Every one of the 15,625 cells gets a deterministic score from
its ops: a toy landscape (convolutions help, `none` on the edges into the output hurts,
the same cell scores the same on every "dataset"), nothing like the real numbers.
"""
import itertools
from pathlib import Path

from common.bench.benchmark import METRICS, write_table
from common.errors import ArgumentParser, UserError, exit_on_user_error
from space201.model_search import EDGES, OPS, genotype_string

OP_SCORE = {"none": -3.0, "skip_connect": 1.0, "nor_conv_1x1": 2.0, "nor_conv_3x3": 4.0, "avg_pool_3x3": 0.5}
# dataset offset and spread of the toy scores, so the three datasets look different
DATASET_SCALE = {"cifar10": (60.0, 1.3), "cifar100": (35.0, 1.5), "imagenet16": (15.0, 1.2)}


def toy_accuracy(op_indices):
    """A made-up score in percent for one cell."""
    score = sum(OP_SCORE[OPS[o]] for o in op_indices)
    into_output = [o for (i, _), o in zip(EDGES, op_indices) if i == 3]
    if all(OPS[o] == "none" for o in into_output):
        return 10.0  # the output node is cut off: chance level
    return score


def standin_table():
    table = {}
    for ops in itertools.product(range(len(OPS)), repeat=len(EDGES)):
        score = toy_accuracy(ops)
        row = []
        for metric in METRICS:
            offset, spread = DATASET_SCALE[metric.split("_")[0]]
            value = offset + spread * score if score != 10.0 else 10.0
            row.append(round(min(value - (0.5 if metric.endswith("valid") else 0.0), 99.0), 2))
        table[genotype_string(list(ops))] = row
    return table


@exit_on_user_error
def main(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="the placeholder benchmark file to write (its table goes beside it)")
    args = parser.parse_args(argv)
    path = Path(args.path)
    if not path.parent.is_dir():
        raise UserError(f"folder {path.parent} does not exist: create it or pick another path")
    path.write_text("STAND-IN NAS-Bench-201 benchmark written by scripts/standin_benchmark.py: "
                    "made-up accuracies, not the real file\n")
    written = write_table(path, standin_table(), standin=True)
    if written is None:
        raise UserError(f"could not write the table beside {path}: pick a writable folder")
    print(f"stand-in benchmark {path} (table {written}): made-up accuracies, for smoke runs only")
    return written


if __name__ == "__main__":
    main()
