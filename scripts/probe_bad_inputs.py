"""Try the bad inputs and faults a user can hit, and count those the scripts hold.

    python scripts/probe_bad_inputs.py        # one line per case, then "N tried, N held"

A case holds when the script exits with status 2 and one line on stderr that starts with
"error:", names what the case expects, and carries no traceback; where the case says so,
nothing was left behind (no output folder, no file made by a crafted pickle). The cases run
in this process, each in a fresh temporary folder; tests/test_reliability.py runs them all.
"""
import contextlib
import io
import json
import pickle
import sys
import tempfile
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
    script: str  # "search" (201-space/train_search.py) or "train" (DARTS-space/train.py)
    argv: Callable  # tmp folder -> extra flags (may write files first)
    needle: str  # a piece of the one line
    no_folder: bool = True  # the output folder must not exist afterwards
    patch: Callable = field(default=None)  # context manager factory (tmp -> context), e.g. a full disk


class RunsCode:
    """A crafted pickle: unpickling it runs a shell command that creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def main_of(script):
    if script == "search":
        from space201 import train_search

        return train_search.main
    from darts_space import train

    return train.main


def finished_search(tmp, *extra):
    """A real 1-epoch search's folder (its checkpoint is re-signed after edits with `resign`)."""
    out = tmp / "done"
    with contextlib.redirect_stdout(io.StringIO()):
        main_of("search")([*SEARCH, "--output_dir", str(out), *extra])
    return out


def resign(out, edit):
    """Edit a checkpoint's state and sign it again: only the consistency checks can catch it."""
    from common.checkpoint import checksum

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
    from common.ownership import RunLock

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


CASES = [
    Case("seed -1", "search", search("--seed", "-1"), "--seed"),
    Case("seed 2**40", "search", search("--seed", str(2**40)), "--seed"),
    Case("negative learning rate", "search", search("--learning_rate", "-0.1"), "--learning_rate"),
    Case("NaN learning rate", "search", search("--learning_rate", "nan"), "--learning_rate"),
    Case("negative arch learning rate", "search", search("--arch_learning_rate", "-1"), "--arch_learning_rate"),
    Case("NaN arch learning rate", "search", search("--arch_learning_rate", "nan"), "--arch_learning_rate"),
    Case("infinite arch learning rate", "search", search("--arch_learning_rate", "inf"), "--arch_learning_rate"),
    Case("negative momentum", "search", search("--momentum", "-0.5"), "--momentum"),
    Case("NaN momentum", "search", search("--momentum", "nan"), "--momentum"),
    Case("negative weight decay", "search", search("--weight_decay", "-1"), "--weight_decay"),
    Case("NaN weight decay", "search", search("--weight_decay", "nan"), "--weight_decay"),
    Case("report_freq 0", "search", search("--report_freq", "0"), "--report_freq"),
    Case("sample_archs -3", "search", search("--sample_archs", "-3"), "--sample_archs"),
    Case("hessian_batches 0", "search", search("--hessian_batches", "0"), "--hessian_batches"),
    Case("data_limit 0", "search", search("--data_limit", "0"), "--data_limit"),
    Case("grad_clip -1", "search", search("--grad_clip", "-1"), "--grad_clip"),
    Case("cutout_length -8", "search", search("--cutout_length", "-8"), "--cutout_length"),
    Case("epochs 0", "search", search("--epochs", "0"), "--epochs"),
    Case("batch_size 0", "search", search("--batch_size", "0"), "--batch_size"),
    Case("train_portion 1.5", "search", search("--train_portion", "1.5"), "--train_portion"),
    Case("k that does not divide C", "search", search("--k", "3"), "does not divide"),
    Case("device mps", "search", search("--device", "mps"), "--device mps"),
    Case("a GPU that is not there", "search", search("--device", "cuda:7"), "cuda:7"),
    Case("KL anchor for DARTS", "search", search("--reg_type", "kl", "--method", "darts"), "--reg_type kl"),
    Case("save is a path", "search", search("--save", "/tmp/x"), "--save"),
    Case("output_dir is a file", "search", lambda tmp: [*SEARCH, "--output_dir", str(file_at(tmp))], "is a file",
         no_folder=False),
    Case("output_dir under a file", "search", lambda tmp: [*SEARCH, "--output_dir", str(file_at(tmp) / "run")],
         "under the file", no_folder=False),
    Case("output_dir not writable", "search", lambda tmp: [*SEARCH, "--output_dir", "/proc/drnas-probe"],
         "not writable"),
    Case("disk full", "search", search(), "free some space", no_folder=False, patch=full_disk),
    Case("a folder another process runs in", "search", search(), "another process", no_folder=False, patch=locked),
    Case("a new run into a finished run's folder", "search",
         lambda tmp: [*SEARCH, "--output_dir", str(finished_search(tmp))], "already holds a run", no_folder=False),
    Case("resume: no checkpoint", "search", lambda tmp: ["--resume", str(tmp / "none")], "no checkpoint"),
    Case("resume: truncated checkpoint", "search",
         resume(lambda out: (out / "checkpoint.pt").write_bytes((out / "checkpoint.pt").read_bytes()[:1000])),
         "truncated", no_folder=False),
    Case("resume: a torch file that is no checkpoint", "search",
         resume(lambda out: torch.save({"model": {}}, out / "checkpoint.pt")), "not a checkpoint", no_folder=False),
    Case("resume: a torch file holding a list", "search",
         resume(lambda out: torch.save([1, 2], out / "checkpoint.pt")), "not a checkpoint", no_folder=False),
    Case("resume: a flipped bit", "search", resume(flip_a_bit), "checkpoint", no_folder=False),
    Case("resume: epoch 99", "search", resume(lambda out: resign(out, lambda s: s.update(epoch=99))),
         "epochs done", no_folder=False),
    Case("resume: epoch -1", "search", resume(lambda out: resign(out, lambda s: s.update(epoch=-1))),
         "epochs done", no_folder=False),
    Case("resume: NaN alpha", "search",
         resume(lambda out: resign(out, lambda s: s["model"]["arch.cell.alpha"].fill_(float("nan")))),
         "non-finite", no_folder=False),
    Case("resume: another network's checkpoint", "search",
         resume(lambda out: resign(out, lambda s: s["args"].update(init_channels=8))), "does not fit", no_folder=False),
    Case("resume: changed flags, all listed", "search", resume(None, "--k", "2", "--learning_rate", "0.1"),
         "--k 2", no_folder=False),
    Case("resume: output_dir elsewhere", "search", resume(None, "--output_dir", "/tmp/elsewhere"),
         "would move it", no_folder=False),
    Case("a diverging search", "search", search("--arch_learning_rate", "1e38"), "no checkpoint was written yet",
         no_folder=False),
    Case("a crafted CIFAR batch", "search", lambda tmp: [*SEARCH, "--output_dir", str(tmp / "run"),
                                                        *crafted_cifar(tmp)], "refused"),
    Case("a crafted checkpoint", "search",
         resume(lambda out: torch.save({"x": RunsCode(out / "ran")}, out / "checkpoint.pt")),
         "not a checkpoint", no_folder=False),
    Case("arch index 1e400", "train", lambda tmp: train("--arch", json_file(tmp, genotype_text('["sep_conv_3x3", 1e400]')))(tmp),
         "whole numbers"),
    Case("arch index 0.9", "train", lambda tmp: train("--arch", json_file(tmp, genotype_text('["sep_conv_3x3", 0.9]')))(tmp),
         "whole numbers"),
    Case("arch index true", "train", lambda tmp: train("--arch", json_file(tmp, genotype_text('["sep_conv_3x3", true]')))(tmp),
         "whole numbers"),
    Case("arch JSON nested deeply", "train", lambda tmp: train("--arch", json_file(tmp, "[" * 100000 + "]" * 100000))(tmp),
         "nests too deeply"),
    Case("arch of an unfinished search", "train", lambda tmp: train("--arch", unfinished_search(tmp))(tmp),
         "not finished"),
    Case("arch unknown", "train", train("--arch", "NoSuchNet"), "NoSuchNet"),
    Case("arch Genotype(...) text that calls code", "train",
         lambda tmp: train("--arch", f"Genotype(normal=__import__('os').system('touch {tmp}/ran'))")(tmp), "not a literal"),
    Case("the authors' --gpu beside another --device", "search", search("--gpu", "1"), "--gpu 1 means --device cuda:1"),
    Case("drop_path_prob 1.5", "train", train("--drop_path_prob", "1.5"), "--drop_path_prob"),
]


def run_case(case):
    """(held, what happened) of one case, in a fresh temporary folder."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        argv = case.argv(tmp)
        err, code = io.StringIO(), None
        patch = case.patch(tmp) if case.patch else contextlib.nullcontext()
        with patch, contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                main_of(case.script)(argv)
            except SystemExit as exit_info:
                code = exit_info.code
        text = err.getvalue().strip()
        lines = text.splitlines()
        problems = []
        if code != 2:
            problems.append(f"exit status {code}")
        if len(lines) != 1 or not text.startswith("error:") or "Traceback" in text:
            problems.append(f"stderr is not one error line: {text[:300]!r}")
        elif case.needle not in text:
            problems.append(f"the line does not name {case.needle!r}: {text[:200]!r}")
        if case.no_folder and (tmp / "run").exists():
            problems.append("the output folder was made")
        if any(tmp.rglob("ran")):
            problems.append("a crafted pickle ran its code")
        return not problems, "; ".join(problems) or text


def main(argv=None):
    held = 0
    for case in CASES:
        ok, what = run_case(case)
        held += ok
        print(f"{'held' if ok else 'FAILED'}  {case.name}: {what}")
    print(f"{len(CASES)} tried, {held} held")
    return held == len(CASES)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
