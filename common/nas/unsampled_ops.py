"""GDAS computes only the sampled op of every edge, so the weights of the other ops get no
gradient in a step. What the weight step does with them (`--unsampled_ops`):

- `step` (default, the authors'): in the PyTorch of their code `optimizer.zero_grad()` zeroed
  the gradients and kept them, so every op once sampled, in an architecture or a weight forward,
  stepped with a zero gradient ever after: weight decay and momentum at every step. Here a
  weight without a gradient steps with a zero one when the optimizer holds state for it (it
  stepped before: its momentum buffer, which checkpoints keep, so `--resume` loses nothing and
  widening carries it on) or when the step's architecture forward sampled its op. Under torchrun
  each rank samples its own architecture forward, so there only the weight forwards count (of
  any rank: DDP averages their gradients), which keeps the ranks' weights identical. With
  `--momentum 0` SGD keeps no state, and only this step's samples count.
- `freeze`: a weight without a gradient is left as it is (gradients set to None each step).

No host-device synchronisation: the sampled ops are GDAS's host-side choices (one read per
forward, common/nas/mixing.py), the rest is bookkeeping on the host.
"""
import torch

UNSAMPLED_OPS = ("step", "freeze")


def sampled_weights(model):
    """The weights of the ops the model's last forward sampled (GDAS), as a set of ids."""
    sampled = getattr(model, "sampled_ops", None) or {}
    return {id(weight) for cell_type, edge, mixed_op in model.edge_ops() if cell_type in sampled
            for weight in mixed_op.ops[sampled[cell_type][edge]].parameters()}


def step_unsampled(optimizer, weights, sampled=frozenset()):
    """Give a zero gradient to every weight without one that the optimizer has stepped before
    or whose op `sampled` (ids) names, so that its weight decay and momentum go on."""
    for weight in weights:
        if weight.grad is None and (id(weight) in sampled or optimizer.state.get(weight)):
            weight.grad = torch.zeros_like(weight)
