"""The architecture step of the bilevel search (DARTS section 2.3, DrNAS section 2).

Works for any model that exposes `weight_parameters()`, `arch_parameters()`, `loss(x, y)`
and, for the KL anchor, `anchor_kl()` (common/nas/network.py's contract). Each space's
architect.py (201-space/, DARTS-space/) says which of its tensors the step optimises and with
which defaults, and builds this step from its script's flags.

First order: Adam on the gradient of the validation loss with respect to the
architecture parameters only (no weight gradients are computed: the authors' code
computed them and threw them away).

Second order (`--unrolled`, DARTS eq. 6-8): the gradient at the weights after one
virtual SGD step w' = w - lr * (momentum * buf + dL_train/dw + wd * w),
    dL_val(w', a)/da - lr * d2L_train(w, a)/da dw . dL_val(w', a)/dw',
the Hessian-vector product by central finite differences with r = 0.01 / ||v||, both passes
drawing the same mixing weights.
Data parallel (torchrun): given a distributed `dist`, the architecture gradients are
averaged over the ranks before every Adam step, so every rank keeps the same alpha. With
`--unrolled` each rank computes the second-order gradient on its own shard (its virtual
step uses its own weight gradients) and the ranks' results are averaged.

`amp`: the losses are computed under bfloat16 autocast (common.device.autocast).

Instead of building a copy of the model (the authors' `new()`, whose DARTS-space version
dropped k, the regulariser and the masks), the virtual step is applied in place to the
same model and undone afterwards, BatchNorm running statistics included, so the copy
can never disagree with the model it stands for.
"""
import torch
from torch import optim

from common import rng
from common.distributed import ONE_PROCESS, average_gradients
from common.device import autocast

REG_TYPES = ("l2", "kl")


def named_arch_parameters(model, cell_types):
    """The architecture tensors of `cell_types`, in that order: every parameter of each cell
    type's distribution (alpha; PC-DARTS's edge_beta). The model must have exactly these types."""
    if tuple(model.arch) != tuple(cell_types):
        raise ValueError(f"the network's cell types are {tuple(model.arch)}, the space's architect expects "
                         f"{tuple(cell_types)}")
    return [param for cell_type in cell_types for param in model.arch[cell_type].parameters()]


def step_settings(args, dist=ONE_PROCESS):
    """The Architect's settings from a search script's flags (common/nas/search_flags.py)."""
    return dict(lr=args.arch_learning_rate, reg_type=args.reg_type, reg_scale=args.reg_scale, unrolled=args.unrolled,
                dist=dist, amp=args.amp, grad_clip=args.arch_grad_clip or None, capturable=args.cuda_graph)


def _grads(loss, params):
    """d loss / d params; parameters the loss does not reach (pruned ops) get zeros."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


class Architect:
    def __init__(self, model, *, lr, reg_type="l2", reg_scale=1e-3, unrolled=False, dist=ONE_PROCESS, amp=False,
                 grad_clip=None, capturable=False, params=None):
        """`reg_type` l2: the anchor is Adam weight decay `reg_scale` on alpha (pulls beta to 1;
        the ImageNet search's "arch weight decay 1e-3"); kl: `reg_scale * KL(Dir(beta) || Dir(1))`
        is added to the validation loss (paper eq. 2). `grad_clip`: the norm the architecture
        gradient is clipped to before each Adam step (the authors' ImageNet search), or None.
        `capturable`: Adam keeps its step count on the device, so a CUDA graph can hold the
        step (common/nas/cuda_graph.py); the same arithmetic. `params`: the tensors optimised (a
        space's choice, its architect.py), by default `model.arch_parameters()`."""
        if reg_type not in REG_TYPES:
            raise ValueError(f"unknown reg_type {reg_type!r}; known: {', '.join(REG_TYPES)}")
        self.model = model
        self.params = list(model.arch_parameters() if params is None else params)
        self.reg_type = reg_type
        self.reg_scale = reg_scale
        self.unrolled = unrolled
        self.dist, self.amp, self.grad_clip = dist, amp, grad_clip
        weight_decay = reg_scale if reg_type == "l2" else 0.0
        self.capturable = capturable
        self.optimizer = optim.Adam(self.params, lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay,
                                    capturable=capturable)

    def loss(self, x, y):
        """The model's loss, under autocast when `amp`."""
        with autocast(x.device, self.amp):
            return self.model.loss(x, y)

    def objective(self, x, y):
        """Validation loss, plus the KL anchor when `reg_type` is kl."""
        loss = self.loss(x, y)
        if self.reg_type == "kl":
            loss = loss + self.reg_scale * self.model.anchor_kl()
        return loss

    def step(self, x_train, y_train, x_valid, y_valid, *, lr=None, weight_optimizer=None):
        """One Adam step on the architecture parameters; returns the validation loss."""
        alphas = self.params
        if self.unrolled:
            loss, grads = self.unrolled_grads(x_train, y_train, x_valid, y_valid, lr, weight_optimizer)
        else:
            loss = self.objective(x_valid, y_valid)
            grads = _grads(loss, alphas)
        average_gradients(grads, self.dist)
        for alpha, grad in zip(alphas, grads):
            alpha.grad = grad
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(alphas, self.grad_clip)
        self.optimizer.step()
        return loss.detach()

    # --- second order -----------------------------------------------------------------
    def unrolled_grads(self, x_train, y_train, x_valid, y_valid, lr, weight_optimizer):
        model = self.model
        weights, alphas = model.weight_parameters(), self.params
        group = weight_optimizer.param_groups[0]
        momentum, weight_decay = group.get("momentum", 0.0), group.get("weight_decay", 0.0)

        train_grads = _grads(self.loss(x_train, y_train), weights)
        saved_weights = [w.detach().clone() for w in weights]
        saved_buffers = [b.detach().clone() for b in model.buffers()]
        with torch.no_grad():
            for w, g in zip(weights, train_grads):
                step = g + weight_decay * w
                buf = weight_optimizer.state.get(w, {}).get("momentum_buffer")
                if buf is not None:
                    step = step + momentum * buf
                w.sub_(lr * step)
        loss = self.objective(x_valid, y_valid)
        grads = _grads(loss, alphas + weights)
        alpha_grads, weight_grads = grads[: len(alphas)], grads[len(alphas):]
        self._restore(weights, saved_weights, model.buffers(), saved_buffers)

        hessian_vector = self.finite_difference_product(weight_grads, x_train, y_train, saved_weights)
        return loss, [g - lr * h for g, h in zip(alpha_grads, hessian_vector)]

    def finite_difference_product(self, vector, x, y, saved_weights=None, r=1e-2):
        """d2 L_train / da dw . vector by central differences (DARTS eq. 8).

        Both passes (+R and -R) draw the same mixing weights (the random streams are replayed):
        with independent draws the sampling noise, divided by 2R, would swamp the product."""
        model = self.model
        weights, alphas = model.weight_parameters(), self.params
        if saved_weights is None:
            saved_weights = [w.detach().clone() for w in weights]
        radius = r / torch.cat([v.flatten() for v in vector]).norm()  # a device scalar: no sync
        draws = rng.capture(alphas[0].device)
        sides = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for w, w0, v in zip(weights, saved_weights, vector):
                    w.copy_(w0 + sign * radius * v)
            rng.replay(draws)
            sides.append(_grads(self.loss(x, y), alphas))
        with torch.no_grad():
            for w, w0 in zip(weights, saved_weights):
                w.copy_(w0)
        return [(plus - minus) / (2 * radius) for plus, minus in zip(*sides)]

    @staticmethod
    @torch.no_grad()
    def _restore(weights, saved_weights, buffers, saved_buffers):
        for w, w0 in zip(weights, saved_weights):
            w.copy_(w0)
        for b, b0 in zip(buffers, saved_buffers):
            b.copy_(b0)

    def state_dict(self):
        return self.optimizer.state_dict()

    def load_state_dict(self, state):
        """Adam's state, kept as this run builds it (a checkpoint of a `--cuda_graph` run resumes
        without it, and the other way round)."""
        self.optimizer.load_state_dict(state)
        for group in self.optimizer.param_groups:
            group["capturable"] = self.capturable
            for param in group["params"]:
                param_state = self.optimizer.state.get(param, {})
                if "step" in param_state:
                    step = param_state["step"]
                    param_state["step"] = step.to(param.device) if self.capturable else step.cpu()
