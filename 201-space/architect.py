"""The architecture step for the NAS-Bench-201 space: the shared `common.architect.Architect`
(first order, or second order with --unrolled) configured from this space's flags."""
from common.architect import Architect


def build_architect(model, args):
    return Architect(model, lr=args.arch_learning_rate, reg_type=args.reg_type,
                     reg_scale=args.reg_scale, unrolled=args.unrolled)
