"""The cases scripts/qa/probe_bad_inputs.py tries: bad flags, unusable folders, faults, damaged and
crafted files, foreign runs, hostile environments. Each holds when its script exits with the
case's status and one line naming what the case expects (see probe_kit.Case)."""
import json

import torch
import numpy as np
from probe_kit import (SEARCH, TRAIN, Case, RunsCode, crafted_cifar, ctrl_c_at_start, environment, fifo, file_at,
                       finished_search, flip_a_bit, full_disk, genotype_text, image_folder, json_file, locked,
                       other_run, resign, resume, resume_foreign, run_of, search, train, unfinished_search)

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
         lambda tmp: train("--arch", f"Genotype(normal=__import__('os').system('touch {tmp}/ran'))")(tmp),
         "not a literal"),
    Case("the authors' --gpu beside another --device", "search", search("--gpu", "1"), "--gpu 1 means --device cuda:1"),
    Case("drop_path_prob 1.5", "train", train("--drop_path_prob", "1.5"), "--drop_path_prob"),
]

ENV = environment  # a case's patch: `lambda tmp: ENV(WORLD_SIZE="2")`
FOREIGN = dict(no_folder=False, unchanged=other_run)


def without_script(state):
    state["args"].pop("script")  # a checkpoint of an earlier version: told by its flags


def text_benchmark(tmp):
    (tmp / "bench.pth").write_text("not a benchmark")
    return str(tmp / "bench.pth")


def crafted_benchmark(tmp):
    torch.save({"x": RunsCode(tmp / "ran")}, tmp / "bench.pth")
    return str(tmp / "bench.pth")


def nb201_results(tmp):
    run_of("search", tmp, "search201")
    return str(tmp / "search201" / "results.json")


def hand_edited(field, value):
    """A finished search whose results.json was edited by hand: `field` (a path of keys) set to `value`."""
    def argv(tmp):
        out = run_of("search", tmp, "edited")
        whole = json.loads((out / "results.json").read_text())
        *parents, last = field
        target = whole
        for key in parents:
            target = target[key]
        target[last] = value
        (out / "results.json").write_text(json.dumps(whole))
        return [str(out)]
    return argv


def piped_cifar(tmp):
    args = crafted_cifar(tmp)
    folder = tmp / "data" / "cifar-10-batches-py"
    (folder / "data_batch_1").unlink()
    fifo(folder, "data_batch_1")
    return args


CASES += [
    Case("resume a progressive search with the plain script", "search", resume_foreign("progressive"),
         "train_search_progressive.py", **FOREIGN),
    Case("resume a plain search with the progressive script", "progressive", resume_foreign("search"),
         "201-space/train_search.py", **FOREIGN),
    Case("resume a NAS-Bench-201 search with the DARTS-space search", "darts_search", resume_foreign("search"),
         "201-space/train_search.py", **FOREIGN),
    Case("resume a training with a search script", "search", resume_foreign("train"), "DARTS-space/train.py",
         **FOREIGN),
    Case("resume a search with train.py", "train", resume_foreign("search"), "holds a run of", **FOREIGN),
    Case("resume an earlier version's progressive checkpoint with the plain script", "search",
         resume_foreign("progressive", without_script), "--ks", **FOREIGN),
    Case("resume an earlier version's plain checkpoint with the progressive script", "progressive",
         resume_foreign("search", without_script), "--epochs", **FOREIGN),
    Case("a class folder linking to the dataset folder", "search",
         lambda tmp: [*search()(tmp), *image_folder(tmp, link=("loop", ".."))], "outside"),
    Case("a class folder linking to itself", "search",
         lambda tmp: [*search()(tmp), *image_folder(tmp, link=("self", "."))], "a loop"),
    Case("a float image in a class folder", "search",
         lambda tmp: [*search()(tmp), *image_folder(tmp, odd=("f.tiff", np.full((12, 12), 2.5, np.float32)))],
         "floating-point pixels"),
    Case("a 32-bit integer image in a class folder", "search",
         lambda tmp: [*search()(tmp), *image_folder(tmp, odd=("i.tiff", np.full((12, 12), 7, np.int32)))],
         "32-bit integer"),
    Case("output_dir with a 300-character name", "search",
         lambda tmp: [*SEARCH, "--output_dir", str(tmp / ("a" * 300))], "too long"),
    Case("output_dir of 5,000 characters", "search",
         lambda tmp: [*SEARCH, "--output_dir", str(tmp.joinpath(*["b" * 200] * 25))], "too long"),
    Case("save of 300 characters", "search", lambda tmp: [*SEARCH, "--save", "s" * 300], "too long"),
    Case("auxiliary head with batch 1", "train", train("--auxiliary", "--batch_size", "1"), "--auxiliary"),
    Case("WORLD_SIZE without RANK", "search", search(), "RANK", patch=lambda tmp: ENV(WORLD_SIZE="2", RANK=None)),
    Case("WORLD_SIZE=abc", "search", search(), "WORLD_SIZE", patch=lambda tmp: ENV(WORLD_SIZE="abc")),
    Case("RANK outside the world", "search", search(), "RANK=5", patch=lambda tmp: ENV(WORLD_SIZE="2", RANK="5")),
    Case("LOCAL_RANK=x", "search", search(), "LOCAL_RANK",
         patch=lambda tmp: ENV(WORLD_SIZE="2", RANK="0", LOCAL_RANK="x")),
    Case("MASTER_PORT=http", "search", search(), "MASTER_PORT",
         patch=lambda tmp: ENV(WORLD_SIZE="2", RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="http")),
    Case("api_path a named pipe", "search", lambda tmp: search("--api_path", fifo(tmp))(tmp), "not a regular file"),
    Case("api_path missing", "search", search("--api_path", "/nonexistent/bench.pth"), "does not exist"),
    Case("api_path a text file", "search", lambda tmp: search("--api_path", text_benchmark(tmp))(tmp), "bench.pth"),
    Case("api_path a crafted pickle", "search", lambda tmp: search("--api_path", crafted_benchmark(tmp))(tmp),
         "bench.pth"),
    Case("arch a named pipe", "train", lambda tmp: train("--arch", fifo(tmp, "arch.json"))(tmp), "not a regular file"),
    Case("arch a NAS-Bench-201 search's results", "train", lambda tmp: train("--arch", nb201_results(tmp))(tmp),
         "genotype"),
    Case("arch op unknown", "train",
         lambda tmp: train("--arch", json_file(tmp, genotype_text('["warp_conv_9x9", 1]')))(tmp), "warp_conv_9x9"),
    Case("arch a JSON list", "train", lambda tmp: train("--arch", json_file(tmp, "[1, 2, 3]"))(tmp), "arch"),
    Case("a CIFAR batch that is a named pipe", "search",
         lambda tmp: [*SEARCH, "--output_dir", str(tmp / "run"), *piped_cifar(tmp)], "not a regular file"),
    Case("aggregate of a run with a string for an accuracy", "aggregate",
         hand_edited(("epochs", 0, "valid_acc"), "12.5%"), "epochs[0].valid_acc is a string, not a number",
         no_folder=False),
    Case("plot_search of a run with a list for its arch record", "plot",
         hand_edited(("epochs", 0, "arch"), ["alpha"]), "epochs[0].arch is a list, not an object", no_folder=False),
    Case("aggregate of a run whose args is a list", "aggregate", hand_edited(("args",), [1, 2]),
         "no 'args' object", no_folder=False),
    Case("Ctrl-C while the run is set up", "search", search(), "interrupted", patch=ctrl_c_at_start, status=130,
         prefix="interrupted"),
]
