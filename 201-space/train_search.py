"""DrNAS search on the NAS-Bench-201 space (the paper's NAS-Bench-201 table).

    cd 201-space && python train_search.py --dataset cifar10 --api_path NAS-Bench-201-v1_0-e61699.pth

Flags and defaults are the authors'; `--device`, `--resume`, `--output_dir`,
`--stop_after_epoch`, `--data_limit`, `--sample_archs` and `--hessian_freq` are additions.
The flags, the loop and the run plumbing live in common/; this script declares the space.
"""
from common import search_script
from common.distributed import distributed_main
from common.errors import UserError, exit_on_user_error
from space201.model_search import OPS, Network


def build_network(args, num_classes, k):
    return Network(args.init_channels, args.num_cells, num_classes, args.method, k)


def open_benchmark(args, log):
    """The benchmark query function, or None (said once) without --api_path."""
    if args.api_path is None:
        log.info("no --api_path: the NAS-Bench-201 benchmark is not queried")
        return None
    from common.benchmark import Benchmark201

    bench = Benchmark201.load(args.api_path, log=log.info)

    def query(genotype):
        return bench.query(genotype) if genotype in bench else None

    return query


SPACE = search_script.Space("201-space", len(OPS), build_network, open_benchmark)


def build_parser(progressive=False, description=__doc__.splitlines()[0]):
    p = search_script.build_parser(description, progressive)
    p.add_argument("--num_cells", type=int, default=5, help="N: cells per stage")
    p.add_argument("--api_path", default=None, help="NAS-Bench-201 file to query every epoch")
    return p


def run(args, dist=None):
    """Search with parsed flags; `dist` (common.distributed.Dist): data parallel under torchrun."""
    if args.num_cells < 1:
        raise UserError(f"--num_cells must be at least 1, got {args.num_cells}")
    return search_script.run(args, search_script.stages_of(args, len(OPS)), SPACE, dist)


@exit_on_user_error
def main(argv=None):
    return distributed_main(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
