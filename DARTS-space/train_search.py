"""DrNAS search on the DARTS space, CIFAR-10/100, with progressive learning (paper section 2.3).

    cd DARTS-space && python train_search.py --dataset cifar10

The authors' defaults: C 36, 20 layers, batch 64, lr 0.1 cosine to 0, wd 3e-4, arch lr 6e-4,
l2 anchor 1e-3, seed 2; k 6 then 4, ops kept 7 then 4, 25 + 25 epochs, architecture updates
from epoch 10 of each stage (`--ks`, `--num_keeps`, `--train_epochs`, `--arch_start_epoch`;
one value each gives a search without progressive learning). The results JSON holds the
genotype of every epoch and the final one as plain lists, which `train.py --arch` takes.
The flags, the loop and the run plumbing live in common/; this script declares the space.
"""
from common import search_script
from common.arch import DERIVE_RULES
from common.distributed import distributed_main
from common.errors import UserError, exit_on_user_error
from darts_space.model_search import Network
from darts_space.operations import PRIMITIVES


def build_network(args, num_classes, k):
    return Network(args.init_channels, num_classes, args.layers, args.method, k, derive=args.derive)


SPACE = search_script.Space("DARTS-space", len(PRIMITIVES), build_network)


def add_darts_flags(p, layers):
    """The flags of a DARTS-space search network."""
    p.add_argument("--layers", type=int, default=layers, help="cells in the search network")
    p.add_argument("--derive", default="softmax", choices=DERIVE_RULES,
                   help="what the genotype ranks ops and edges by: softmax of alpha over the kept ops "
                        "(the authors' genotype()) or the mean of the mixing weights (Dirichlet mean)")


def build_parser(description=__doc__.splitlines()[0]):
    p = search_script.build_parser(description, progressive=True)
    add_darts_flags(p, layers=20)
    p.set_defaults(learning_rate=0.1, learning_rate_min=0.0, init_channels=36, arch_learning_rate=6e-4,
                   ks=[6, 4], num_keeps=[7, 4], train_epochs=[25, 25], arch_start_epoch=10)
    return p


def run(args, dist=None, space=SPACE):
    """Search with parsed flags; `dist` (common.distributed.Dist): data parallel under torchrun;
    `space`: this one, or the ImageNet search's (train_search_imagenet.py)."""
    if args.layers < 3:
        raise UserError(f"--layers must be at least 3 (two of them are reduction cells), got {args.layers}")
    return search_script.run(args, search_script.stages_of(args, len(PRIMITIVES)), space, dist)


@exit_on_user_error
def main(argv=None):
    return distributed_main(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
