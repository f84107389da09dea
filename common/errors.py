"""User-facing errors: one line that says what is wrong and how to fix it.

Anything a user can cause (a missing dataset, a wrong path, a bad flag combination, a
checkpoint from other settings) raises `UserError`; the scripts' `main()` turns it
into a single line on stderr and exit status 2, never a traceback.
"""
import argparse
import errno
import functools
import sys


class UserError(Exception):
    """An error caused by the user's input, reported as one line."""


def one_line(text):
    """`text` with its line breaks and runs of spaces made single spaces (for error lines)."""
    return " ".join(str(text).split())


def exit_on_user_error(main):
    """Decorate a script's `main(argv=None)`: a `UserError` becomes `error: ...` and exit 2."""

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        except OSError as err:
            if err.errno != errno.ENAMETOOLONG:
                raise
            print(f"error: a path is too long for the file system ({len(str(err.filename or ''))} characters"
                  f"{', a name over 255' if err.filename else ''}): pick shorter folder and file names",
                  file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        except KeyboardInterrupt:  # before the run's own signal handling is installed (or after it)
            print("interrupted (Ctrl-C) before the run started or after it ended: nothing to resume",
                  file=sys.stderr, flush=True)
            raise SystemExit(130) from None

    return wrapper


def regular_file(path, what):
    """`path`, refused in one line unless it is a regular file (a named pipe would block a read
    for ever; a device or a socket is no data file)."""
    import os
    import stat

    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise UserError(f"{what} {path} is not a regular file (a named pipe, device or socket): pass a file")
    return path


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (`error: ...`) and exit 2, without the usage dump."""

    def error(self, message):
        print(f"error: {message} (see --help)", file=sys.stderr, flush=True)
        raise SystemExit(2)
