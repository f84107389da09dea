"""Per-epoch learning rates: each a pure function of the epoch, so a resumed run replays it.

The ImageNet training's warm-up and linear (or cosine) decay, and the searches' cosine, in two
variants (`--stage_lr`):

- `restart` (default, the authors' scripts): at every stage boundary of a progressive search
  they build a new SGD at the base `--learning_rate` and a new `CosineAnnealingLR` (T = all
  epochs) that loads the old scheduler's state. PyTorch's cosine scheduler steps recursively
  from the optimizer's current lr, lr(e) = m + (lr(e-1) - m) c(e) / c(e-1) with
  c(e) = 1 + cos(pi e / T) and m the minimum, so each stage restarts at the base lr and decays
  to m at the last epoch: for the epochs e >= s of a stage that starts at s,
  lr(e) = m + (lr0 - m) c(e) / c(s). The ImageNet search's warm-up, lr0 (e + 1) / W for the
  first W epochs when the batch exceeds 256, sets the lr at the start of an epoch and feeds
  the same recursion.
- `continue`: one cosine over all epochs, m + (lr0 - m) c(e) / 2, after the warm-up.

With one stage and no warm-up both are the plain cosine.
"""
import functools
import math

WARMUP_ABOVE_BATCH = 256  # the ImageNet scripts warm up only above this (global) batch


def warmup_epochs_for(batch_size, warmup_epochs):
    """The warm-up length the authors' ImageNet scripts use: none at a batch of 256 or less."""
    return warmup_epochs if batch_size > WARMUP_ABOVE_BATCH else 0


def _set_lr(epoch, lr, stage_starts, warmup_epochs):
    """The lr the authors' loop sets at the start of `epoch`, or None where the scheduler's
    step alone decides it: the warm-up value, else the base lr at a stage start."""
    if epoch < warmup_epochs:
        return lr * (epoch + 1) / warmup_epochs
    if epoch in stage_starts:
        return lr
    return None


def restarted_cosine(epoch, *, lr, lr_min, total_epochs, stage_starts=(0,), warmup_epochs=0):
    """The authors' lr of `epoch` (0-based): the recursion in the module doc, from the last
    epoch whose lr was set (the start of the stage or the last warm-up epoch)."""
    anchor = epoch
    while _set_lr(anchor, lr, stage_starts, warmup_epochs) is None:
        anchor -= 1  # epoch 0 always starts a stage
    value = _set_lr(anchor, lr, stage_starts, warmup_epochs)

    def c(e):
        return 1.0 + math.cos(math.pi * e / total_epochs)

    return lr_min + (value - lr_min) * c(epoch) / c(anchor)


def continued_cosine(epoch, *, lr, lr_min, total_epochs, stage_starts=(0,), warmup_epochs=0):
    """One cosine over all epochs, unaffected by the stages, after the warm-up."""
    if epoch < warmup_epochs:
        return lr * (epoch + 1) / warmup_epochs
    return lr_min + (lr - lr_min) * (1.0 + math.cos(math.pi * epoch / total_epochs)) / 2


STAGE_LR = {"restart": restarted_cosine, "continue": continued_cosine}
DECAYS = ("linear", "cosine", "cosine_unshifted")


def imagenet_training_lr(epoch, *, lr, epochs, decay="linear", warmup_epochs=5):
    """The lr of `epoch` (0-based) in train_imagenet.py: after a linear warm-up,
    lr (epoch + 1) / warmup_epochs (already shortened to 0 at batch 256 or less:
    `warmup_epochs_for`), a linear decay (PC-DARTS's `adjust_lr`: (E - 5 - e) / (E - 5) while
    more than 5 epochs remain, then (E - e) / (5 (E - 5)), a smaller slope; runs of at most 5
    epochs decay plainly, (E - e) / E) or a cosine to 0.

    `cosine` is the authors' option: their loop steps the scheduler at the start of an epoch,
    so epoch e runs at the cosine of e + 1, recursing from the last warm-up lr as PyTorch's
    scheduler does: lr c(e + 1) / c(W) with c(x) = 1 + cos(pi x / E); the last epoch runs at 0.
    `cosine_unshifted`: epoch e at lr c(e) / 2."""
    if epoch < warmup_epochs:
        return lr * (epoch + 1) / warmup_epochs
    if decay == "cosine":
        def c(e):
            return 1.0 + math.cos(math.pi * e / epochs)

        return lr * c(epoch + 1) / c(warmup_epochs)
    if decay == "cosine_unshifted":
        return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    tail = 5
    if epochs <= tail:
        return lr * (epochs - epoch) / epochs
    if epochs - epoch > tail:
        return lr * (epochs - tail - epoch) / (epochs - tail)
    return lr * (epochs - epoch) / ((epochs - tail) * tail)


class EpochLR:
    """Sets every param group's lr to `lr_of_epoch(epoch)`: at construction (epoch 0), at each
    `step()` (once per epoch, after it) and on `load_state_dict`. Its state is the epoch count."""

    def __init__(self, optimizer, lr_of_epoch):
        self.optimizer, self.lr_of_epoch, self.epoch = optimizer, lr_of_epoch, 0
        self._apply()

    def _apply(self):
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_of_epoch(self.epoch)

    def step(self):
        self.epoch += 1
        self._apply()

    def get_last_lr(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self):
        return {"epoch": self.epoch}

    def load_state_dict(self, state):
        self.epoch = int(state["epoch"])
        self._apply()


def cosine_to_zero(args, optimizer):
    """The training scripts' schedule: a cosine from --learning_rate to 0 over --epochs, one step
    per epoch (the CosineAnnealingLR of the authors' train.py and of NAS-Bench-201's recipe)."""
    return EpochLR(optimizer, functools.partial(continued_cosine, lr=args.learning_rate, lr_min=0.0,
                                                total_epochs=args.epochs))
