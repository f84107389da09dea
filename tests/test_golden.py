"""The reorganised code computes what the code before it computed: four small fixed-seed runs
(tests/golden_runs.py), in float64, against the outputs recorded from it: bit for bit on the
machine they were recorded on, and to a tolerance derived from the rounding on any other CPU.

The tolerance. float64 rounds at u = 1.1e-16. Another CPU's kernels (other vector widths, other
blocking) add the same terms in another order, which changes a result by a few u; the steps of
a run amplify such a change. Summing in another order here (2 threads instead of 1,
`golden_runs.run(..., threads=2)`) moved the recorded values by at most 4.1e-12 relative and
2.8e-14 absolute (an amplification of about 4e4), no value by more than 2.6e-5 of the tolerance
REL_TOL and ABS_TOL give it. `test_other_rounding_stays_within_the_tolerance` checks every run
against a cheaper stand-in, every convolution's output nudged by half an ulp (at most 5.1e-6
of the tolerance). A real change of the computation lies far above it: scaling one op's output by
1 + 1e-6 moves the values by up to 0.2 relative, by 1 + 1e-9 still by up to 5e-8
(`test_a_perturbed_op_is_caught`). In float32 the same change of summation order moved them by
up to 20 relative (chaotic from the first rounding): no tolerance there tells another CPU from
a bug.
"""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from common.nas import fused
from golden_runs import GOLDEN, RUNS, machine, run, write_cifar10

RECORDED = json.loads(GOLDEN.read_text())
REL_TOL, ABS_TOL = 1e-8, 1e-11


def same(a, b, exact):
    """Equal values; floats to the last bit when `exact`, else to REL_TOL / ABS_TOL."""
    if isinstance(a, float) and isinstance(b, float) and not exact:
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, exact) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], exact) for k in a)
    return a == b


def agree(got, want, exact):
    return same(got["epochs"], want["epochs"], exact) and same(got["alpha"], want["alpha"], exact)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("golden_data"))


def test_the_recorded_runs_are_float64():
    assert RECORDED["dtype"] == "torch.float64" and set(RECORDED["runs"]) == set(RUNS)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_outputs_equal_the_recorded_ones(name, data, tmp_path):
    got, want = run(name, data, tmp_path / name), RECORDED["runs"][name]
    assert agree(got, want, exact=RECORDED["machine"] == machine())
    assert set(want["keys"]) <= set(got["keys"])  # new keys may come, none may go
    assert set(want["epoch_keys"]) <= set(got["epoch_keys"])


def rounding_nudged(conv2d):
    """F.conv2d with every output element nudged by half an ulp, up or down (a fixed stream), and
rounded: another rounding of every convolution."""
    signs = torch.Generator().manual_seed(0)

    def nudged(*args, **kwargs):
        out = conv2d(*args, **kwargs)
        with torch.no_grad():
            sign = torch.randint(0, 2, out.shape, generator=signs, dtype=out.dtype).mul_(2).sub_(1)
            nudge = out * sign * (torch.finfo(out.dtype).eps / 2)
        return out + nudge

    return nudged


@pytest.mark.parametrize("name", sorted(RUNS))
def test_other_rounding_stays_within_the_tolerance(name, data, tmp_path, monkeypatch):
    monkeypatch.setattr(F, "conv2d", rounding_nudged(F.conv2d))
    got, want = run(name, data, tmp_path / name), RECORDED["runs"][name]
    assert not agree(got, want, exact=True)  # the nudge reaches the outputs
    assert agree(got, want, exact=False)


def test_a_perturbed_op_is_caught(data, tmp_path, monkeypatch):
    """The average pool of the mixed ops, its output scaled by 1 + 1e-6: the run no longer agrees."""
    weighted_term = fused.AvgPool.weighted_term

    def perturbed(self, x, relu_x, weight):
        term, factor = weighted_term(self, x, relu_x, weight)
        return term, factor * (1 + 1e-6)

    monkeypatch.setattr(fused.AvgPool, "weighted_term", perturbed)
    got = run("201_plain", data, tmp_path / "perturbed")
    assert not agree(got, RECORDED["runs"]["201_plain"], exact=False)
