"""Train a DARTS-space architecture from scratch on ImageNet (the paper's mobile setting).

    cd DARTS-space && python train_imagenet.py --auxiliary --arch DrNAS_imagenet --data /path/to/imagenet

The flags and defaults below are the authors' (DrNAS / PC-DARTS train_imagenet.py): 250
epochs, batch 768, SGD lr 0.5 (momentum 0.9, wd 3e-5), label smoothing 0.1, C 48, 14 layers,
auxiliary weight 0.4, gradient clip 5, no drop-path; the learning rate decays linearly
(default; PC-DARTS's `adjust_lr`, whose last 5 epochs have a smaller slope) or by cosine
(`cosine`: theirs, one epoch ahead; `cosine_unshifted`), after a 5-epoch linear warm-up,
lr * (epoch + 1) / 5, when the batch exceeds 256. The data is the class-folder layout
`<data>/train/<class>/*.JPEG`, `<data>/val/<class>/*.JPEG` (common/data/imagenet_data.py). The
results JSON holds every epoch's top-1 and top-5 validation accuracy, the final and best top-1
and the parameter count. The loop is common/run/train.py.
"""
import functools

import torch.nn.functional as F

from common.run import flags, launch
from common.data.imagenet_loader import imagenet_training_loaders
from common.run.run_folder import PROJECT_ROOT, default_output_dir
from common.run.schedule import DECAYS, WARMUP_ABOVE_BATCH, EpochLR, imagenet_training_lr, warmup_epochs_for
from common.run.train import training
from common.distributed import ONE_PROCESS
from darts_space.genotype_text import genotype_text
from darts_space.genotypes import genotype_to_json
from darts_space.model import NetworkImageNet, resolve_genotype


def build_parser():
    p = flags.new_parser(__doc__)
    flags.add_data_flags(p, data=str(PROJECT_ROOT / "data" / "imagenet"), dataset="imagenet", datasets=["imagenet"],
                         data_help="ImageNet folder holding train/<class>/ and val/<class>/")
    flags.add_weight_flags(p, batch_size=768, learning_rate=0.5, momentum=0.9, weight_decay=3e-5,
                           grad_clip=5.0, seed=0)
    flags.add_training_flags(p, epochs=250, init_channels=48, layers=14, auxiliary_weight=0.4, drop_path_prob=0.0,
                             arch="DrNAS_imagenet")
    p.add_argument("--label_smooth", type=flags.probability, default=0.1, help="label smoothing of the training loss")
    p.add_argument("--lr_scheduler", default="linear", choices=DECAYS,
                   help="decay after the warm-up; cosine: the authors' (stepped before each epoch, so one "
                        "epoch ahead and the last epoch at lr 0), cosine_unshifted: epoch e at the cosine of e")
    p.add_argument("--warmup_epochs", type=flags.non_negative_int, default=5,
                   help=f"linear warm-up epochs, only when --batch_size > {WARMUP_ABOVE_BATCH}")
    p.add_argument("--workers", type=flags.non_negative_int, default=4, help="DataLoader worker processes (JPEG decoding)")
    flags.add_speed_flags(p, memory_format="contiguous")
    flags.add_run_flags(p, data_limit_help="use only N images of each split (evenly spaced over the classes)")
    return p


def schedule(args, optimizer):
    """Warm-up then decay, set once per epoch (common/run/schedule.py)."""
    return EpochLR(optimizer, functools.partial(
        imagenet_training_lr, lr=args.learning_rate, epochs=args.epochs, decay=args.lr_scheduler,
        warmup_epochs=warmup_epochs_for(args.batch_size, args.warmup_epochs)))


def run(args, dist=ONE_PROCESS):
    genotype = resolve_genotype(args.arch, args.allow_unfinished)
    return training(
        args, space="darts", genotype=genotype_to_json(genotype), genotype_text=genotype_text(genotype),
        loaders_factory=imagenet_training_loaders,
        schedule=schedule, criterion=functools.partial(F.cross_entropy, label_smoothing=args.label_smooth),
        build_model=lambda classes: NetworkImageNet(args.init_channels, classes, args.layers, args.auxiliary, genotype),
        default_dir=lambda: default_output_dir("DARTS-space", "imagenet", args.save, args.seed, kind="eval"),
        dist=dist)


main = launch.entry_point(build_parser, run)


if __name__ == "__main__":
    main()
