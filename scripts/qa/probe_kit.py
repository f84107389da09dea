"""What the cases of scripts/qa/probe_bad_inputs.py are made of: the `Case` record, the scripts
they run, and the helpers that prepare their files (finished runs, edited checkpoints,
crafted pickles, a full disk, a locked folder, named pipes, links)."""
import contextlib
import io
import json
import pickle
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

SEARCH = ["--dataset", "synthetic", "--data_limit", "64", "--batch_size", "16", "--init_channels", "4",
          "--num_cells", "1", "--epochs", "1", "--device", "cpu", "--report_freq", "1000"]
TRAIN = ["--dataset", "synthetic", "--data_limit", "64", "--batch_size", "16", "--init_channels", "8",
         "--layers", "3", "--epochs", "1", "--device", "cpu", "--report_freq", "1000"]


@dataclass
class Case:
    name: str
    script: str  # a key of SCRIPTS
    argv: Callable  # tmp folder -> extra flags (may write files first)
    needle: str  # a piece of the one line
    no_folder: bool = True  # the output folder must not exist afterwards
    patch: Callable = field(default=None)  # context manager factory (tmp -> context), e.g. a full disk
    status: int = 2  # the exit status that holds
    prefix: str = "error:"  # how the one line starts
    unchanged: Callable = field(default=None)  # tmp -> a folder that must stay byte-for-byte as it was


class RunsCode:
    """A crafted pickle: unpickling it runs a shell command that creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


SCRIPTS = {  # case script -> module whose main() runs it
    "search": "space201.train_search", "progressive": "space201.train_search_progressive",
    "darts_search": "darts_space.train_search", "train": "darts_space.train", "train201": "space201.train",
    "aggregate": "aggregate", "plot": "plot_search",  # scripts/, torch-free readers of results.json
}


def main_of(script):
    import importlib

    return importlib.import_module(SCRIPTS[script]).main


def finished_search(tmp, *extra):
    """A real 1-epoch search's folder (its checkpoint is re-signed after edits with `resign`)."""
    out = tmp / "done"
    with contextlib.redirect_stdout(io.StringIO()):
        main_of("search")([*SEARCH, "--output_dir", str(out), *extra])
    return out


def resign(out, edit):
    """Edit a checkpoint's state and sign it again: only the consistency checks can catch it."""
    from common.run.checkpoint import checksum

    path = out / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    edit(state)
    state["checksum"] = checksum(state)
    torch.save(state, path)
    return out


def flip_a_bit(out):
    path = out / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    return out


def json_file(tmp, text):
    path = tmp / "arch.json"
    path.write_text(text)
    return str(path)


def genotype_text(index):
    pairs = json.dumps([["sep_conv_3x3", 0], ["sep_conv_3x3", 1]] * 4).replace("[\"sep_conv_3x3\", 1]", index, 1)
    return '{"normal": %s, "normal_concat": [2, 3, 4, 5], "reduce": %s, "reduce_concat": [2, 3, 4, 5]}' % (
        pairs, pairs)


def unfinished_search(tmp):
    """A DARTS-space search's folder whose results say it has not finished."""
    from darts_space.genotypes import GENOTYPES, genotype_to_json

    folder = tmp / "search"
    folder.mkdir()
    record = {"args": {}, "genotype": genotype_to_json(GENOTYPES["DrNAS_cifar10"]), "finished": False, "epochs_done": 3}
    (folder / "results.json").write_text(json.dumps(record))
    return str(folder)


def crafted_cifar(tmp):
    folder = tmp / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(RunsCode(tmp / "ran"), protocol=2))
    return ["--dataset", "cifar10", "--data", str(tmp / "data")]


@contextlib.contextmanager
def full_disk(tmp):
    real = torch.save

    def no_space(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    torch.save = no_space
    try:
        yield
    finally:
        torch.save = real


@contextlib.contextmanager
def locked(tmp):
    from common.run.ownership import RunLock

    lock = RunLock(tmp / "run").acquire()
    try:
        yield
    finally:
        lock.release()


def search(*flags):
    return lambda tmp: [*SEARCH, "--output_dir", str(tmp / "run"), *flags]


def train(*flags):
    return lambda tmp: [*TRAIN, "--output_dir", str(tmp / "run"), *flags]


def resume(edit=None, *flags):
    def argv(tmp):
        out = finished_search(tmp, "--epochs", "2", "--stop_after_epoch", "1")
        if edit is not None:
            edit(out)
        return ["--resume", str(out), *flags]
    return argv


def file_at(tmp, name="file"):
    (tmp / name).write_text("not a folder")
    return tmp / name




# ---- round two: foreign runs, links, pipes, environments


def run_of(script, tmp, name, *extra):
    """A finished 1-epoch run of `script` ("search", "progressive", "train") in tmp/name."""
    flags = {"search": SEARCH, "train": TRAIN,
             "progressive": [*SEARCH[:SEARCH.index("--epochs")], *SEARCH[SEARCH.index("--epochs") + 2:],
                             "--ks", "2", "1", "--num_keeps", "3", "2", "--train_epochs", "1", "1"]}[script]
    out = tmp / name
    with contextlib.redirect_stdout(io.StringIO()):
        main_of(script)([*flags, "--output_dir", str(out), *extra])
    return out


def resume_foreign(made_by, edit=None):
    """--resume of a finished run of another script, its folder kept for the unchanged check."""
    def argv(tmp):
        out = run_of(made_by, tmp, "other")
        if edit is not None:
            resign(out, edit)
        return ["--resume", str(out)]
    return argv


def other_run(tmp):
    return tmp / "other"


def image_folder(tmp, *, link=None, odd=None):
    """A 2-class image folder; `link` (name, target) adds a linked folder in class a; `odd`
    (name, array) adds one more image file in class a."""
    import numpy as np
    from PIL import Image

    root = tmp / "images"
    for split, label in [(split, label) for split in ("train", "val") for label in ("a", "b")]:
        (root / split / label).mkdir(parents=True)  # with val/, a search reads every training image
        for i in range(8 if split == "train" else 2):
            Image.fromarray(np.full((12, 12, 3), 30 * i, np.uint8)).save(root / split / label / f"{i}.png")
    if link:
        (root / "train" / "a" / link[0]).symlink_to(link[1])
    if odd:
        Image.fromarray(odd[1]).save(root / "train" / "a" / odd[0])
    return ["--dataset", "folder", "--data", str(root)]


def fifo(tmp, name="pipe"):
    path = tmp / name
    os.mkfifo(path)
    return str(path)


@contextlib.contextmanager
def environment(**values):
    """Environment variables set for the case (None: removed), restored after."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


@contextlib.contextmanager
def ctrl_c_at_start(tmp):
    """Ctrl-C while the run is being set up (before its own signal handling is installed)."""
    from common.run import launch

    real = launch.configure_backends

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    launch.configure_backends = interrupted
    try:
        yield
    finally:
        launch.configure_backends = real
