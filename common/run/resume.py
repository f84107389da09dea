"""--resume with the run's own settings.

`--resume DIR` alone continues a run with every flag it was started with, read from its
checkpoint. A flag given beside it must either not change what the run computes (where it
runs and reports: the run plumbing), or extend the run (`--epochs`, or the last value of
`--train_epochs`, larger than the checkpoint's: the schedule is then rebuilt to the new total
from the resumed epoch on), or equal the checkpoint's value. Any other given flag is refused,
every difference listed in one line. `--stop_after_epoch` (and --resume, --overwrite,
--allow_unfinished) speak of this invocation only and are not taken from the checkpoint.
"""
import argparse
from pathlib import Path

from common.errors import UserError
from common.run.results import RUN_PLUMBING


class _Unset:
    def __repr__(self):
        return "<not given>"


UNSET = _Unset()
# flags about this invocation alone, never taken from the checkpoint
NOT_INHERITED = ("resume", "stop_after_epoch", "overwrite", "allow_unfinished", "count_params")


def explicit_flags(build_parser, argv):
    """The flags given on the command line `argv` (those parsed to a value, not defaulted)."""
    probe = build_parser()
    names = vars(probe.parse_args(argv))
    probe.set_defaults(**dict.fromkeys(names, UNSET))
    return {name for name, value in vars(probe.parse_args(argv)).items() if value is not UNSET}


def extends(name, old, new):
    """Whether `--name new` lengthens a run that had `old`."""
    if name == "epochs":
        return isinstance(old, int) and new > old
    if name == "train_epochs":
        return (isinstance(old, list) and len(old) == len(new) and old[:-1] == new[:-1] and new[-1] > old[-1])
    return False


def _folder_of(resume):
    path = Path(resume)
    return (path if path.is_dir() else path.parent).resolve()


def check_same_script(saved, script, flags, resume):
    """--resume continues a run of this script only: one line, before anything is written, when the
    checkpoint was made by another (named where recorded, else told by flags this script lacks)."""
    made_by = saved.get("script")
    foreign = sorted(set(saved) - set(flags) - {"script"})
    if made_by not in (None, script) or foreign:
        who = made_by or "another script (it has " + ", ".join(f"--{name}" for name in foreign[:4]) + \
            (" ..." if len(foreign) > 4 else "") + ", which this one has not)"
        raise UserError(f"{_folder_of(resume)} holds a run of {who}: resume it with that script; this one "
                        f"({script}) would train and overwrite it")


def resumed_args(args, given, saved):
    """The flags of a resumed run (see the module doc): `args` as parsed, `given` the flags on
    the command line, `saved` the checkpoint's."""
    merged = {name: value if name in NOT_INHERITED else saved.get(name, value) for name, value in vars(args).items()}
    differences = []
    for name in sorted(given):
        value, old = getattr(args, name), saved.get(name)
        if name == "output_dir":
            if value is not None and Path(value).resolve() != _folder_of(args.resume):
                raise UserError(f"--resume continues the run in its own folder {_folder_of(args.resume)}; "
                                f"--output_dir {value} would move it: copy the folder there and resume the copy")
            continue
        if name in RUN_PLUMBING or value == old or extends(name, old, value):
            merged[name] = value
        else:
            differences.append(f"--{name} {value!r} (the run has {old!r})")
    if differences:
        raise UserError("the run was started with other settings: " + "; ".join(differences)
                        + ": leave these flags out to continue it, or start a new run")
    return argparse.Namespace(**merged)


def extension_lines(saved, args):
    """The log line of a resumed run that `--epochs` (or `--train_epochs`) lengthened: `saved`
    the checkpoint's flags, `args` this run's."""
    lines = []
    for name in ("epochs", "train_epochs"):
        old, new = saved.get(name), getattr(args, name, None)
        if old is not None and new is not None and extends(name, old, new):
            shown = [" ".join(map(str, v)) if isinstance(v, list) else v for v in (old, new)]
            lines.append(f"extended: --{name} {shown[0]} -> {shown[1]}; the learning-rate schedule is rebuilt to the "
                         f"new length from the resumed epoch on (the epochs already run keep their rates)")
    return lines
