"""The body of every script, written once: prepare the run, build its task, open its folder,
drive the epochs.

    results = launch.start(args, default_dir=..., build_task=..., dist=dist)

`build_task(device, checkpoint, note)` builds the task (a search or a training) from the
parsed flags, rebuilt at the checkpoint's settings on `--resume`; `note(line)` queues a line
for the log. It runs before the folder exists, so that bad data or flags leave nothing behind.
"""
from pathlib import Path

import torch

from common.checkpoint import check_same_settings, load_checkpoint
from common.device import check_amp, resolve_device, seed_everything
from common.distributed import distributed_main, global_to_local_batch
from common.driver import drive
from common.errors import exit_on_user_error
from common.flags import RESUME_MAY_DIFFER
from common.run_folder import QuietFolder, RunFolder


def prepare(args, default_dir, dist=None):
    """(device, checkpoint or None, output folder), seeded: --resume continues in the run's own
    folder with the checkpoint's settings; `default_dir()` names a new run's folder. Under
    torchrun (`dist` distributed) the device is cuda:LOCAL_RANK (or the CPU) and every rank
    takes rank 0's folder name (names carry a time stamp). One line, before anything is
    written, when the global batch does not divide among the ranks or --amp has no bfloat16."""
    if dist is not None:
        global_to_local_batch(args.batch_size, dist)
    device = resolve_device(args.device)
    checkpoint = None
    if args.resume:
        checkpoint = load_checkpoint(args.resume)
        check_same_settings(checkpoint["args"], vars(args), RESUME_MAY_DIFFER)
        out_dir = Path(args.resume) if Path(args.resume).is_dir() else Path(args.resume).parent
    else:
        out_dir = Path(args.output_dir or default_dir())
    if dist is not None and dist.distributed:
        device = dist.device
        out_dir = Path(dist.all_gather_objects(str(out_dir))[0])
    if args.amp:
        check_amp(device)
    seed_everything(args.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device, checkpoint, out_dir


def open_folder(out_dir, args, device, dist=None, results=None):
    """The run's log, TensorBoard writer and results file on rank 0; a silent stand-in elsewhere."""
    if dist is None or dist.is_main:
        return RunFolder(out_dir, vars(args), device, results=results)
    return QuietFolder(out_dir, results)


def start(args, *, default_dir, build_task, dist=None):
    """Run a script's task with parsed flags; returns the results dict (see the module doc)."""
    device, checkpoint, out_dir = prepare(args, default_dir, dist)
    notes = []
    task = build_task(device, checkpoint, notes.append)
    start_epoch = task.restore(checkpoint) if checkpoint else 0
    folder = open_folder(out_dir, args, device, dist, results=checkpoint["results"] if checkpoint else None)
    try:
        folder.log.info(f"args {vars(args)}")
        for line in notes + ([f"resumed from {out_dir} after epoch {start_epoch}"] if checkpoint else []):
            folder.log.info(line)
        for line in task.describe(folder.results, device):
            folder.log.info(line)
        if dist is not None and dist.distributed:
            folder.log.info(f"data parallel over {dist.world_size} processes, "
                            f"{args.batch_size // dist.world_size} images per process and step")
        results = drive(task, folder, start_epoch=start_epoch, stop_after_epoch=args.stop_after_epoch, dist=dist)
        folder.log.info(f"log {folder.dir / 'log.txt'} | TensorBoard {folder.dir / 'tb'} | "
                        f"results {folder.results_path}")
        return results
    finally:
        folder.close()


def entry_point(build_parser, run):
    """A script's `main(argv=None)`: parse the flags, run `run(args, dist)` as one process or as
    one rank of a torchrun job; a user error is one line and exit status 2."""

    @exit_on_user_error
    def main(argv=None):
        return distributed_main(run, build_parser().parse_args(argv))

    return main
