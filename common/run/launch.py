"""The body of every script, written once: prepare the run, (the script) build its task, open
its folder, drive the epochs.

    main = launch.entry_point(build_parser, run)      # a script's main(argv=None)
    run = launch.prepare(args, default_dir, dist)     # device, checkpoint, folder name, seeded
    task = ...                                        # a search or a training, built by its script
    results = launch.run_task(args, run, task, dist)

The task is built from the parsed flags, at the checkpoint's settings on `--resume`
(`run.checkpoint`), and may queue lines for the log (`run.notes`). It is built before the
folder is made, so that bad data or flags leave nothing behind. A run that fails later writes
its error line into its log and `finished: false` with the error into its results; a signal
stops it at a step boundary (common/run/stopping.py).
"""
import os
import sys
from pathlib import Path
from typing import NamedTuple, Optional

import torch

from common.run.authors_flags import translate
from common.run.checkpoint import load_checkpoint, remove_orphans
from common.device import check_amp, configure_backends, resolve_device, seed_everything
from common.distributed import ONE_PROCESS, distributed_main, global_to_local_batch
from common.run.driver import drive
from common.errors import UserError, exit_on_user_error
from common.run.flags import apply_presets
from common.run.ownership import RunLock, check_new_run, check_no_run, check_not_running, check_writable, clear_run
from common.run.resume import check_same_script, explicit_flags, extension_lines, resumed_args
from common.run.run_folder import PROJECT_ROOT, QuietFolder, RunFolder
from common.run.stopping import StopSignals


class Prepared(NamedTuple):
    """A run made ready by `prepare`, before its task is built."""

    device: object  # torch.device
    checkpoint: Optional[dict]  # with --resume
    out_dir: Path
    numerics: dict  # TF32, deterministic kernels, cuDNN autotuning (results.json)
    notes: list  # lines for the log, queued until the folder is open


def prepare(args, default_dir, dist=ONE_PROCESS):
    """The run's Prepared (device, checkpoint or None, output folder, numerics), seeded:
    --resume continues in the run's own folder; `default_dir()` names a new run's folder, which must not hold a run (but with
    --overwrite). Under torchrun the device is cuda:LOCAL_RANK (or the CPU) and every rank takes
    rank 0's folder name (names carry a time stamp). One line, before anything is written, for
    a folder that cannot be used, a global batch that does not divide among the ranks, or --amp
    without bfloat16."""
    global_to_local_batch(args.batch_size, dist)
    device = resolve_device(args.device)
    if "/" in args.save or args.save in ("", ".", ".."):
        raise UserError(f"--save {args.save!r} is a name, part of the folder name: use --output_dir for a path")
    checkpoint = None
    if args.resume:
        out_dir = Path(args.resume) if Path(args.resume).is_dir() else Path(args.resume).parent
        check_not_running(out_dir)
        checkpoint = load_checkpoint(args.resume)
    else:
        out_dir = Path(args.output_dir or default_dir())
        check_writable(out_dir)
        check_new_run(out_dir, args.overwrite)
    if dist.distributed:
        device = dist.device
        out_dir = Path(dist.all_gather_objects(str(out_dir))[0])
    if args.amp:
        check_amp(device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # the current device: its random state is the one checkpointed
    seed_everything(args.seed)
    numerics = configure_backends(device, deterministic=args.deterministic, tf32=args.tf32)
    return Prepared(device, checkpoint, out_dir, numerics, [])


def open_folder(out_dir, args, device, dist=ONE_PROCESS, results=None):
    """The run's folder, locked, on rank 0 (a new run's checked again under the lock, and
    cleared with --overwrite; the temporary files of killed writes removed); a silent stand-in
    on the other ranks."""
    if not dist.is_main:
        return QuietFolder(out_dir, results)
    lock = RunLock(out_dir).acquire()
    try:
        if not args.resume:
            check_no_run(out_dir, args.overwrite)  # again, under the lock
            clear_run(out_dir)
        remove_orphans(out_dir)
        return RunFolder(out_dir, vars(args), device, results=results, lock=lock)
    except BaseException:
        lock.release()
        raise


def restore(task, checkpoint, dist, note):
    """Load `checkpoint` into the task: (epochs done, the (steps done, sums) of a first epoch
    stopped in its middle, or None)."""
    if checkpoint is None:
        return 0, None
    done = task.restore(checkpoint)
    if done > task.epochs:
        raise UserError(f"the checkpoint has {done} epochs done, more than the run's {task.epochs}: "
                        "resume with its own --epochs or more")
    if checkpoint["threads"] != torch.get_num_threads():
        asked = os.environ.get("OMP_NUM_THREADS")
        note(f"warning: the checkpoint was written with {checkpoint['threads']} CPU threads, this run has "
             f"{torch.get_num_threads()}{f' (OMP_NUM_THREADS={asked})' if asked else ''}: on a CPU the continued run "
             f"is not bit-identical (set OMP_NUM_THREADS={checkpoint['threads']})")
    middle = checkpoint.get("mid_epoch")
    if middle is None:
        return done, None
    world, rank = dist.world_size, dist.rank
    if len(middle["ranks"]) != world:
        raise UserError(f"the checkpoint was written in the middle of an epoch by {len(middle['ranks'])} "
                        f"processes: resume it with as many (torchrun --nproc_per_node={len(middle['ranks'])})")
    return done, (middle["steps_done"], task.restore_rank(middle["ranks"][rank]))


def run_task(args, run, task, dist=ONE_PROCESS):
    """Drive a script's `task`, built for the Prepared `run`, into its folder; returns the
    results dict (see the module doc)."""
    device, checkpoint, out_dir, numerics = run.device, run.checkpoint, run.out_dir, run.numerics
    loaders = task.objects.loaders
    notes = [*run.notes, *getattr(loaders, "notes", ())]  # e.g. how a folder dataset is read
    start_epoch, resume = restore(task, checkpoint, dist, notes.append)
    folder = open_folder(out_dir, args, device, dist, results=checkpoint["results"] if checkpoint else None)
    signals = StopSignals().install()
    try:
        folder.log.info(f"args {vars(args)}")
        resumed = [f"resumed from {out_dir} after epoch {start_epoch}",
                   *extension_lines(checkpoint["args"], args)] if checkpoint else []
        for line in notes + resumed:
            folder.log.info(line)
        folder.results["numerics"] = numerics  # TF32, deterministic kernels, cuDNN autotuning
        for line in task.describe(folder.results, device):
            folder.log.info(line)
        if getattr(loaders, "data", None):
            folder.results["data"] = loaders.data
        if dist.distributed:
            folder.results["processes"] = dist.world_size  # the run's cost is its wall time x this
            folder.log.info(f"data parallel over {dist.world_size} processes, "
                            f"{args.batch_size // dist.world_size} images per process and step")
        if start_epoch < task.epochs:  # a stopped or an extended run goes on
            folder.results.update(args=vars(args), finished=False)
            for key in ("stopped", "error", "diverged"):
                folder.results.pop(key, None)
        results = drive(task, folder, start_epoch=start_epoch, stop_after_epoch=args.stop_after_epoch, dist=dist,
                        signals=signals, resume=resume)
        folder.log.info(f"log {folder.dir / 'log.txt'} | TensorBoard {folder.dir / 'tb'} | "
                        f"results {folder.results_path}")
        return results
    except Exception as err:
        folder.record_failure(err)
        raise
    finally:
        signals.uninstall()
        folder.close()


def entry_point(build_parser, run):
    """A script's `main(argv=None)`: parse the flags (with --resume, the checkpoint's, see
    common/run/resume.py), run `run(args, dist)` as one process or as one rank of a torchrun job;
    a user error is one line and exit status 2."""

    script = script_name(build_parser)

    @exit_on_user_error
    def main(argv=None):
        parser = build_parser()
        args = parser.parse_args(argv)
        given = explicit_flags(build_parser, argv)
        args, given = translate(args, given)  # the authors' --gpu and --arch_weight_decay
        if args.resume:
            saved = load_checkpoint(args.resume)["args"]
            check_same_script(saved, script, vars(args), args.resume)
            args = resumed_args(args, given, saved)
        else:
            args = apply_presets(parser, args, given)
        args.script = script  # recorded with the flags: which script made the run
        return distributed_main(run, args)

    return main


def script_name(build_parser):
    """The script a parser belongs to, as a path from the project root ("201-space/train_search.py")."""
    path = Path(sys.modules[build_parser.__module__].__file__).resolve()
    try:
        return str(path.relative_to(PROJECT_ROOT))
    except ValueError:
        return path.name
