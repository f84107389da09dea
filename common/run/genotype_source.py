"""Reading the genotype that a training's `--arch` names when it names a file: a search's
results.json (its final "genotype" entry) or the run folder holding it, in any search space.

    file, data = read_arch_json(arch, missing=..., folder_hint=...)
    genotype = final_genotype(data, file, arch, allow_unfinished, kind=dict, space=..., other=...)
    genotype = load_genotype(run)   # any run's final genotype, in its space's own type

The space's own module (DARTS-space/model.py, 201-space/model.py) decides what else `--arch`
may be (a published name, a cell string, a bare genotype JSON) and turns the JSON value into
its genotype type. Every failure is a one-line UserError that says how to fix it.
"""
import json
import os

from common.errors import UserError, one_line
from common.run.results import RESULTS_NAME, read_json
from common.spaces import SPACES


def read_arch_json(arch, *, missing, folder_hint):
    """(file, parsed JSON) of the file `arch`, or of the results.json in the folder `arch`.

    `missing` is the whole message for a path that does not exist (the space knows what
    else `--arch` could have been); `folder_hint` ends the message for a folder without
    results.json. A file that cannot be read or is not JSON is a UserError too."""
    if not os.path.exists(arch):
        raise UserError(missing)
    if not os.path.isdir(arch):
        return arch, read_json(arch, label="--arch file ", expected="a genotype")  # a pipe: one line
    file = os.path.join(arch, RESULTS_NAME)
    if not os.path.isfile(file):
        raise UserError(f"--arch {arch!r} is a folder without {RESULTS_NAME}: {folder_hint}")
    return file, read_json(file, label="--arch file ", expected="a genotype")


def final_genotype(data, file, arch, allow_unfinished, *, kind, space, other):
    """The "genotype" entry of the results `data` read from `file`, or None when it has none.

    The entry must be a `kind` (the JSON type of `space`'s genotypes; a value of another type
    is most likely the genotype of an `other` space's search). A search that has not finished
    wrote an intermediate genotype: refused unless `allow_unfinished`."""
    genotype = data.get("genotype") if isinstance(data, dict) else None
    if genotype is None:
        return None
    if not isinstance(genotype, kind):
        raise UserError(f"--arch file {file}: the genotype is not a {space} genotype "
                        f"(got {one_line(json.dumps(genotype))[:80]}; a {other} search?)")
    if data.get("finished") is not True and not allow_unfinished:
        raise UserError(f"--arch {arch}: the search has not finished ({data.get('epochs_done', '?')} epochs "
                        "done), its genotype is an intermediate one: wait for it, or pass --allow_unfinished")
    return genotype


def run_genotype(run, allow_unfinished=False):
    """(space name, final genotype in the space's own type) of any run, a search or a training,
    given its folder or its results.json (see load_genotype)."""
    run = str(run)
    file, data = read_arch_json(run, missing=f"{run} does not exist: pass a run folder or its {RESULTS_NAME}",
                                folder_hint="pass a run folder or its results.json")
    space = SPACES.get(data.get("space")) if isinstance(data, dict) else None
    if space is None:
        raise UserError(f"{file} names no known search space (its 'space' entry: "
                        f"{data.get('space') if isinstance(data, dict) else None!r}): is it a run's {RESULTS_NAME}?")
    kind = dict if space.genotype_reader else str
    genotype = final_genotype(data, file, run, allow_unfinished, kind=kind, space=space.name,
                              other="different space's")
    if genotype is None:
        raise UserError(f"{file} holds no genotype yet (a search writes one after its first epoch)")
    try:
        return space.name, space.read_genotype(genotype)
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"{file}: bad genotype: {one_line(err)}") from None


def load_genotype(run, allow_unfinished=False):
    """The final genotype of any run, a search or a training, given its folder or its
    results.json, in its space's own type (common/spaces.py): a DARTS-space `Genotype`, a
    NAS-Bench-201 cell string. One-line UserErrors as for `--arch`; a search that has not
    finished is refused unless `allow_unfinished`."""
    return run_genotype(run, allow_unfinished)[1]
