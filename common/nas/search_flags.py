"""The flags of the searches alone (the architecture step, the stages, the diagnostics); the
shared ones are in common/run/flags.py. Each script passes every default itself."""
from common.run import flags
from common.nas.architect import REG_TYPES
from common.run.flags import fraction, non_negative_float, non_negative_int, positive_float, positive_int
from common.nas.mixing import DERIVE_RULES, FIRST_EPOCH_TAU, METHODS
from common.run.schedule import STAGE_LR
from common.nas.unsampled_ops import UNSAMPLED_OPS


def add_split_flags(p, *, train_portion, cutout_length):
    """A search's split of one training set into a weight half and an architecture half."""
    p.add_argument("--train_portion", type=fraction, default=train_portion,
                   help="share of the training set for the weights; the rest trains the architecture")
    flags.add_cutout_flags(p, cutout_length=cutout_length)


def add_arch_flags(p, *, method, arch_learning_rate, reg_type, reg_scale, arch_grad_clip, tau_max, tau_min):
    """The architecture parameters' step (Adam, betas 0.5 and 0.999) and their distribution."""
    p.add_argument("--method", default=method, choices=sorted(METHODS),
                   help="dirichlet (DrNAS), darts (softmax), snas (Gumbel-softmax), gdas (hard Gumbel), "
                        "pcdarts (softmax and edge normalisation, with partial channels --k)")
    p.add_argument("--arch_learning_rate", type=positive_float, default=arch_learning_rate,
                   help="Adam learning rate of the architecture parameters")
    p.add_argument("--reg_type", default=reg_type, choices=REG_TYPES,
                   help="anchor regulariser: l2 = Adam weight decay on alpha, kl = KL to Dir(1) (dirichlet only)")
    p.add_argument("--reg_scale", type=non_negative_float, default=reg_scale, help="anchor strength lambda")
    p.add_argument("--arch_weight_decay", type=non_negative_float, default=None, metavar="X",
                   help="the authors' flag: the l2 anchor's scale, the same as --reg_type l2 --reg_scale X")
    p.add_argument("--arch_grad_clip", type=non_negative_float, default=arch_grad_clip,
                   help="gradient-norm clip of the architecture parameters (0: none)")
    p.add_argument("--unrolled", action="store_true", help="second-order architecture step")
    p.add_argument("--tau_max", type=positive_float, default=tau_max, help="initial Gumbel temperature (snas, gdas)")
    p.add_argument("--tau_min", type=positive_float, default=tau_min, help="final Gumbel temperature (snas, gdas)")
    p.add_argument("--first_epoch_tau", type=positive_float, default=FIRST_EPOCH_TAU,
                   help="Gumbel temperature of the first epoch (snas, gdas): the authors' networks start at 10 "
                        "whatever --tau_max; give --tau_max's value for one straight line")
    p.add_argument("--unsampled_ops", default="step", choices=UNSAMPLED_OPS,
                   help="gdas: step = every op sampled before keeps getting weight decay and momentum at every step "
                        "(the authors' zero gradients); freeze = an op not sampled in a step is left as it is")


def add_plain_stage_flags(p, *, epochs, k, arch_start_epoch):
    """A search in one stage."""
    p.add_argument("--epochs", type=positive_int, default=epochs, help="search epochs")
    p.add_argument("--k", type=positive_int, default=k, help="partial channels: ops see C/k channels")
    p.add_argument("--arch_start_epoch", type=non_negative_int, default=arch_start_epoch,
                   help="architecture updates start at this epoch (a warm-up of the weights)")


def add_progressive_flags(p, *, ks, num_keeps, train_epochs, arch_start_epoch, stage_lr):
    """A search in stages (paper section 2.3); one value each gives a single stage."""
    p.add_argument("--ks", type=positive_int, nargs="+", default=ks, help="partial-channel k per stage")
    p.add_argument("--num_keeps", type=positive_int, nargs="+", default=num_keeps, help="ops kept per edge per stage")
    p.add_argument("--train_epochs", type=positive_int, nargs="+", default=train_epochs, help="epochs per stage")
    p.add_argument("--arch_start_epoch", type=non_negative_int, default=arch_start_epoch,
                   help="architecture updates start at this epoch of every stage (the authors' warm-up)")
    p.add_argument("--stage_lr", default=stage_lr, choices=sorted(STAGE_LR),
                   help="restart: every stage restarts the cosine at --learning_rate (the authors' new "
                        "optimizer and loaded scheduler state); continue: one cosine over all stages")


def add_record_flags(p, *, valid_from_epoch, sample_archs, hessian_freq, hessian_batches):
    """What a search measures every epoch beside its genotype: the validation figure, the
    exploration record and the sharpness."""
    p.add_argument("--valid_from_epoch", type=non_negative_int, default=valid_from_epoch,
                   help="evaluate on the architecture half from this (0-based) epoch on")
    p.add_argument("--sample_archs", type=non_negative_int, default=sample_archs,
                   help="every epoch, sample N architectures from the distribution (paper figure 1)")
    p.add_argument("--hessian_freq", type=non_negative_int, default=hessian_freq,
                   help="every E epochs, the largest Hessian eigenvalue w.r.t. alpha (figures 4-5; 0: never)")
    p.add_argument("--hessian_batches", type=positive_int, default=hessian_batches,
                   help="validation batches for the eigenvalue")


def add_derive_flag(p, *, derive):
    """The DARTS-space derivation rule (common.nas.mixing.DERIVE_RULES)."""
    p.add_argument("--derive", default=derive, choices=DERIVE_RULES,
                   help="what the genotype ranks ops and edges by: softmax of alpha over the kept ops "
                        "(the authors' genotype()) or the mean of the mixing weights (Dirichlet mean)")


def add_benchmark_flag(p):
    """The tabular benchmark a NAS-Bench-201 search queries every epoch (common/bench/benchmark.py)."""
    p.add_argument("--api_path", default=None,
                   help="benchmark to query every epoch: NAS-Bench-201-v1_0-e61699.pth (or v1_1), or NATS-Bench's "
                        "NATS-tss-v1_0-3ffb9-simple folder (fast mode) or its .pickle.pbz2 archive")


def add_cuda_graph_flag(p):
    """The whole search step as one CUDA graph (common/nas/cuda_graph.py)."""
    p.add_argument("--cuda_graph", action="store_true",
                   help="capture the search step in a CUDA graph and replay it (a GPU, one process; not with "
                        "gdas, --unrolled or --amp): the same steps, far fewer kernel launches from Python")
