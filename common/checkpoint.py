"""Atomic checkpoints of plain state (state_dicts, numbers, strings, lists) and RNG states.

A checkpoint is written to a temporary file in the same folder and moved into place, so
an interrupted write never leaves a half-written checkpoint. Loading uses
`torch.load(weights_only=True)`: a checkpoint can hold nothing but tensors and plain types.
"""
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from common.errors import UserError

CHECKPOINT_NAME = "checkpoint.pt"


def atomic_write(path, write):
    """Call `write(tmp_path)` then atomically move the temporary file to `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are for sharing
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(path, state):
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def find_checkpoint(path):
    """`--resume` takes a run folder or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: pass the run folder or its {CHECKPOINT_NAME} to --resume")
    return path


def load_checkpoint(path):
    path = find_checkpoint(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated, not a torch file, or objects that are not plain data
        raise UserError(f"cannot read checkpoint {path}: it is truncated or not a checkpoint of this "
                        "project; start a new run without --resume") from None


def check_same_settings(saved_args, args, may_differ):
    """A checkpoint only resumes a run with the same settings (but for `may_differ`)."""
    for key in sorted(set(saved_args) | set(args)):
        if key in may_differ:
            continue
        if saved_args.get(key) != args.get(key):
            raise UserError(
                f"the checkpoint was written with --{key} {saved_args.get(key)!r}, this run has "
                f"--{key} {args.get(key)!r}: resume with the checkpoint's settings or start a new run"
            )


def loop_state(epoch, run, stateful, loaders):
    """What every loop's checkpoint holds: epochs done, the state_dict of each object in
    `stateful` ({key: model, optimizer, scheduler, ...}) and of each loader, every RNG state,
    and the run's args and results (so the results JSON continues exactly)."""
    return {
        "epoch": epoch,
        **{key: obj.state_dict() for key, obj in stateful.items()},
        "loaders": {name: loader.state_dict() for name, loader in loaders.items()
                    if hasattr(loader, "state_dict")},
        "rng": rng_state(),
        "args": run.results["args"],
        "results": run.results,
    }


def restore_loop_state(state, stateful, loaders):
    """Load `loop_state` into freshly built objects; returns the number of epochs done."""
    for key, obj in stateful.items():
        obj.load_state_dict(state[key])
    for name, loader_state in state.get("loaders", {}).items():
        loaders[name].load_state_dict(loader_state)
    set_rng_state(state["rng"])
    return int(state["epoch"])


def rng_state():
    """Every random state a run depends on, as tensors and plain types."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *map(float, np_state[2:])],
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), gauss))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, (list, tuple)) else value


def _to_tuples(value):
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value
