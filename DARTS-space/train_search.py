"""DrNAS search on the DARTS space, CIFAR-10/100, with progressive learning (paper section 2.3).

    cd DARTS-space && python train_search.py --dataset cifar10

The flags and defaults below are the authors' (their train_search.py): C 36, 20 layers, batch
64, lr 0.1 cosine to 0 (restarted at the second stage by their new optimizer and loaded
scheduler state), wd 3e-4, arch lr 6e-4, l2 anchor 1e-3, seed 2; k 6 then 4, ops kept 7 then
4, 25 + 25 epochs, architecture updates from epoch 10 of each stage. One value each for
`--ks`, `--num_keeps`, `--train_epochs` gives a search without progressive learning. The
results JSON holds the genotype of every epoch and the final one as plain lists, which
`train.py --arch` takes. The loop is common/nas/search.py.
"""
from common.nas import search_flags
from common.run import flags, launch
from common.data.datasets import DATASETS
from common.data.loaders import search_loaders
from common.run.run_folder import PROJECT_ROOT
from common.nas.search_build import search
from common.spaces import SPACES
from common.distributed import ONE_PROCESS
from darts_space import architect

# PC-DARTS's own CIFAR search (Xu et al., ICLR 2020, section 4.2), taken with --method pcdarts
# unless given: one stage of 50 epochs at k 4 with every op, 8 cells of C 16, batch 256, lr 0.1
# to 0, the architecture's Adam at 6e-4 (weight decay 1e-3, --reg_scale) from epoch 15 on.
PCDARTS = dict(ks=[4], num_keeps=[7], train_epochs=[50], arch_start_epoch=15, init_channels=16, layers=8,
               batch_size=256, learning_rate=0.1, learning_rate_min=0.0, arch_learning_rate=6e-4)


def build_parser():
    p = flags.new_parser(__doc__)
    flags.add_data_flags(p, data=str(PROJECT_ROOT / "data"), dataset="cifar10", datasets=sorted(DATASETS))
    search_flags.add_split_flags(p, train_portion=0.5, cutout_length=16)
    flags.add_weight_flags(p, batch_size=64, learning_rate=0.1, momentum=0.9, weight_decay=3e-4,
                           grad_clip=5.0, seed=2)
    flags.add_cosine_flags(p, learning_rate_min=0.0)
    search_flags.add_progressive_flags(p, ks=[6, 4], num_keeps=[7, 4], train_epochs=[25, 25], arch_start_epoch=10,
                                stage_lr="restart")
    architect.add_arch_flags(p)
    p.add_argument("--init_channels", type=flags.positive_int, default=36, help="C: channels of the first stage")
    p.add_argument("--layers", type=flags.bounded(int, 3), default=20,
                   help="cells in the search network (two of them reduction cells)")
    search_flags.add_derive_flag(p, derive="softmax")
    search_flags.add_record_flags(p, valid_from_epoch=0, sample_archs=0, hessian_freq=0,
                                  hessian_batches=2)
    flags.add_speed_flags(p, memory_format="channels_last")
    search_flags.add_cuda_graph_flag(p)
    flags.add_run_flags(p)
    flags.add_presets(p, "method", {"pcdarts": PCDARTS})
    return p


def run(args, dist=ONE_PROCESS):
    return search(args, SPACES["darts"], architect=architect.build, loaders_factory=search_loaders, dist=dist)


main = launch.entry_point(build_parser, run)


if __name__ == "__main__":
    main()
