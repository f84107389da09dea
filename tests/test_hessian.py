"""The sharpness diagnostic: exact Hessian-vector products, the largest and the largest-magnitude eigenvalue."""
import math

import pytest
import torch
from torch.func import functional_call

from common.nas.hessian import arch_hessian_eigenvalues, hessian_eigenvalues, hessian_vector_product
from space201.model_search import Network


def quadratic(eigenvalues, seed=0):
    """f(a) = 0.5 a^T A a + b^T a with A = Q diag(eigenvalues) Q^T (float64)."""
    g = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    A = q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T
    A = 0.5 * (A + A.T)
    b = torch.randn(n, generator=g, dtype=torch.float64)
    a = torch.randn(n, generator=g, dtype=torch.float64, requires_grad=True)
    return A, a, lambda: 0.5 * a @ A @ a + b @ a


# --- generic functions on a quadratic -------------------------------------------------
def test_hessian_vector_product_is_A_v():
    A, a, f = quadratic([5.0, -2.0, 1.0, 0.5])
    for seed in range(3):
        v = torch.randn(4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        (hv,) = hessian_vector_product(f, [a], [v])
        torch.testing.assert_close(hv, A @ v, rtol=1e-13, atol=1e-13)
    assert a.grad is None


def test_hessian_vector_product_over_several_tensors_and_unused_ones():
    A, _, _ = quadratic([3.0, -1.0, 2.0, 0.25], seed=1)
    a1 = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    a2 = torch.ones(2, dtype=torch.float64, requires_grad=True)
    unused = torch.ones(3, dtype=torch.float64, requires_grad=True)

    def f():
        a = torch.cat([a1, a2])
        return 0.5 * a @ A @ a

    v = [torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([0.5, 3.0], dtype=torch.float64),
         torch.ones(3, dtype=torch.float64)]
    hv = hessian_vector_product(f, [a1, a2, unused], v)
    torch.testing.assert_close(torch.cat(hv[:2]), A @ torch.cat(v[:2]), rtol=1e-13, atol=1e-13)
    assert torch.equal(hv[2], torch.zeros(3, dtype=torch.float64))


def test_largest_eigenvalue_of_a_quadratic():
    _, a, f = quadratic([5.0, -2.0, 1.0, 0.5])
    values = hessian_eigenvalues(f, [a], seed=0)
    assert isinstance(values.largest, float)
    assert values.largest == pytest.approx(5.0, rel=1e-9)  # exact after n = 4 products
    assert values.largest_magnitude == pytest.approx(5.0, rel=1e-9)
    assert values.products <= 4


def test_a_large_negative_eigenvalue_does_not_hide_the_largest_one():
    # largest magnitude -6, largest algebraic 3: the figures plot 3 (a power iteration gives -6)
    _, a, f = quadratic([-6.0, 3.0, 1.0, 0.5, 0.1, -0.2, 0.05, 0.02], seed=2)
    values = hessian_eigenvalues(f, [a], tol=1e-3)
    assert values.largest == pytest.approx(3.0, rel=1e-2)
    assert values.largest_magnitude == pytest.approx(-6.0, rel=1e-2)


def test_lanczos_stops_early_on_a_large_spectrum_and_leaves_global_rng_alone():
    # 100 dimensions, two well separated ends: far fewer products than dimensions
    g = torch.Generator().manual_seed(4)
    spectrum = (0.05 * torch.randn(100, generator=g, dtype=torch.float64)).tolist()
    spectrum[:2] = [4.0, -2.5]
    _, a, f = quadratic(spectrum, seed=4)
    calls = []

    def counted():
        calls.append(1)
        return f()

    state = torch.get_rng_state()
    values = hessian_eigenvalues(counted, [a], tol=1e-4, max_products=100, seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert values.products == len(calls) < 40
    assert values.largest == pytest.approx(4.0, rel=1e-3)
    assert values.largest_magnitude == pytest.approx(4.0, rel=1e-3)
    assert hessian_eigenvalues(f, [a], tol=1e-4, max_products=100, seed=0) == values  # same seed, same start


def test_zero_hessian_gives_zero():
    a = torch.ones(3, dtype=torch.float64, requires_grad=True)
    values = hessian_eigenvalues(lambda: (2.0 * a).sum(), [a])
    assert (values.largest, values.largest_magnitude) == (0.0, 0.0)


def test_once_differentiable_sample_is_refused_not_silently_truncated():
    # Dirichlet.rsample's backward is @once_differentiable: a double backward through it
    # runs without error but drops every term through the sample.
    alpha = torch.zeros(2, 5, dtype=torch.float64, requires_grad=True)
    c = torch.arange(5, dtype=torch.float64)

    def f():
        torch.manual_seed(0)
        beta = torch.nn.functional.elu(alpha) + 1
        return (torch.distributions.Dirichlet(beta).rsample() ** 2 * c).sum()

    with pytest.raises(RuntimeError, match="once_differentiable"):
        hessian_vector_product(f, [alpha], [torch.ones_like(alpha)])
    # what the check guards against: at alpha >= 0 (ELU'' = 0) the unchecked product is 0
    (hv,) = hessian_vector_product(f, [alpha], [torch.ones_like(alpha)], check=False)
    assert torch.equal(hv, torch.zeros_like(alpha))


# --- the model-level diagnostic -------------------------------------------------------
def tiny_network(method="dirichlet"):
    torch.manual_seed(0)
    model = Network(C=4, N=1, num_classes=10, method=method).double()
    with torch.no_grad():  # away from the symmetric initialisation
        model.arch['cell'].alpha.normal_(0.0, 0.5)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 3, 8, 8, generator=g, dtype=torch.float64),
                torch.randint(0, 10, (8,), generator=g)) for _ in range(2)]
    model.train()
    # non-trivial BN running statistics, as during a search
    with torch.no_grad():
        for x, _ in batches:
            model(x)
    return model, batches


def buffers(model):
    return {name: b.clone() for name, b in model.named_buffers()}


@pytest.mark.parametrize("method,weights", [("dirichlet", "mean"), ("snas", "sample"), ("darts", "sample")])
def test_arch_hessian_eigenvalue_is_deterministic_and_side_effect_free(method, weights):
    model, batches = tiny_network(method)
    bn_before = buffers(model)
    params_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(123)
    rng_before = torch.get_rng_state()

    first = arch_hessian_eigenvalues(model, batches, seed=0, weights=weights)

    assert torch.equal(torch.get_rng_state(), rng_before)
    assert math.isfinite(first.largest) and first.largest != 0.0
    assert model.training and all(m.training for m in model.modules())
    after = buffers(model)
    assert after.keys() == bn_before.keys()
    assert all(torch.equal(after[n], bn_before[n]) for n in after)
    assert all(torch.equal(p, params_before[n]) for n, p in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())
    assert not model.arch['cell'].expected  # back to sampling

    # Identical on a second call, whatever the global RNG state (the draws are re-seeded).
    torch.manual_seed(999)
    assert arch_hessian_eigenvalues(model, batches, seed=0, weights=weights) == first


def test_global_rng_stream_is_the_same_with_or_without_the_diagnostic():
    model, batches = tiny_network("snas")
    torch.manual_seed(7)
    expected = torch.rand(5)
    torch.manual_seed(7)
    arch_hessian_eigenvalues(model, batches, max_products=3, weights="sample")
    assert torch.equal(torch.rand(5), expected)


def test_sampled_weights_are_fixed_across_products():
    # With SNAS every forward draws Gumbel noise; without the re-seeding each product would
    # see another loss and the map would not even be symmetric. Same result on a second call.
    model, batches = tiny_network("snas")
    calls = []
    model.loss = lambda x, y: calls.append(1) or type(model).loss(model, x, y)
    value = arch_hessian_eigenvalues(model, batches, tol=1e-8, weights="sample")
    assert len(calls) == value.products * len(batches)
    torch.manual_seed(0)
    assert arch_hessian_eigenvalues(model, batches, tol=1e-8, weights="sample") == value


def test_eval_mode_restores_mixed_training_flags():
    model, batches = tiny_network("darts")
    model.eval()
    model.layers[0].train()
    flags = [m.training for m in model.modules()]
    arch_hessian_eigenvalues(model, batches, max_products=2)
    assert [m.training for m in model.modules()] == flags


def test_dirichlet_sample_is_refused_and_state_restored():
    model, batches = tiny_network("dirichlet")
    bn_before = buffers(model)
    rng_before = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="weights='mean'"):
        arch_hessian_eigenvalues(model, batches, max_products=2)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert model.training
    assert all(torch.equal(b, bn_before[n]) for n, b in model.named_buffers())
    with pytest.raises(ValueError):
        arch_hessian_eigenvalues(model, batches, weights="median")


def test_matches_the_full_hessian_of_the_model():
    # Independent reference: the full 30 x 30 Hessian by torch.autograd.functional.hessian
    # (DARTS weights: softmax, deterministic), in eval mode.
    model, batches = tiny_network("darts")
    model.eval()
    alpha = model.arch['cell'].alpha.detach().clone()

    def mean_loss(a):
        return sum(functional_call(model, {"arch.cell.alpha": a}, (x,)).log_softmax(-1).gather(
            1, y[:, None]).mean().neg() for x, y in batches) / len(batches)

    H = torch.autograd.functional.hessian(mean_loss, alpha).reshape(alpha.numel(), alpha.numel())
    eigenvalues = torch.linalg.eigvalsh(0.5 * (H + H.T))
    model.train()
    values = arch_hessian_eigenvalues(model, batches, tol=1e-10)  # 30 products: exact
    assert values.largest == pytest.approx(eigenvalues.max().item(), rel=1e-6)
    assert values.largest_magnitude == pytest.approx(eigenvalues[eigenvalues.abs().argmax()].item(), rel=1e-6)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_cuda_rng_is_forked_and_reseeded_too():
    model, batches = tiny_network("snas")
    model.cuda()
    batches = [(x.cuda(), y.cuda()) for x, y in batches]
    cpu_state, cuda_state = torch.get_rng_state(), torch.cuda.get_rng_state()
    first = arch_hessian_eigenvalues(model, batches, max_products=5, weights="sample")
    assert torch.equal(torch.get_rng_state(), cpu_state)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_state)
    torch.cuda.manual_seed(5)
    second = arch_hessian_eigenvalues(model, batches, max_products=5, weights="sample")
    # the same draws (re-seeded inside); GPU reductions may round differently run to run
    assert second.products == first.products
    assert second.largest == pytest.approx(first.largest, rel=1e-4, abs=1e-7)
    assert second.largest_magnitude == pytest.approx(first.largest_magnitude, rel=1e-4, abs=1e-7)
