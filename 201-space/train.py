"""Train a NAS-Bench-201 cell from scratch with the benchmark's 200-epoch recipe.

    cd 201-space && python train.py --dataset cifar10                   # the default --arch, the best cell
    cd 201-space && python train.py --dataset cifar100 --arch RUN_DIR   # the cell a 201 search found

The network is the benchmark's (xautodl's TinyNetwork, model.py): C 16 (`--init_channels`),
N 5 cells per stage (`--num_cells`). The defaults are NAS-Bench-201's training recipe (the paper's
hyper-parameter table; xautodl's 200-epoch configuration, optimizer and scheduler): SGD with
lr 0.1, Nesterov momentum 0.9 (`--no-nesterov` for plain momentum), weight decay 5e-4, batch
256, 200 epochs, cosine annealing to 0 stepped once per epoch, no warm-up; random crop (padding
4, 2 on ImageNet16-120) and horizontal flip; plain cross-entropy. Like xautodl there is no
gradient clipping (`--grad_clip X` adds one), no cutout (`--cutout` adds it), no auxiliary head
and no drop-path. The seed is 0 (the benchmark trained seeds 777, 888 and 999). `--arch` takes a
cell string (default: NAS-Bench-201's best cell on CIFAR-10, model.BEST_CELL), or a NAS-Bench-201
search's results.json or run folder (its final genotype). Training uses the whole training set,
evaluation the test split (the benchmark's "cifar10" setting, not "cifar10-valid"); the results
JSON records space "201", the cell, every epoch's test accuracy, the final test accuracy (the
benchmark's figure: no "best" epoch chosen on the test set) and the parameter count;
`--count_params` prints the count alone. `--device`, `--resume`, `--output_dir`, `--stop_after_epoch`,
`--data_limit`, `--amp`, `--memory_format` and `--dataset folder` (any class-folder dataset,
common/data/folder_data.py) are additions. The loop is common/run/train.py.

Data parallel on several GPUs (or CPU processes), same flags, `--batch_size` the global batch:

    torchrun --nproc_per_node=4 train.py --dataset cifar100
"""
import argparse

from common.run import flags, launch
from common.data.datasets import DATASETS
from common.errors import UserError
from common.data.loaders import training_loaders
from common.run.run_folder import PROJECT_ROOT, default_output_dir
from common.run.schedule import cosine_to_zero
from common.run.train import training
from common.distributed import ONE_PROCESS
from space201.model import BEST_CELL, TinyNetwork, resolve_cell


def build_parser():
    p = flags.new_parser(__doc__)
    flags.add_data_flags(p, data=str(PROJECT_ROOT / "data"), dataset="cifar10", datasets=sorted(DATASETS))
    # grad_clip None: no clipping (xautodl clips nothing); a given --grad_clip must be > 0
    flags.add_weight_flags(p, batch_size=256, learning_rate=0.1, momentum=0.9, weight_decay=5e-4,
                           grad_clip=None, seed=0)
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=True,
                   help="Nesterov momentum (the benchmark's)")
    p.add_argument("--epochs", type=flags.training_epochs, default=200, help="training epochs")
    p.add_argument("--init_channels", type=flags.positive_int, default=16, help="C: channels of the first stage")
    p.add_argument("--num_cells", type=flags.positive_int, default=5, help="N: cells per stage")
    p.add_argument("--arch", default=BEST_CELL,
                   help="a NAS-Bench-201 cell string (or the authors' logged Structure(4 nodes with |...|)), "
                        "or a NAS-Bench-201 search's results.json or run folder")
    p.add_argument("--allow_unfinished", action="store_true",
                   help="take the genotype of a search that has not finished (an intermediate one)")
    flags.add_count_flag(p)
    flags.add_cutout_flags(p, cutout_length=16)
    flags.add_speed_flags(p, memory_format="contiguous")
    flags.add_run_flags(p)
    return p



def run(args, dist=ONE_PROCESS):
    cell = resolve_cell(args.arch, args.allow_unfinished)
    if args.nesterov and args.momentum == 0:
        raise UserError("Nesterov momentum needs --momentum > 0: give one, or pass --no-nesterov")
    return training(
        args, space="201", genotype=cell, loaders_factory=training_loaders, schedule=cosine_to_zero,
        build_model=lambda classes: TinyNetwork(args.init_channels, args.num_cells, cell, classes),
        default_dir=lambda: default_output_dir("201-space", args.dataset, args.save, args.seed, kind="eval"),
        nesterov=args.nesterov, dist=dist, extras=False, report_best=False)


main = launch.entry_point(build_parser, run)


if __name__ == "__main__":
    main()
