"""The authors' own code, run beside ours where it runs on a CPU (differential tests).

Their checkout sits in `.authors/DrNAS` of this checkout (ignored by git; `DRNAS_AUTHORS`
names another folder); without it the tests that need it are skipped. Nothing of it is
copied here: each snippet runs in a fresh interpreter from their space folder, with their
own `sys.path` layout (their modules import `genotypes`, `operations`, `utils` by bare name,
which must not meet ours), their `.cuda()` calls made no-ops, and prints one JSON line.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AUTHORS = Path(os.environ.get("DRNAS_AUTHORS", ROOT / ".authors" / "DrNAS"))

needs_authors = pytest.mark.skipif(
    not (AUTHORS / "DARTS-space" / "model_search.py").is_file()
    or not (AUTHORS / "201-space" / "search_model.py").is_file(),
    reason=f"the authors' code is not in {AUTHORS}")

PRELUDE = """
import json, sys
import torch
from torch import nn
torch.Tensor.cuda = lambda self, *args, **kwargs: self
nn.Module.cuda = lambda self, *args, **kwargs: self
sys.path[:0] = [{space!r}, {root!r}]
"""


def run_authors(space, *code, timeout=300):
    """Run the pieces of `code` in order (the last prints one JSON value) among the authors'
    modules of `space` (`201-space` or `DARTS-space`) and return that value."""
    folder = AUTHORS / space
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    program = PRELUDE.format(space=str(folder), root=str(AUTHORS)) + "".join(textwrap.dedent(c) for c in code)
    done = subprocess.run([sys.executable, "-c", program], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def source(relative):
    """The text of one of their files."""
    return (AUTHORS / relative).read_text()
