"""DrNAS search on the NAS-Bench-201 space (the paper's NAS-Bench-201 table).

    cd 201-space && python train_search.py --dataset cifar10 --api_path NAS-Bench-201-v1_0-e61699.pth

The flags and defaults below are the authors' (their train_search.py); `--device`, `--resume`,
`--output_dir`, `--stop_after_epoch`, `--data_limit`, `--sample_archs`, `--hessian_freq`,
`--amp`, `--memory_format`, `--arch_grad_clip`, `--arch_start_epoch` and `--method pcdarts` are
additions. The loop is common/nas/search.py.
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

# PC-DARTS's own settings (Xu et al., ICLR 2020, section 4.2), taken with --method pcdarts unless
# given: k 4, 50 epochs, batch 256, lr 0.1 to 0, the architecture's Adam at 6e-4 (its weight decay
# 1e-3 is --reg_scale's default) from epoch 15 on.
PCDARTS = dict(k=4, epochs=50, batch_size=256, learning_rate=0.1, learning_rate_min=0.0,
               arch_learning_rate=6e-4, arch_start_epoch=15)


def build_parser():
    p = flags.new_parser(__doc__)
    flags.add_data_flags(p, data=str(PROJECT_ROOT / "data"), dataset="cifar10", datasets=sorted(DATASETS))
    search_flags.add_split_flags(p, train_portion=0.5, cutout_length=16)
    flags.add_weight_flags(p, batch_size=64, learning_rate=0.025, momentum=0.9, weight_decay=3e-4,
                           grad_clip=5.0, seed=2)
    flags.add_cosine_flags(p, learning_rate_min=0.001)
    search_flags.add_plain_stage_flags(p, epochs=100, k=1, arch_start_epoch=0)
    architect.add_arch_flags(p)
    p.add_argument("--init_channels", type=flags.positive_int, default=16, help="C: channels of the first stage")
    p.add_argument("--num_cells", type=flags.positive_int, default=5, help="N: cells per stage")
    search_flags.add_benchmark_flag(p)
    search_flags.add_record_flags(p, valid_from_epoch=0, sample_archs=0, hessian_freq=0,
                                  hessian_batches=2)
    flags.add_speed_flags(p, memory_format="channels_last")
    search_flags.add_cuda_graph_flag(p)
    flags.add_run_flags(p)
    flags.add_presets(p, "method", {"pcdarts": PCDARTS})
    return p


def run(args, dist=ONE_PROCESS):
    return search(args, SPACES["201"], architect=architect.build, loaders_factory=search_loaders, dist=dist,
                  open_benchmark=open_benchmark)


main = launch.entry_point(build_parser, run)


if __name__ == "__main__":
    main()
