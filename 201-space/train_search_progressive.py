"""DrNAS search on NAS-Bench-201 with progressive learning (paper section 2.3).

    cd 201-space && python train_search_progressive.py --dataset cifar10

The flags and defaults below are the authors' (their train_search_progressive.py): k 4 then
2, ops kept 5 then 3, 50 + 50 epochs, architecture updates from epoch 10 of each stage, the
cosine restarted at the second stage by their new optimizer and loaded scheduler state.
`--stage_lr continue` keeps one cosine instead; the other additions are train_search.py's.
"""
from common.nas import search_flags
from common.run import flags, launch
from common.bench.benchmark import open_benchmark
from common.data.datasets import DATASETS
from common.data.loaders import search_loaders
from common.run.run_folder import PROJECT_ROOT
from common.nas.search_build import search
from common.spaces import SPACES
from common.distributed import ONE_PROCESS
from space201 import architect


def build_parser():
    p = flags.new_parser(__doc__)
    flags.add_data_flags(p, data=str(PROJECT_ROOT / "data"), dataset="cifar10", datasets=sorted(DATASETS))
    search_flags.add_split_flags(p, train_portion=0.5, cutout_length=16)
    flags.add_weight_flags(p, batch_size=64, learning_rate=0.025, momentum=0.9, weight_decay=3e-4,
                           grad_clip=5.0, seed=2)
    flags.add_cosine_flags(p, learning_rate_min=0.001)
    search_flags.add_progressive_flags(p, ks=[4, 2], num_keeps=[5, 3], train_epochs=[50, 50], arch_start_epoch=10,
                                stage_lr="restart")
    architect.add_arch_flags(p)
    p.add_argument("--init_channels", type=flags.positive_int, default=16, help="C: channels of the first stage")
    p.add_argument("--num_cells", type=flags.positive_int, default=5, help="N: cells per stage")
    search_flags.add_benchmark_flag(p)
    search_flags.add_record_flags(p, valid_from_epoch=0, sample_archs=0, hessian_freq=0,
                                  hessian_batches=2)
    flags.add_speed_flags(p, memory_format="channels_last")
    search_flags.add_cuda_graph_flag(p)
    flags.add_run_flags(p)
    return p


def run(args, dist=ONE_PROCESS):
    return search(args, SPACES["201"], architect=architect.build, loaders_factory=search_loaders, dist=dist,
                  open_benchmark=open_benchmark)


main = launch.entry_point(build_parser, run)


if __name__ == "__main__":
    main()
