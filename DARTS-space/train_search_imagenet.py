"""DrNAS search directly on ImageNet (the paper's mobile setting), DARTS space, many GPUs.

    python scripts/sample_imagenet.py /data/imagenet/train /data/imagenet_search
    cd DARTS-space && torchrun --nproc_per_node=8 train_search_imagenet.py --data /data/imagenet_search

The data is the authors' sample of the ImageNet training set (scripts/sample_imagenet.py):
`<data>/train/<class>/` (10 % of every class) trains the weights, `<data>/val/<class>/`
(another 2.5 %) the architecture; both with RandomResizedCrop 224 and flips. On a GPU the
JPEGs are decoded and augmented on the GPU (`--loader auto`, common/imagenet.py).

The authors' defaults: batch 512 (global: split over the processes), SGD lr 0.5 with a
5-epoch linear warm-up (batch above 256) then cosine to 0, momentum 0.9, wd 3e-4, C 48, 14
layers, arch lr 6e-3 and arch weight decay 1e-3 (the l2 anchor, `--reg_scale`); k 6 then 3,
ops kept 7 then 4, 25 + 25 epochs, architecture updates from epoch 10 of each stage, the
architecture half evaluated in the last 3 epochs only (`--valid_from_epoch 47`, as the
authors' script does). Under torchrun the search runs in DistributedDataParallel (the
authors used DataParallel): see common/search.py.
"""
from common import search_script
from common.distributed import distributed_main, global_to_local_batch
from common.errors import UserError, exit_on_user_error
from common.imagenet import BACKENDS, imagenet_search_loaders
from common.run import PROJECT_ROOT
from common.schedule import WARMUP_ABOVE_BATCH, warmup_epochs_for
from darts_space import train_search
from darts_space.model_search_imagenet import Network
from darts_space.operations import PRIMITIVES


def build_network(args, num_classes, k):
    return Network(args.init_channels, num_classes, args.layers, args.method, k, derive=args.derive)


def build_loaders(args, device, dist):
    """The sampled halves, each rank loading its share of every global batch."""
    batch_size = global_to_local_batch(args.batch_size, dist) if dist is not None else args.batch_size
    train, arch, valid, num_classes = imagenet_search_loaders(
        args.data, batch_size, device, args.seed, workers=args.workers, backend=args.loader,
        image_size=args.image_size, limit=args.data_limit,
        num_replicas=dist.world_size if dist is not None else 1, rank=dist.rank if dist is not None else 0,
        memory_format=search_script.MEMORY_FORMATS[args.memory_format])
    return num_classes, train, arch, valid


def build_scheduler(args, optimizer, stages):
    """Warm-up, then the cosine of every stage (the authors' loop sets lr * (epoch + 1) / 5 for the
    first 5 epochs when the batch exceeds 256; their cosine scheduler continues from there)."""
    return search_script.stage_schedule(args, optimizer, stages,
                                        warmup_epochs_for(args.batch_size, args.warmup_epochs))


SPACE = search_script.Space("DARTS-space", len(PRIMITIVES), build_network,
                            build_loaders=build_loaders, build_scheduler=build_scheduler)


def build_parser(description=__doc__.splitlines()[0]):
    p = search_script.build_parser(description, progressive=True, datasets=("imagenet",))
    train_search.add_darts_flags(p, layers=14)
    p.add_argument("--image_size", type=int, default=224, help="side of the random crops")
    p.add_argument("--warmup_epochs", type=int, default=5,
                   help=f"linear warm-up epochs, only when --batch_size > {WARMUP_ABOVE_BATCH}")
    p.add_argument("--workers", type=int, default=8, help="DataLoader worker processes per GPU")
    p.add_argument("--loader", default="auto", choices=BACKENDS,
                   help="decode: JPEGs decoded and augmented on the device (nvJPEG on a GPU); workers: "
                        "PIL in the worker processes; auto: decode on CUDA, workers on a CPU")
    p.set_defaults(data=str(PROJECT_ROOT / "data" / "imagenet_search"), batch_size=512, learning_rate=0.5,
                   learning_rate_min=0.0, weight_decay=3e-4, init_channels=48, arch_learning_rate=6e-3,
                   reg_scale=1e-3, ks=[6, 3], num_keeps=[7, 4], train_epochs=[25, 25], arch_start_epoch=10,
                   valid_from_epoch=47, seed=0, arch_grad_clip=5.0)
    for action in p._actions:
        if action.dest == "data":
            action.help = "the sampled ImageNet folder (train/<class>/, val/<class>/) of scripts/sample_imagenet.py"
        if action.dest == "data_limit":
            action.help = "use only N images of each half (evenly spaced over the classes)"
    return p


def run(args, dist=None):
    """Search with parsed flags; `dist` (common.distributed.Dist): data parallel under torchrun."""
    if args.image_size < 32:
        raise UserError(f"--image_size must be at least 32 (the stems divide it by 8), got {args.image_size}")
    if args.warmup_epochs < 0 or args.workers < 0:
        raise UserError("--warmup_epochs and --workers must be at least 0")
    if args.learning_rate <= 0:
        raise UserError(f"--learning_rate must be positive, got {args.learning_rate}")
    return train_search.run(args, dist, SPACE)


@exit_on_user_error
def main(argv=None):
    return distributed_main(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
