"""A run folder belongs to one run and one process.

- A run holds an exclusive advisory lock on `<folder>/.lock` (which holds its PID) from the
  moment it opens the folder until it ends: a second process started into the same folder is
  refused in one line, and the first finishes intact.
- A new run (without --resume) into a folder that holds a run (a checkpoint, or results with
  an epoch done) is refused unless --overwrite is given; --overwrite removes the previous
  run's files only once the lock is held. A start killed before its first checkpoint leaves
  nothing to lose: a new start may reuse the folder (a requeued job's first attempt).
- The folder is checked before anything is built: an existing file in its place, a file
  above it, or a place this user cannot write are each one line.
"""
import errno
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path

from common.errors import UserError
from common.run.results import RESULTS_NAME

LOCK_NAME = ".lock"
RUN_FILES = (RESULTS_NAME, "checkpoint.pt", "log.txt")  # a run's files: --overwrite removes them


def holds_run(folder):
    """A checkpoint, or results that record an epoch or the end of a run. A start killed before
    its first checkpoint (log.txt alone, or results without an epoch) holds nothing to lose: a
    new start may go there, as a requeued job's does."""
    folder = Path(folder)
    if (folder / "checkpoint.pt").exists():
        return True
    try:
        record = json.loads((folder / RESULTS_NAME).read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True  # unreadable results: not ours to clear without --overwrite
    return not isinstance(record, dict) or bool(record.get("epochs")) or record.get("finished") is not False


def check_writable(folder):
    """One line when `folder` cannot be a run folder: a file, under a file, or not writable."""
    folder = Path(folder)
    too_long = [part for part in folder.parts if len(part.encode()) > 255]
    if too_long or len(str(folder).encode()) > 4000:
        raise UserError(f"--output_dir {str(folder)[:60]}... is too long for a file system ("
                        f"{'a name of ' + str(len(too_long[0].encode())) + ' bytes, over 255' if too_long else str(len(str(folder).encode())) + ' bytes'}"
                        "): pick a shorter folder (or a shorter --save)")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--output_dir {folder} is a file: pick a folder")
    parent = folder
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"--output_dir {folder} lies under the file {parent}: pick a folder")
    try:  # a real try (access() says yes to root, and to /proc): a folder made and removed at once
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".drnas-probe-"))
    except OSError as err:
        raise UserError(f"--output_dir {folder}: {parent} is not writable ({err.strerror}): pick a folder "
                        "you can write") from None


def check_not_running(folder):
    """One line when a live process holds the folder's lock (without taking or creating it)."""
    path = Path(folder) / LOCK_NAME
    if not path.is_file():
        return
    with open(path) as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = handle.read().strip() or "?"
            raise UserError(f"another process (PID {owner}) is running in {folder}: wait for it, "
                            "or give this run another --output_dir") from None


def check_new_run(folder, overwrite):
    """Before building: no process runs in the folder, and no run is there (but with --overwrite)."""
    check_not_running(folder)
    check_no_run(folder, overwrite)


def check_no_run(folder, overwrite):
    if holds_run(folder) and not overwrite:
        raise UserError(f"{folder} already holds a run: continue it with --resume {folder}, "
                        f"or start anew there with --overwrite")


class RunLock:
    """The exclusive lock of a run folder, held until `release()`."""

    def __init__(self, folder):
        self.path = Path(folder) / LOCK_NAME
        self.handle = None

    def acquire(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")
        except OSError as err:
            raise UserError(f"cannot create the run folder {self.path.parent}: {err.strerror or err}") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise UserError(f"another process (PID {owner}) is running in {self.path.parent}: wait for it, "
                                "or give this run another --output_dir") from None
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return self

    def release(self):
        if self.handle is not None:
            self.handle.close()  # closing drops the lock
            self.handle = None


def clear_run(folder):
    """The previous run's files (--overwrite), removed under the lock."""
    folder = Path(folder)
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / "tb", ignore_errors=True)
