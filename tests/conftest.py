"""Suite-wide settings."""
import sys
from pathlib import Path

import pytest
import torch

import common  # noqa: F401  first: an uninstalled checkout (PYTHONPATH=.) then finds space201, darts_space

# the scripts' own modules, importable as when a script runs from its folder
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path[1:1] = [str(SCRIPTS), str(SCRIPTS / "reproduce"), str(SCRIPTS / "qa")]


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The networks in the tests are tiny: one intra-op thread is faster, and far faster on a
    shared CPU, where every OpenMP region can wait milliseconds for its second thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
