"""DrNAS search on NAS-Bench-201 with progressive learning (paper section 2.3).

    cd 201-space && python train_search_progressive.py --dataset cifar10

The authors' schedule: k 4 then 2, ops kept 5 then 3, 50 + 50 epochs, architecture updates
from epoch 10 of each stage (`--ks`, `--num_keeps`, `--train_epochs`, `--arch_start_epoch`).
Every other flag is train_search.py's.
"""
from common.distributed import distributed_main
from common.errors import exit_on_user_error
from space201 import train_search


@exit_on_user_error
def main(argv=None):
    parser = train_search.build_parser(progressive=True, description=__doc__.splitlines()[0])
    return distributed_main(train_search.run, parser.parse_args(argv))


if __name__ == "__main__":
    main()
