"""User-facing errors: one line that says what is wrong and how to fix it.

Anything a user can cause (a missing dataset, a wrong path, a bad flag combination, a
checkpoint from other settings) raises `UserError`; the scripts' `main()` turns it
into a single line on stderr and exit status 2, never a traceback.
"""
import argparse
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

    return wrapper


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (`error: ...`) and exit 2, without the usage dump."""

    def error(self, message):
        print(f"error: {message} (see --help)", file=sys.stderr, flush=True)
        raise SystemExit(2)
