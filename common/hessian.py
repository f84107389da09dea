"""Sharpness of the architecture landscape: the dominant eigenvalue of the Hessian of the
validation loss with respect to the architecture parameters (DrNAS section 2.4, figures
4-5; the diagnostic comes from Zela et al. 2020, "Understanding and robustifying
differentiable architecture search", where a growing dominant eigenvalue signals that
DARTS is heading to a degenerate architecture).

The eigenvalue is found by power iteration on EXACT Hessian-vector products (double
backward: d/da (dL/da . v)), never by finite differences, over a FIXED set of validation
batches.

Stochastic mixing weights. A DrNAS (or SNAS/GDAS) forward pass draws fresh mixing
weights, and the Hessian of a stochastic loss is not defined. `arch_hessian_eigenvalue`
therefore forks the global RNG and re-seeds it to the same value before every pass, so
that every Hessian-vector product differentiates the same function (same samples), and
the caller's RNG stream is left exactly as it was: a search is bit-reproducible whether
the diagnostic runs or not.

The Dirichlet caveat. PyTorch's `Dirichlet.rsample` has a `@once_differentiable`
backward: in a double backward the curvature that flows through the sample is not an
error, it is silently DROPPED (the autograd engine never reaches the node that would
raise), leaving only the ELU term of `beta = ELU(alpha) + 1`. A Hessian-vector product
through a fixed Dirichlet sample is thus not available, and `hessian_vector_product`
refuses such graphs instead of returning a wrong number. For DrNAS use
`arch_hessian_eigenvalue(..., weights="mean")`: the Hessian of the loss at the expected
mixing weights (the Dirichlet mean `beta / sum(beta)`; for DARTS this is the softmax, i.e.
exactly the DARTS loss), which is deterministic and twice differentiable.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterable, Sequence

import torch

from common.arch import METHODS

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
            "arch_hessian_eigenvalue(..., weights='mean')."
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


def _dot(xs, ys):
    return sum((x * y).sum() for x, y in zip(xs, ys))


def _power_iteration(hvp, start, iters, tol):
    """Power iteration on the linear map `hvp`; returns the Rayleigh quotient as a float.

    Stops when the relative change of the estimate falls below `tol` (at least 2 products).
    """
    norm = math.sqrt(float(_dot(start, start)))
    v = [s / norm for s in start]
    eigenvalue = None
    for _ in range(iters):
        hv = hvp(v)
        estimate = float(_dot(v, hv))  # Rayleigh quotient v^T H v, ||v|| = 1
        hv_norm = math.sqrt(float(_dot(hv, hv)))
        if hv_norm == 0.0:  # v lies in the null space (e.g. H = 0)
            return estimate
        converged = eigenvalue is not None and abs(estimate - eigenvalue) <= tol * max(abs(estimate), 1e-12)
        eigenvalue = estimate
        if converged:
            break
        v = [h / hv_norm for h in hv]
    return eigenvalue


def _start_vector(params, seed, generator):
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    # Drawn on the CPU with a private generator: the same start on any device, and the
    # global RNG is not consumed.
    return [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in params]


def dominant_eigenvalue(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor],
                        iters: int = 20, tol: float = 1e-4, *, seed: int = 0,
                        generator: torch.Generator | None = None) -> float:
    """The eigenvalue of largest MAGNITUDE of the Hessian of `loss_fn()` w.r.t. `params`.

    Power iteration on exact Hessian-vector products from a random start drawn from
    `generator` (default: a private CPU generator seeded with `seed`; the global RNG is
    not used for it). Returns the signed Rayleigh quotient `v^T H v` of the final unit
    vector: when the largest-magnitude eigenvalue is negative (a saddle / concave
    direction dominates) the result is that NEGATIVE number, not the largest algebraic
    eigenvalue. Stops after `iters` products or when the relative change is below `tol`.
    Convergence is slow when the two largest magnitudes are close, and if `lam` and `-lam`
    are both dominant the iteration does not converge to either.

    `loss_fn` is called once per product; if it draws random numbers, make it
    deterministic (as `arch_hessian_eigenvalue` does), or the "Hessian" changes every step.
    """
    params = list(params)
    start = _start_vector(params, seed, generator)
    return _power_iteration(lambda v: hessian_vector_product(loss_fn, params, v), start, iters, tol)


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


class _MeanWeights:
    """Within the context, every ArchWeights of the model returns its expected mixing weights
    (with gradient) instead of a sample."""

    def __init__(self, model):
        arch_weights = getattr(model, "arch_weights", None)
        if arch_weights is None:
            raise ValueError("weights='mean' needs a model with arch_weights()")
        self.archs = list(arch_weights().values())

    def __enter__(self):
        for arch in self.archs:
            method = METHODS[arch.method]
            arch.sample = lambda arch=arch, method=method: arch._scatter(method.mean(arch.kept_alpha()))

    def __exit__(self, *exc):
        for arch in self.archs:
            arch.__dict__.pop("sample", None)


class _EvalMode:
    """model.eval() within the context; every module's own `training` flag restored after."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.flags = [(m, m.training) for m in self.model.modules()]
        self.model.eval()

    def __exit__(self, *exc):
        for module, flag in self.flags:
            module.training = flag


def arch_hessian_eigenvalue(model, batches: Iterable, iters: int = 20, seed: int = 0, *,
                            tol: float = 1e-4, weights: str = "sample") -> float:
    """Dominant (largest-magnitude, signed) eigenvalue of the Hessian of the validation loss
    w.r.t. `model.arch_parameters()` (DrNAS figures 4-5; Zela et al. 2020).

    The loss is the mean of `model.loss(x, y)` over the fixed `batches` (a list of (x, y)).
    The model is in eval mode meanwhile (BatchNorm uses and keeps its running statistics);
    each module's training flag is restored afterwards. The Hessian-vector products are
    accumulated batch by batch (H of a mean is the mean of the H's), so only one batch's
    double-backward graph is alive at a time.

    `weights="sample"`: the mixing weights are the model's own draw, made the same for
    every product by re-seeding a forked global RNG (CPU, and the parameters' accelerator)
    to `seed` before each pass; the global RNG state after the call equals the state
    before it. Works for DARTS (deterministic) and SNAS/GDAS (Gumbel); raises RuntimeError
    for DrNAS, whose Dirichlet sample is only once differentiable in PyTorch.
    `weights="mean"`: the expected mixing weights (Dirichlet mean for DrNAS, softmax for
    DARTS/SNAS/GDAS); deterministic, needs `model.arch_weights()`.
    `seed` also seeds the power iteration's start vector (private generator).
    """
    if weights not in WEIGHT_MODES:
        raise ValueError(f"unknown weights {weights!r}; known: {', '.join(WEIGHT_MODES)}")
    batches = list(batches)
    if not batches:
        raise ValueError("no validation batches")
    params = list(model.arch_parameters())
    device_type, devices = _rng_devices(params)

    def hvp(vector):
        # Same seed before every pass: every product sees the same mixing-weight draws.
        _reseed(seed, device_type, devices)
        total = None
        for x, y in batches:
            part = _hvp_from_loss(model.loss(x, y), params, vector)
            total = part if total is None else [t + p for t, p in zip(total, part)]
        return [t / len(batches) for t in total]

    mixing = _MeanWeights(model) if weights == "mean" else contextlib.nullcontext()
    with torch.random.fork_rng(devices=devices, device_type=device_type), _EvalMode(model), mixing:
        return _power_iteration(hvp, _start_vector(params, seed, None), iters, tol)
