"""The authors' flags that this code spells otherwise, accepted with their meaning so that their
commands run unchanged:

    --gpu N                 the same as --device cuda:N (their scripts' GPU index)
    --arch_weight_decay X   the same as --reg_type l2 --reg_scale X: Adam's weight decay on alpha,
                            the l2 anchor (their ImageNet search's meaning; their NAS-Bench-201
                            search declared it, but its architect read --reg_scale)

The flags are declared with their groups (common/run/flags.py, common/nas/search_flags.py). Each
alias is replaced by its flag right after parsing (`translate`), so the run, its checkpoint
and its results hold the flag this code uses; both given with different values is one line.
(`--cutout_prob` is a flag of its own, with the authors' meaning: common/run/flags.py.)
"""
from common.errors import UserError


def _device(gpu, args):
    return f"cuda:{gpu}"


def _anchor_scale(scale, args):
    if args.reg_type != "l2":
        raise UserError(f"--arch_weight_decay is the l2 anchor (Adam's weight decay on alpha); with --reg_type "
                        f"{args.reg_type} the anchor's scale is --reg_scale: give that instead")
    return scale


# alias: (the flag it stands for, its value from the alias's)
ALIASES = {"gpu": ("device", _device), "arch_weight_decay": ("reg_scale", _anchor_scale)}


def translate(args, given):
    """(args, given) with every alias replaced by its flag (see the module doc); `given` is the
    set of flags on the command line (common.run.resume.explicit_flags)."""
    values = vars(args)
    given = set(given)
    for alias, (target, convert) in ALIASES.items():
        if alias not in values:
            continue
        value = values.pop(alias)
        if alias not in given:
            continue
        meant = convert(value, args)
        if target in given and values[target] != meant:
            raise UserError(f"--{alias} {value} means --{target} {meant}, but --{target} {values[target]} is given "
                            f"too: give one of them")
        values[target] = meant
        given = (given - {alias}) | {target}
    return args, given
