"""Train a DARTS-space architecture from scratch on CIFAR-10/100 or SVHN (the paper's evaluation).

    cd DARTS-space && python train.py --auxiliary --cutout --arch DrNAS_cifar10
    python train.py --dataset folder --data DIR --image_size 32 --auxiliary --cutout --arch <search run folder>

The flags and defaults below are the authors' (their train.py): 600 epochs, batch 64, SGD lr
0.025 (momentum 0.9, wd 3e-4) with cosine annealing to 0, C 36, 20 layers, auxiliary weight
0.4, cutout 16 px, drop-path 0.3 ramped linearly, gradient clip 5. `--arch` takes the name of
any genotype in genotypes.py, `Genotype(...)` text as the authors' logs print it, a search's
results.json (or its run folder) or a genotype JSON; `--count_params` prints the size and exits.
Training uses the whole training set, evaluation the test split; the results JSON holds every
epoch's test accuracy, the final and best test accuracy and the parameter count. `--device`,
`--resume`, `--output_dir`, `--stop_after_epoch`, `--data_limit`, `--amp` and
`--memory_format` are additions. The loop is common/run/train.py.

Data parallel on several GPUs (or CPU processes), same flags, `--batch_size` the global batch:

    torchrun --nproc_per_node=4 train.py --auxiliary --cutout --arch DrNAS_cifar10
"""

from common.run import flags, launch
from common.data.datasets import DATASETS
from common.errors import UserError
from common.data.loaders import training_loaders
from common.run.run_folder import PROJECT_ROOT, default_output_dir
from common.run.schedule import cosine_to_zero
from common.run.train import training
from common.distributed import ONE_PROCESS
from darts_space.genotype_text import genotype_text
from darts_space.genotypes import genotype_to_json
from darts_space.model import NetworkCIFAR, resolve_genotype

# 32x32 datasets only: ImageNet16-120's 16x16 images are too small for the CIFAR network's auxiliary head
DATASET_CHOICES = [name for name in sorted(DATASETS) if name != "imagenet16-120"]
# image sides the auxiliary head takes (its 5x5 pooling, stride 3, then 2x2 conv need 7x7 to 10x10 maps
# after the second reduction): 32 and its neighbours; the network itself takes any size
AUXILIARY_SIDES = range(29, 41)


def build_parser():
    p = flags.new_parser(__doc__)
    flags.add_data_flags(p, data=str(PROJECT_ROOT / "data"), dataset="cifar10", datasets=DATASET_CHOICES)
    flags.add_weight_flags(p, batch_size=64, learning_rate=0.025, momentum=0.9, weight_decay=3e-4,
                           grad_clip=5.0, seed=0)
    flags.add_training_flags(p, epochs=600, init_channels=36, layers=20, auxiliary_weight=0.4, drop_path_prob=0.3,
                             arch="DrNAS_cifar10")
    flags.add_cutout_flags(p, cutout_length=16)
    flags.add_speed_flags(p, memory_format="contiguous")
    flags.add_run_flags(p)
    return p



def checked_loaders(args, device, dist=ONE_PROCESS):
    """training_loaders, with --auxiliary refused on a folder dataset's images of a size the head cannot take."""
    loaders = training_loaders(args, device, dist)
    width, height = (loaders.data or {}).get("image_size", (32, 32))
    if args.auxiliary and not (width in AUXILIARY_SIDES and height in AUXILIARY_SIDES):
        raise UserError(f"--auxiliary: the auxiliary head takes images of {AUXILIARY_SIDES[0]} to "
                        f"{AUXILIARY_SIDES[-1]} pixels a side (32x32 as CIFAR's), these are {width}x{height}: "
                        f"pass --image_size 32 or leave out --auxiliary")
    return loaders


def run(args, dist=ONE_PROCESS):
    genotype = resolve_genotype(args.arch, args.allow_unfinished)
    return training(
        args, space="darts", genotype=genotype_to_json(genotype), genotype_text=genotype_text(genotype),
        loaders_factory=checked_loaders,
        schedule=cosine_to_zero,
        build_model=lambda classes: NetworkCIFAR(args.init_channels, classes, args.layers, args.auxiliary, genotype),
        default_dir=lambda: default_output_dir("DARTS-space", args.dataset, args.save, args.seed, kind="eval"),
        dist=dist)


main = launch.entry_point(build_parser, run)


if __name__ == "__main__":
    main()
