"""Atomic checkpoints of plain state (state_dicts, numbers, strings, lists) and RNG states.

A checkpoint is written to a temporary file in the same folder and moved into place, so
an interrupted write never leaves a half-written checkpoint; a run that starts or resumes
removes the temporary files a killed write left. Loading uses
`torch.load(weights_only=True)`: a checkpoint can hold nothing but tensors and plain types.
It carries a SHA-256 of its whole content, so a flipped bit is refused, and the CPU thread
count it was written with (a resume on another count is not bit-identical on the CPU).
"""
import hashlib
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from common.errors import UserError, one_line

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


FORMAT = "drnas-checkpoint"
_TMP_PATTERNS = (f".{CHECKPOINT_NAME}.*.tmp", ".results.json.*.tmp")


def remove_orphans(folder):
    """Remove the temporary files of this project's atomic writes that a killed run left."""
    for pattern in _TMP_PATTERNS:
        for orphan in Path(folder).glob(pattern):
            orphan.unlink(missing_ok=True)


def _feed(digest, value):
    """Hash `value` (nested dicts, lists, tuples, tensors, plain values) into `digest`."""
    if torch.is_tensor(value):
        data = value.detach().cpu().contiguous()
        digest.update(f"tensor {data.dtype} {tuple(data.shape)}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    elif isinstance(value, dict):
        digest.update(b"dict")
        for key in sorted(value, key=repr):
            digest.update(repr(key).encode())
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__} {len(value)}".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"{type(value).__name__} {value!r}".encode())


def checksum(state):
    digest = hashlib.sha256()
    _feed(digest, {key: value for key, value in state.items() if key != "checksum"})
    return digest.hexdigest()


def save_checkpoint(path, state):
    """Write `state` atomically, with the format marker, the thread count and the checksum; a
    full disk or an unwritable folder is one line."""
    state = {**state, "format": FORMAT, "threads": torch.get_num_threads()}
    state["checksum"] = checksum(state)
    try:
        atomic_write(path, lambda tmp: torch.save(state, tmp))
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
        reason = getattr(err, "strerror", None) or one_line(err)[:160]
        raise UserError(f"cannot write the checkpoint {path} ({reason}): free some space or pick another "
                        "--output_dir; the previous checkpoint is kept") from None


def find_checkpoint(path):
    """`--resume` takes a run folder or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: pass the run folder or its {CHECKPOINT_NAME} to --resume")
    return path


_REQUIRED = ("epoch", "args", "results", "rng", "loaders", "checksum")


def load_checkpoint(path):
    """The checked checkpoint of a run folder (or file): one line for a truncated, foreign,
    altered or inconsistent file."""
    path = find_checkpoint(path)
    fix = "start a new run (without --resume) or pass another run folder"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated, not a torch file, or objects that are not plain data
        raise UserError(f"cannot read checkpoint {path}: it is truncated or not a checkpoint of this "
                        f"project; {fix}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or any(key not in state for key in _REQUIRED):
        raise UserError(f"{path} is a torch file but not a checkpoint of this project; {fix}")
    if checksum(state) != state["checksum"]:
        raise UserError(f"checkpoint {path} is damaged (its content does not match its checksum); {fix}")
    _check_consistent(path, state, fix)
    return state


def _check_consistent(path, state, fix):
    epoch, results = state["epoch"], state["results"]
    if not isinstance(epoch, int) or not isinstance(results, dict) or epoch != len(results.get("epochs", [])):
        raise UserError(f"checkpoint {path} counts {epoch!r} epochs done but records "
                        f"{len(results.get('epochs', [])) if isinstance(results, dict) else '?'}; {fix}")
    for name, tensor in state.get("model", {}).items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UserError(f"checkpoint {path} holds non-finite values in {name} (the run diverged before it "
                            f"was written); {fix}")


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
    """Every random state a run depends on, as tensors and plain types: on a GPU the state of
    the process's own device only (all of them would not restore on a box with fewer GPUs)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *map(float, np_state[2:])],
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # the current device: the run's (common/run/launch.py)
    return state


def device_rng_state(saved, index):
    """The saved GPU random state for device `index`: the one state of this format, or from the
    per-device list of earlier checkpoints the entry of `index` (the first when there are fewer)."""
    if torch.is_tensor(saved):
        return saved
    return saved[index] if index < len(saved) else saved[0]


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), gauss))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(device_rng_state(state["cuda"], torch.cuda.current_device()))


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, (list, tuple)) else value


def _to_tuples(value):
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value
