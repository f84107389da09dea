"""The reorganised code computes what the code before it computed: four small fixed-seed runs
(tests/golden_runs.py) against the outputs recorded from it, bit for bit on the machine class
they were recorded on."""
import math

import pytest

from golden_runs import GOLDEN, RUNS, machine, run, write_cifar10

RECORDED = __import__("json").loads(GOLDEN.read_text())


def same(a, b, exact):
    """Equal values; floats to the last bit when `exact`, else to 1e-5 (another CPU's kernels)."""
    if isinstance(a, float) and isinstance(b, float) and not exact:
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, exact) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], exact) for k in a)
    return a == b


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("golden_data"))


@pytest.mark.parametrize("name", sorted(RUNS))
def test_outputs_equal_the_recorded_ones(name, data, tmp_path):
    got, want = run(name, data, tmp_path / name), RECORDED["runs"][name]
    exact = RECORDED["machine"] == machine()
    assert same(got["epochs"], want["epochs"], exact)
    assert same(got["alpha"], want["alpha"], exact)
    assert set(want["keys"]) <= set(got["keys"])  # new keys may come, none may go
    assert set(want["epoch_keys"]) <= set(got["epoch_keys"])
