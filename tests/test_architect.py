"""The architecture step: first order, and the second-order (unrolled) approximation."""
import torch
import torch.nn.functional as F
from torch import nn

from common.nas.architect import Architect


class TinySearchModel(nn.Module):
    """A deterministic model with the architect's interface: two linear 'ops' mixed by softmax(alpha)."""

    def __init__(self):
        super().__init__()
        self.ops = nn.ModuleList([nn.Linear(4, 3), nn.Linear(4, 3)])
        self.alpha = nn.Parameter(torch.tensor([0.3, -0.2]))

    def forward(self, x):
        w = F.softmax(self.alpha, 0)
        return sum(wi * torch.tanh(op(x)) for wi, op in zip(w, self.ops))

    def weight_parameters(self):
        return list(self.ops.parameters())

    def arch_parameters(self):
        return [self.alpha]

    def loss(self, x, y):
        return F.cross_entropy(self(x), y)


def batches():
    g = torch.Generator().manual_seed(0)
    x_train, x_valid = torch.randn(16, 4, generator=g), torch.randn(16, 4, generator=g)
    y_train, y_valid = torch.randint(0, 3, (16,), generator=g), torch.randint(0, 3, (16,), generator=g)
    return x_train, y_train, x_valid, y_valid


def test_finite_difference_hessian_vector_product_matches_double_backward():
    torch.manual_seed(0)
    model = TinySearchModel().double()
    x, y, *_ = batches()
    x = x.double()
    architect = Architect(model, lr=1e-3, reg_type="l2")
    vector = [torch.randn_like(w) for w in model.weight_parameters()]
    approx = architect.finite_difference_product(vector, x, y)

    loss = model.loss(x, y)
    grad_w = torch.autograd.grad(loss, model.weight_parameters(), create_graph=True)
    dot = sum((g * v).sum() for g, v in zip(grad_w, vector))
    exact = torch.autograd.grad(dot, model.arch_parameters())
    # central differences are O(r^2): relative error well under 1e-3 here
    for a, e in zip(approx, exact):
        assert torch.allclose(a, e, rtol=1e-3, atol=1e-6), (a, e)


def exact_unrolled_gradient(model, lr, momentum_buffers, weight_decay, batch):
    """d L_val(w - lr * (m * buf + dL_train/dw + wd * w), alpha) / d alpha, differentiating
    through the virtual step exactly (create_graph), minus nothing: the true hypergradient."""
    x_t, y_t, x_v, y_v = batch
    weights, alpha = model.weight_parameters(), model.arch_parameters()
    grad_w = torch.autograd.grad(model.loss(x_t, y_t), weights, create_graph=True)
    virtual = [w - lr * (0.9 * b + g + weight_decay * w) for w, g, b in zip(weights, grad_w, momentum_buffers)]
    params = dict(zip([n for n, _ in model.ops.named_parameters()], virtual))
    params["alpha"] = model.alpha

    def loss_with(params):
        w = F.softmax(params["alpha"], 0)
        out = sum(w[i] * torch.tanh(F.linear(x_v, params[f"{i}.weight"], params[f"{i}.bias"])) for i in range(2))
        return F.cross_entropy(out, y_v)

    return torch.autograd.grad(loss_with(params), alpha)[0]


def test_unrolled_step_follows_the_exact_second_order_gradient():
    torch.manual_seed(0)
    model = TinySearchModel().double()
    batch = [t.double() if t.is_floating_point() else t for t in batches()]
    weight_optimizer = torch.optim.SGD(model.weight_parameters(), lr=0.5, momentum=0.9, weight_decay=3e-4)
    model.loss(*batch[:2]).backward()
    weight_optimizer.step()  # creates momentum buffers
    weight_optimizer.zero_grad()
    buffers = [weight_optimizer.state[w]["momentum_buffer"].clone() for w in model.weight_parameters()]
    lr = 0.5
    exact = exact_unrolled_gradient(model, lr, buffers, 3e-4, batch)

    architect = Architect(model, lr=1e-2, reg_type="l2", reg_scale=0.0, unrolled=True)
    weights_before = [w.detach().clone() for w in model.weight_parameters()]
    _, approx = architect.unrolled_grads(*batch, lr, weight_optimizer)
    assert torch.allclose(approx[0], exact, rtol=1e-3, atol=1e-7), (approx[0], exact)
    # the virtual step is undone exactly
    assert all(torch.equal(w, w0) for w, w0 in zip(model.weight_parameters(), weights_before))

    alpha_before = model.alpha.detach().clone()
    architect.step(*batch, lr=lr, weight_optimizer=weight_optimizer)
    moved = model.alpha.detach() - alpha_before
    # Adam's first step moves each coordinate by -lr * sign(gradient)
    assert torch.equal(torch.sign(moved), -torch.sign(exact))
    # and the first-order gradient is a different direction here (the test could fail)
    first_order = torch.autograd.grad(model.loss(*batch[2:]), model.alpha)[0]
    assert not torch.allclose(first_order, exact, rtol=1e-2)


def test_first_order_step_computes_no_weight_gradients_and_uses_adam_weight_decay():
    model = TinySearchModel()
    architect = Architect(model, lr=1e-2, reg_type="l2", reg_scale=1e-3)
    assert architect.optimizer.param_groups[0]["weight_decay"] == 1e-3
    assert architect.optimizer.param_groups[0]["betas"] == (0.5, 0.999)
    before = model.alpha.detach().clone()
    architect.step(*batches())
    assert not torch.equal(before, model.alpha.detach())
    assert all(w.grad is None for w in model.weight_parameters())
    assert Architect(model, lr=1e-2, reg_type="kl").optimizer.param_groups[0]["weight_decay"] == 0.0
