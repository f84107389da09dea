"""Sharpness of the architecture landscape: the largest eigenvalue of the Hessian of the
validation loss with respect to the architecture parameters (DrNAS section 2.4, figures
4-5, after Zela et al. 2020, "Understanding and robustifying differentiable architecture
search", where a growing largest eigenvalue signals that DARTS is heading to a degenerate
architecture).

The eigenvalues come from Lanczos iterations (`extreme_eigenvalues`) on EXACT
Hessian-vector products (double backward: d/da (dL/da . v)) over a FIXED set of validation
batches. Lanczos gives both ends of the spectrum at once: the largest ALGEBRAIC eigenvalue,
what the figures plot, and beside it the one of largest magnitude, which a negative
eigenvalue can own (a power iteration would return that one).

Stochastic mixing weights. A DrNAS (or SNAS/GDAS) forward pass draws fresh mixing weights,
and the Hessian of a stochastic loss is not defined. With `weights="sample"` the global RNG
is forked and re-seeded to the same value before every pass, so that every product
differentiates the same function (same draws), and the caller's stream is left as it was.

The Dirichlet caveat. PyTorch's `Dirichlet.rsample` has a `@once_differentiable` backward:
in a double backward the curvature that flows through the sample is not an error, it is
silently DROPPED (the autograd engine never reaches the node that would raise), leaving only
the ELU term of `beta = ELU(alpha) + 1`. `hessian_vector_product` refuses such graphs. For
DrNAS use `weights="mean"`: the Hessian at the expected mixing weights (the Dirichlet mean;
for DARTS the softmax, exactly the DARTS loss), deterministic and twice differentiable.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

WEIGHT_MODES = ("sample", "mean")

# The node PyTorch puts behind a `@once_differentiable` backward: differentiating through
# it should raise, but it hangs off detached copies, so the engine prunes it and the
# second-order terms through that function vanish without a word.
_ONCE_DIFFERENTIABLE_NODE = "torch::autograd::Error"


def _once_differentiable_nodes(tensors):
    """Names of the `@once_differentiable` nodes in the autograd graph of `tensors`."""
    found, seen = [], set()
    stack = [t.grad_fn for t in tensors if t is not None and t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if node.name() == _ONCE_DIFFERENTIABLE_NODE:
            found.append(node.name())
        stack.extend(fn for fn, _ in node.next_functions)
    return found


def _hvp_from_loss(loss, params, vector, check=True):
    """Exact H v for a loss already computed from `params` (double backward)."""
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    if check and _once_differentiable_nodes(grads):
        raise RuntimeError(
            "the loss is not twice differentiable with respect to the parameters: its graph "
            "holds a @once_differentiable backward (e.g. torch.distributions.Dirichlet.rsample), "
            "whose second-order terms autograd would silently drop. For a DrNAS model use "
            "arch_hessian_eigenvalues(..., weights='mean')."
        )
    dot = sum((g * v).sum() for g, v in zip(grads, vector) if g is not None and g.requires_grad)
    if not torch.is_tensor(dot):  # the gradient does not depend on params: H = 0
        return [torch.zeros_like(p) for p in params]
    hv = torch.autograd.grad(dot, params, allow_unused=True)
    return [torch.zeros_like(p) if h is None else h.detach() for p, h in zip(params, hv)]


def hessian_vector_product(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor],
                           vector: Sequence[torch.Tensor], *, check: bool = True) -> list[torch.Tensor]:
    """Exact Hessian-vector product `d/dp (dL/dp . v)` of the scalar `loss_fn()` (double backward).

    Parameters the loss does not reach get zeros. With `check`, raises RuntimeError when
    the graph contains a `@once_differentiable` backward (whose curvature autograd would
    silently drop, see the module docstring). Does not touch `p.grad`.
    """
    params = list(params)
    return _hvp_from_loss(loss_fn(), params, list(vector), check)


@dataclass(frozen=True)
class Eigenvalues:
    largest: float  # the largest algebraic eigenvalue (the figures' "dominant eigenvalue")
    largest_magnitude: float  # signed: the eigenvalue of largest |value|
    products: int  # Hessian-vector products spent


def _lanczos(matvec, start, tol, max_steps):
    """Extreme Ritz values of a symmetric map: Lanczos with full reorthogonalisation, stopped
    when the residual bound |beta_m s_m| of both end values falls below tol * max |Ritz|."""
    basis = [start / np.linalg.norm(start)]
    diagonal, off_diagonal = [], []
    while True:
        w = matvec(basis[-1])
        diagonal.append(float(basis[-1] @ w))
        q = np.array(basis)
        for _ in range(2):  # twice is enough (Kahan): the basis stays orthogonal to rounding
            w = w - q.T @ (q @ w)
        beta = float(np.linalg.norm(w))
        ritz, vectors = eigh_tridiagonal(np.array(diagonal), np.array(off_diagonal))
        scale = max(abs(ritz[0]), abs(ritz[-1]), 1e-300)
        residual = beta * np.abs(vectors[-1, [0, -1]])
        if beta <= 1e-12 * scale or residual.max() <= tol * scale or len(diagonal) >= max_steps:
            return ritz[0], ritz[-1], len(diagonal)
        off_diagonal.append(beta)
        basis.append(w / beta)


def extreme_eigenvalues(hvp: Callable, params: Sequence[torch.Tensor], *, tol: float = 1e-3,
                        max_products: int = 30, seed: int = 0) -> Eigenvalues:
    """The largest algebraic and the largest-magnitude eigenvalue of the symmetric map `hvp`
    (a list of tensors shaped like `params` -> the same), by Lanczos from a start vector drawn
    from a private generator seeded with `seed` (the global RNG is not used). Exact after at
    most n products for n parameters; at most `max_products`."""
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    reference = params[0]

    def matvec(flat):
        chunks = torch.from_numpy(flat).split(sizes)
        vector = [c.reshape(s).to(reference.device, reference.dtype) for c, s in zip(chunks, shapes)]
        return torch.cat([h.reshape(-1) for h in hvp(vector)]).double().cpu().numpy()

    start = torch.randn(sum(sizes), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    smallest, largest, products = _lanczos(matvec, start.numpy(), tol, min(max_products, sum(sizes)))
    magnitude = smallest if abs(smallest) > abs(largest) else largest
    return Eigenvalues(float(largest), float(magnitude), products)


def hessian_eigenvalues(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], **kwargs):
    """`extreme_eigenvalues` of the Hessian of the scalar `loss_fn()` w.r.t. `params`; `loss_fn`
    is called once per product and must be deterministic."""
    params = list(params)
    return extreme_eigenvalues(lambda v: hessian_vector_product(loss_fn, params, v), params, **kwargs)


# --- the model-level diagnostic -------------------------------------------------------------
def _rng_devices(params):
    """(device_type, device indices) of the accelerator RNGs the computation may draw from."""
    accelerators = {p.device for p in params if p.device.type != "cpu"}
    types = {d.type for d in accelerators}
    if len(types) > 1:
        raise ValueError(f"parameters on several accelerator types: {sorted(types)}")
    if not types:
        return None, []
    device_type = types.pop()
    return device_type, sorted({d.index if d.index is not None else 0 for d in accelerators})


def _reseed(seed, device_type, devices):
    """Seed the CPU generator and the forked accelerator generators only (not lazily all GPUs)."""
    torch.default_generator.manual_seed(seed)
    if device_type == "cuda":
        for index in devices:
            torch.cuda.default_generators[index].manual_seed(seed)
    elif device_type is not None:
        torch.get_device_module(device_type).manual_seed(seed)


@contextlib.contextmanager
def _eval_mode(model):
    """model.eval() within; every module's own `training` flag restored after."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def _mixing(model, weights):
    if weights == "sample":
        return contextlib.nullcontext()
    distributions = getattr(model, "arch_distributions", None)
    if distributions is None:
        raise ValueError("weights='mean' needs a model with arch_distributions()")
    stack = contextlib.ExitStack()
    for arch in distributions().values():
        stack.enter_context(arch.using_mean())
    return stack


def arch_hessian_eigenvalues(model, batches: Iterable, seed: int = 0, *, tol: float = 1e-3,
                             max_products: int = 30, weights: str = "sample") -> Eigenvalues:
    """Extreme eigenvalues of the Hessian of the validation loss w.r.t.
    `model.arch_parameters()` (DrNAS figures 4-5; Zela et al. 2020).

    The loss is the mean of `model.loss(x, y)` over the fixed `batches` (a list of (x, y)).
    The model is in eval mode meanwhile (BatchNorm uses and keeps its running statistics);
    each module's training flag is restored afterwards. The products are accumulated batch
    by batch (H of a mean is the mean of the H's), one double-backward graph alive at a time.

    `weights="sample"`: the model's own draw, made the same for every product by re-seeding
    a forked global RNG (CPU and the parameters' accelerator) to `seed` before each pass; the
    global RNG state after the call equals the state before it. Works for DARTS and
    SNAS/GDAS; raises RuntimeError for DrNAS (see the module doc). `weights="mean"`: the
    expected mixing weights (`ArchWeights.using_mean`). `seed` also seeds the start vector.
    """
    if weights not in WEIGHT_MODES:
        raise ValueError(f"unknown weights {weights!r}; known: {', '.join(WEIGHT_MODES)}")
    batches = list(batches)
    if not batches:
        raise ValueError("no validation batches")
    params = list(model.arch_parameters())
    device_type, devices = _rng_devices(params)

    def hvp(vector):
        _reseed(seed, device_type, devices)  # every product sees the same draws
        total = None
        for x, y in batches:
            part = _hvp_from_loss(model.loss(x, y), params, vector)
            total = part if total is None else [t + p for t, p in zip(total, part)]
        return [t / len(batches) for t in total]

    with torch.random.fork_rng(devices=devices, device_type=device_type), _eval_mode(model), \
            _mixing(model, weights):
        return extreme_eigenvalues(hvp, params, tol=tol, max_products=max_products, seed=seed)
