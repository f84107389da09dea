"""Architecture weights: the Dirichlet pathwise gradient, the baselines, masks, the anchor."""
import pytest
import torch
import torch.nn.functional as F

from common.nas.mixing import METHODS, ArchDistribution, annealed_tau, concentration


def test_pathwise_gradient_matches_the_dirichlet_mean_derivative():
    """Monte-Carlo d E[theta_i] / d alpha_j through our sampler vs the analytic derivative.

    E[theta_i] = beta_i / S, S = sum(beta), beta = ELU(alpha) + 1, so
    d E[theta_i] / d alpha_j = (delta_ij S - beta_i) / S^2 * ELU'(alpha_j).
    With 200,000 draws the Monte-Carlo standard error is below 1e-3; tolerance 4e-3.
    """
    torch.manual_seed(0)
    base = torch.tensor([0.8, -0.5, 0.1, 1.5, -1.2], dtype=torch.float64)
    draws, i = 200_000, 3
    arch = ArchDistribution(draws, len(base), "dirichlet").double()
    with torch.no_grad():
        arch.alpha.copy_(base.expand(draws, -1))
    arch.sample().mean(0)[i].backward()
    mc = arch.alpha.grad.sum(0)  # every row shares `base`: the sum is d/d base

    beta = concentration(base)
    total = beta.sum()
    elu_grad = torch.where(base > 0, torch.ones_like(base), torch.exp(base))
    delta = torch.zeros_like(base)
    delta[i] = 1
    analytic = (delta * total - beta[i]) / total**2 * elu_grad
    assert torch.allclose(mc, analytic, atol=4e-3), (mc, analytic)
    assert mc[i] > 0 and (mc[torch.arange(5) != i] < 0).all()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_gives_weights_on_the_simplex(method):
    torch.manual_seed(1)
    arch = ArchDistribution(6, 5, method, edge_nodes=[1, 2, 2, 3, 3, 3])
    arch.tau = 2.0
    weights = arch.sample()
    assert weights.shape == (6, 5)
    assert torch.allclose(weights.sum(-1), torch.ones(6), atol=1e-5)
    assert (weights >= 0).all()
    if method == "gdas":
        assert ((weights == 0) | (weights == 1)).all()
        assert arch.hard_choices(weights) == weights.argmax(-1).tolist()
    else:
        assert arch.hard_choices(weights) is None
    if method == "darts":
        assert torch.allclose(weights, F.softmax(arch.alpha, -1))


def test_pruned_ops_have_weight_exactly_zero_in_every_sample():
    torch.manual_seed(2)
    for method in METHODS:
        arch = ArchDistribution(6, 5, method, edge_nodes=[1, 2, 2, 3, 3, 3])
        with torch.no_grad():
            arch.alpha.copy_(torch.arange(5.0).expand(6, -1) * 0.1)
            arch.alpha[0, 0] = 5.0  # edge 0 keeps op 0 although it is first
        arch.prune(3)
        assert arch.kept[0] == [0, 3, 4] and arch.kept[1] == [2, 3, 4]
        for _ in range(50):
            weights = arch.sample()
            assert (weights[0, [1, 2]] == 0).all() and (weights[1, [0, 1]] == 0).all()
            assert torch.allclose(weights.sum(-1), torch.ones(6), atol=1e-5)
        mean = arch.mean()
        assert (mean[1, :2] == 0).all()
        assert arch.for_derivation("mean").argmax(-1)[0] == 0
        assert arch.for_derivation("softmax").argmax(-1)[0] == 0
        # the authors' prune(): the alpha of every pruned op is 0
        assert (arch.alpha[0, [1, 2]] == 0).all() and (arch.alpha[1, [0, 1]] == 0).all()


def test_prune_twice_only_narrows_the_kept_ops():
    arch = ArchDistribution(2, 7, "dirichlet")
    with torch.no_grad():
        arch.alpha.copy_(torch.tensor([[7, 6, 5, 4, 3, 2, 1.0], [1, 2, 3, 4, 5, 6, 7.0]]))
    arch.prune(4)
    with torch.no_grad():  # a pruned op growing large must not come back
        arch.alpha[0, 6] = 100.0
    arch.prune(2)
    assert arch.kept == [[0, 1], [5, 6]]


def test_anchor_kl_is_zero_at_the_anchor_and_positive_elsewhere():
    arch = ArchDistribution(6, 5, "dirichlet")
    with torch.no_grad():
        arch.alpha.zero_()  # beta = 1: the anchor itself
    assert arch.anchor_kl().abs().item() < 1e-6
    with torch.no_grad():
        arch.alpha.normal_()
    kl = arch.anchor_kl()
    assert kl.item() > 0
    kl.backward()
    assert arch.alpha.grad.abs().sum() > 0


def test_anchor_kl_after_pruning_is_the_authors_whole_vector():
    # their KL: Dir(ELU(alpha) + 1) over all ops (pruned alpha zeroed) against Dir(1) over all ops
    arch = ArchDistribution(3, 5, "dirichlet")
    with torch.no_grad():
        arch.alpha.normal_()
    arch.prune(3)
    beta = torch.nn.functional.elu(arch.alpha.detach()) + 1
    expected = torch.distributions.kl_divergence(
        torch.distributions.Dirichlet(beta), torch.distributions.Dirichlet(torch.ones(3, 5))).sum()
    assert torch.allclose(arch.anchor_kl(), expected)
    kept_only = torch.distributions.kl_divergence(  # the kept ops alone give another number
        torch.distributions.Dirichlet(beta.gather(1, arch.kept_index)), torch.distributions.Dirichlet(torch.ones(3, 3))).sum()
    assert not torch.allclose(arch.anchor_kl(), kept_only)


def test_tau_follows_the_authors_linear_steps():
    # tau(e) = tau_max - (tau_max - tau_min) * e / E: the last epoch runs at 1.09, not 1
    assert annealed_tau(0, 100) == 10.0
    assert annealed_tau(1, 100) == pytest.approx(9.91)
    assert annealed_tau(50, 100) == pytest.approx(5.5)
    assert annealed_tau(99, 100) == pytest.approx(1.09)
    assert annealed_tau(3, 4, tau_max=5.0, tau_min=1.0) == pytest.approx(2.0)
