"""The speed-ups change nothing numerically.

Three search steps (architecture + weights) from the same seed and state on the CPU with
every fp32 optimisation on — channels_last, and the mixed op's fast paths: ReLU shared per
node, the mixing weight folded into BatchNorm, the average pool as a depthwise convolution,
sums in place, `none` skipped — and with all of them off (contiguous memory,
`reference_computation`: every op computed literally, `none` included).

- The fast paths alone (same memory format) agree with the literal sum to 1e-5 in alpha
  (measured: at most 2.5e-6) and 1e-4 in the weights (measured: at most 3.1e-5, GDAS).
- All optimisations together agree to 1e-4 in alpha (a third of one Adam step) and 1e-4
  relative in the losses. The extra difference is PyTorch's: its CPU BatchNorm kernel for
  channels_last accumulates the batch statistics less precisely than the contiguous one
  (max error 2.4e-4 against float64 on a (64, 8, 32, 32) batch of mean 3 and std 0.1, where
  the contiguous kernel errs by 2e-6), and Adam steps every alpha by about lr = 3e-4 whatever
  its gradient's size, so where a gradient is near zero such rounding moves a step by a
  fraction of lr. Measured: 1.4e-5 to 5.3e-5 over the configurations below.
- In float64 everything agrees to 1e-9, for DARTS' softmax too (whose near-uniform start
  makes it the most sensitive to rounding in fp32): the rewrites are exact algebra."""
import contextlib
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common.nas.architect import Architect
from common.nas.fused import AvgPool, reference_computation, scaled_batch_norm
from common.nas.progressive import load_masks
from common.nas.search import search_step
from script_checks import load_script

FORMATS = {True: torch.channels_last, False: torch.contiguous_format}
DRNAS_CONFIGS = [("201", "dirichlet", 1, None), ("201", "dirichlet", 2, 3), ("201", "gdas", 1, None),
                 ("darts", "dirichlet", 2, None), ("darts", "dirichlet", 1, 4)]


def build(space, method, k):
    if space == "201":
        from space201.model_search import Network

        return Network(8, 1, 10, method, k)
    from darts_space.model_search import Network

    return Network(8, 10, 3, method, k)  # a normal and two reduction cells


def three_steps(space, fast, method="dirichlet", k=1, keep=None, dtype=torch.float32, memory_format=None, size=32):
    torch.manual_seed(0)
    model = build(space, method, k).to(dtype)
    if keep:  # a pruned network, as in a progressive second stage
        load_masks(model, {name: [list(range(arch.num_ops - keep, arch.num_ops))] * arch.num_edges
                           for name, arch in model.arch_distributions().items()})
    fmt = memory_format or FORMATS[fast]
    model = model.to(memory_format=fmt)
    architect = Architect(model, lr=3e-4, reg_scale=1e-3)
    optimizer = torch.optim.SGD(model.weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(16, 3, size, size, generator=g, dtype=dtype).contiguous(memory_format=fmt),
                torch.randint(0, 10, (16,), generator=g)) for _ in range(6)]
    losses = []
    with contextlib.nullcontext() if fast else reference_computation():
        for step in range(3):
            loss, _, _ = search_step(model, architect, optimizer, batches[2 * step], batches[2 * step + 1],
                                  update_arch=True, grad_clip=5.0)
            losses.append(loss.item())
    return {"alpha": [a.detach().clone() for a in model.arch_parameters()],
            "weights": [w.detach().clone() for w in model.weight_parameters()],
            "buffers": [b.clone() for b in model.buffers() if b.is_floating_point()], "losses": losses}


def moved(space, method, k, alpha):
    """How far alpha moved from its initial value (the steps are not a no-op)."""
    torch.manual_seed(0)
    return (alpha - build(space, method, k).arch_parameters()[0].detach()).abs().max()


@pytest.mark.parametrize("space, method, k, keep", DRNAS_CONFIGS)
def test_fp32_optimisations_change_nothing(space, method, k, keep):
    fast, plain = three_steps(space, True, method, k, keep), three_steps(space, False, method, k, keep)
    assert fast["losses"] == pytest.approx(plain["losses"], rel=1e-4)
    for a, b in zip(fast["alpha"], plain["alpha"]):
        assert torch.allclose(a, b, rtol=0, atol=1e-4), (a - b).abs().max()
    assert moved(space, method, k, fast["alpha"][0]) > 5e-4


@pytest.mark.parametrize("space, method, k, keep", DRNAS_CONFIGS)
def test_fast_paths_change_nothing_in_the_same_memory_format(space, method, k, keep):
    fast = three_steps(space, True, method, k, keep)
    plain = three_steps(space, False, method, k, keep, memory_format=torch.channels_last)
    assert fast["losses"] == pytest.approx(plain["losses"], rel=1e-5)
    for a, b in zip(fast["alpha"], plain["alpha"]):
        assert torch.allclose(a, b, rtol=0, atol=1e-5), (a - b).abs().max()
    for a, b in zip(fast["weights"] + fast["buffers"], plain["weights"] + plain["buffers"]):
        assert torch.allclose(a, b, rtol=0, atol=1e-4), (a - b).abs().max()


@pytest.mark.parametrize("space, method, keep", [("201", "dirichlet", None), ("201", "darts", None),
                                                 ("darts", "dirichlet", 4)])
def test_in_float64_all_optimisations_are_exact(space, method, keep):
    k = 2 if space == "darts" else 1
    size = 16 if space == "darts" else 32  # exact algebra at any size; 16 keeps float64 DARTS cheap
    fast = three_steps(space, True, method, k, keep, dtype=torch.float64, size=size)
    plain = three_steps(space, False, method, k, keep, dtype=torch.float64, size=size)
    assert fast["losses"] == pytest.approx(plain["losses"], rel=1e-12)
    for a, b in zip(fast["alpha"] + fast["weights"], plain["alpha"] + plain["weights"]):
        assert torch.allclose(a, b, rtol=0, atol=1e-9), (a - b).abs().max()


def test_the_reference_computation_is_another_computation():
    """The switch does switch: the fast run and the literal one do not round identically."""
    fast, plain = three_steps("201", True), three_steps("201", False)
    assert not all(torch.equal(a, b) for a, b in zip(fast["weights"], plain["weights"]))


@pytest.mark.parametrize("stride, size", [(1, 32), (2, 32), (2, 7), (1, 5)])
def test_avg_pool_as_depthwise_convolution(stride, size):
    x = torch.randn(4, 6, size, size + 1, requires_grad=True)
    expected = F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
    got = AvgPool(3, stride, 1)(x.contiguous(memory_format=torch.channels_last))
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-6)
    g = torch.randn_like(expected)
    (grad_expected,) = torch.autograd.grad(expected, x, g)
    (grad_got,) = torch.autograd.grad(got, x, g)
    assert torch.allclose(grad_got, grad_expected, atol=1e-6)


@pytest.mark.parametrize("affine", [False, True])
def test_scaled_batch_norm_is_scale_times_batch_norm(affine):
    torch.manual_seed(0)
    bn_a, x = nn.BatchNorm2d(5, affine=affine), torch.randn(8, 5, 6, 6)
    if affine:
        with torch.no_grad():
            bn_a.weight.uniform_(0.5, 1.5)
            bn_a.bias.uniform_(-1, 1)
    bn_b = nn.BatchNorm2d(5, affine=affine)
    bn_b.load_state_dict(bn_a.state_dict())
    scale = torch.tensor(0.3, requires_grad=True)
    for training in (True, False):
        bn_a.train(training), bn_b.train(training)
        got, expected = scaled_batch_norm(bn_a, x, scale), scale * bn_b(x)
        assert torch.allclose(got, expected, atol=1e-6)
        (grad_got,) = torch.autograd.grad(got.square().sum(), scale)
        (grad_expected,) = torch.autograd.grad(expected.square().sum(), scale)
        assert torch.allclose(grad_got, grad_expected, rtol=1e-5)
    for a, b in zip(bn_a.buffers(), bn_b.buffers()):  # running statistics and the batch count
        assert torch.equal(a, b)


def test_compare_prints_one_row_per_option_set(capsys):
    bench = load_script("benchmark_search")
    bench.main(["--space", "201", "--compare", "--num_cells", "1", "--init_channels", "4", "--batch_size", "8",
                "--steps", "1", "--warmup", "0", "--device", "cpu"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("space 201, k 1, device cpu, batch 8")
    rows = [line.split(" | ") for line in lines[3:]]
    assert [row[0].lstrip("| ") for row in rows] == [label for label, _ in bench.OPTION_SETS]
    assert all(float(row[1]) > 0 and float(row[2]) > 0 for row in rows)  # step time, images/s


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_search_step_never_waits_for_the_gpu():
    """No host-device synchronisation inside a step (DrNAS, progressive stage shape)."""
    from space201.model_search import Network

    device = torch.device("cuda")
    torch.manual_seed(0)
    model = Network(8, 1, 10, "dirichlet", 2).to(device, memory_format=torch.channels_last)
    architect = Architect(model, lr=3e-4, reg_scale=1e-3)
    optimizer = torch.optim.SGD(model.weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    batch = (torch.randn(16, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last),
             torch.randint(0, 10, (16,), device=device))
    search_step(model, architect, optimizer, batch, batch, update_arch=True, grad_clip=5.0)  # lazy set-up
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            search_step(model, architect, optimizer, batch, batch, update_arch=True, grad_clip=5.0)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(torch.cat([a.detach().flatten() for a in model.arch_parameters()])).all()


def gdas_forward_ops(fast):
    """The aten ops one GDAS forward of a pruned NAS-Bench-201 supernet dispatches."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from space201.model_search import Network

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            ops.append(str(func))
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    model = Network(4, 1, 10, "gdas", 1)
    load_masks(model, {"cell": [[0, 2, 3]] * 6})  # three ops kept: two others per edge
    ops = []
    with reference_computation() if not fast else contextlib.nullcontext(), Record():
        model(torch.randn(2, 3, 32, 32))
    return ops


@pytest.mark.parametrize("fast", [True, False])
def test_gdas_adds_the_other_ops_weights_without_an_index_tensor(fast):
    """Indexing the mixing weights with a Python list builds an index tensor on the host, a
    blocking host-to-device copy per edge on a GPU; the others' weights are the row's sum
    minus the chosen one's instead."""
    ops = gdas_forward_ops(fast)
    assert not [op for op in ops if op.startswith(("aten.index.", "aten.lift_fresh"))]
    assert ops.count("aten.sum.default") >= 6 * 3  # the others' weights, on every edge of the 3 cells


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gdas_synchronises_once_per_forward():
    import warnings

    from space201.model_search import Network

    torch.manual_seed(0)
    model = Network(8, 1, 10, "gdas", 1).cuda()
    x = torch.randn(4, 3, 32, 32, device="cuda")
    model(x)  # lazy set-up
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            model(x)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert sum("synchroniz" in str(w.message) for w in caught) == 1  # the sampled ops, read once


def test_concurrent_copies_time_their_steps_together(capsys):
    """benchmark_search.py --concurrent 2 on the CPU: a correctness check of the mode (two
    processes, timed windows that overlap, the total counted from them), not a speed figure."""
    bench = load_script("benchmark_search")
    report = bench.main(["--space", "201", "--num_cells", "1", "--init_channels", "4", "--batch_size", "8",
                         "--steps", "3", "--warmup", "1", "--device", "cpu", "--threads", "1", "--concurrent", "2"])
    copies = report["processes"]
    assert report["concurrent"] == 2 and len(copies) == 2
    assert all(c["steps"] == 3 and c["batch_size"] == 8 for c in copies)
    # both copies left the barrier before either finished its timed steps
    assert max(c["window_start"] for c in copies) < min(c["window_end"] for c in copies)
    span = max(c["window_end"] for c in copies) - min(c["window_start"] for c in copies)
    assert report["span_s"] == span and report["total_images_per_s"] == 2 * 3 * 8 / span
    assert report["sum_images_per_s"] == sum(c["images_per_s"] for c in copies)
    assert json.loads(capsys.readouterr().out)["concurrent"] == 2
