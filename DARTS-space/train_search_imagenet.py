"""DrNAS search directly on ImageNet (the paper's mobile setting), DARTS space, many GPUs.

    python scripts/sample_imagenet.py /data/imagenet/train /data/imagenet_search
    cd DARTS-space && torchrun --nproc_per_node=8 train_search_imagenet.py --data /data/imagenet_search

The data is the authors' sample of the ImageNet training set (scripts/sample_imagenet.py):
`<data>/train/<class>/` (10 % of every class) trains the weights, `<data>/val/<class>/`
(another 2.5 %) the architecture; both with RandomResizedCrop 224 and flips. On a GPU the
JPEGs are decoded and augmented on the GPU (`--loader auto`, common/data/imagenet_loader.py).

The flags and defaults below are the authors' (their train_search_imagenet.py): batch 512
(global: split over the processes), SGD lr 0.5 with a 5-epoch linear warm-up (batch above
256) then cosine to 0, restarted at the second stage, momentum 0.9, wd 3e-4, C 48, 14 layers,
arch lr 6e-3 and arch weight decay 1e-3 (the l2 anchor, `--reg_scale`), the architecture
gradient clipped to 5 (`--arch_grad_clip`), seed 0; k 6 then 3, ops kept 7 then 4, 25 + 25
epochs, architecture updates from epoch 10 of each stage, the architecture half evaluated in
the last 3 epochs only (`--valid_from_epoch 47`). Under torchrun the search runs in
DistributedDataParallel (the authors used DataParallel): see common/nas/search.py.
"""
from common.nas import search_flags
from common.run import flags, launch
from common.data.imagenet_loader import BACKENDS, imagenet_search_loaders
from common.run.run_folder import PROJECT_ROOT
from common.run.schedule import WARMUP_ABOVE_BATCH, warmup_epochs_for
from common.nas.search_build import search, stage_schedule
from common.spaces import SPACES
from common.distributed import ONE_PROCESS
from darts_space import architect


def build_parser():
    p = flags.new_parser(__doc__)
    flags.add_data_flags(p, data=str(PROJECT_ROOT / "data" / "imagenet_search"), dataset="imagenet",
                         datasets=["imagenet"],
                         data_help="the sampled ImageNet folder (train/<class>/, val/<class>/) of scripts/sample_imagenet.py")
    flags.add_weight_flags(p, batch_size=512, learning_rate=0.5, momentum=0.9, weight_decay=3e-4,
                           grad_clip=5.0, seed=0)
    flags.add_cosine_flags(p, learning_rate_min=0.0)
    p.add_argument("--warmup_epochs", type=flags.non_negative_int, default=5,
                   help=f"linear warm-up epochs, only when --batch_size > {WARMUP_ABOVE_BATCH}")
    search_flags.add_progressive_flags(p, ks=[6, 3], num_keeps=[7, 4], train_epochs=[25, 25], arch_start_epoch=10,
                                stage_lr="restart")
    architect.add_arch_flags(p, architect.IMAGENET_DEFAULTS)
    p.add_argument("--init_channels", type=flags.positive_int, default=48, help="C: channels of the first stage")
    p.add_argument("--layers", type=flags.bounded(int, 3), default=14,
                   help="cells in the search network (two of them reduction cells)")
    search_flags.add_derive_flag(p, derive="softmax")
    p.add_argument("--image_size", type=flags.bounded(int, 32), default=224,
                   help="side of the random crops (the stems divide it by 8)")
    p.add_argument("--workers", type=flags.non_negative_int, default=8, help="DataLoader worker processes per GPU")
    p.add_argument("--loader", default="auto", choices=BACKENDS,
                   help="decode: JPEGs decoded and augmented on the device (nvJPEG on a GPU); workers: "
                        "PIL in the worker processes; auto: decode on CUDA, workers on a CPU")
    search_flags.add_record_flags(p, valid_from_epoch=47, sample_archs=0, hessian_freq=0,
                                  hessian_batches=2)
    flags.add_speed_flags(p, memory_format="channels_last")
    search_flags.add_cuda_graph_flag(p)
    flags.add_run_flags(p, data_limit_help="use only N images of each half (evenly spaced over the classes)")
    return p


def schedule(args, optimizer, stages):
    """The warm-up (lr * (epoch + 1) / 5 for the first 5 epochs above batch 256, as the authors'
    loop sets it), then the cosine of every stage, continuing from the warm-up."""
    return stage_schedule(args, optimizer, stages, warmup_epochs_for(args.batch_size, args.warmup_epochs))


def run(args, dist=ONE_PROCESS):
    return search(args, SPACES["imagenet"], architect=architect.build, loaders_factory=imagenet_search_loaders, dist=dist,
                  schedule=schedule)


main = launch.entry_point(build_parser, run)


if __name__ == "__main__":
    main()
