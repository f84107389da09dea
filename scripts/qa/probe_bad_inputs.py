"""Try the bad inputs and faults a user can hit, and count those the scripts hold.

    python scripts/qa/probe_bad_inputs.py        # one line per case, then "N tried, N held"

A case holds when the script exits with status 2 (130 for an interruption) and one line on
stderr that starts with "error:", names what the case expects, and carries no traceback; where
the case says so, nothing was left behind (no output folder, no file made by a crafted pickle)
and another run's folder is byte-for-byte as it was. The cases (scripts/qa/probe_cases.py) run in
this process, each in a fresh temporary folder; tests/test_reliability.py runs them all.
"""
import contextlib
import hashlib
import io
import sys
import tempfile
from pathlib import Path

# probe_kit, probe_cases beside this file; aggregate.py, plot_search.py above it
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from probe_cases import CASES  # noqa: E402
from probe_kit import main_of  # noqa: E402


def digest(folder):
    """A hash of every file under `folder` (names and bytes), or None when there is none."""
    if folder is None or not Path(folder).exists():
        return None
    sha = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        sha.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return sha.hexdigest()


def run_case(case):
    """(held, what happened) of one case, in a fresh temporary folder."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        argv = case.argv(tmp)
        kept = case.unchanged(tmp) if case.unchanged else None
        before = digest(kept)
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
        if code != case.status:
            problems.append(f"exit status {code}")
        if len(lines) != 1 or not text.startswith(case.prefix) or "Traceback" in text:
            problems.append(f"stderr is not one error line: {text[:300]!r}")
        elif case.needle not in text:
            problems.append(f"the line does not name {case.needle!r}: {text[:200]!r}")
        if case.no_folder and (tmp / "run").exists():
            problems.append("the output folder was made")
        if any(tmp.rglob("ran")):
            problems.append("a crafted pickle ran its code")
        if kept is not None and digest(kept) != before:
            problems.append(f"{kept} changed")
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
