"""The loop over one epoch's steps, shared by the search and the training.

Per step: the caller's step function (one bilevel step, or one training step) returns its
loss, logits, targets and a device flag that is false when anything that matters went
non-finite (the losses, alpha after the architecture step, the weights after the weight
step). The sums and the first bad step accumulate on the device (common.run.meter.Meter) and are
read only when a progress line is shown or the epoch ends, so a step never waits for the
host. After each step a signal (common/run/stopping.py) stops the epoch at that boundary; an
epoch stopped so continues from `start` (the steps done and their sums).

`evaluate`, the one evaluation loop of the search (its validation figure) and the training
(the test figure), is here too.
"""
import torch
import torch.nn.functional as F

from common.device import autocast
from common.run.meter import Meter
from common.run.stopping import StopRequested
from common.distributed import ONE_PROCESS


def run_epoch(batches, step, *, device, progress=None, check_divergence=None, dist=ONE_PROCESS, check_sync=None,
              stop=None, start=None):
    """`step(batch) -> (loss, logits, targets, healthy)` over `batches` (with `start` = (steps done,
    meter state), the epoch's remaining ones); returns (mean loss, accuracy %) over all ranks of
    `dist`. `progress` (None on ranks other than 0) shows this rank's own running numbers;
    `check_sync()` runs after every step (DRNAS_CHECK_SYNC); `stop(dist)` returns a signal to
    stop for, or None."""
    meter, first = Meter(device), 0
    if start is not None:
        first = start[0]
        meter.load_state_dict(start[1])
    for index, batch in enumerate(batches, start=first):
        loss, logits, targets, healthy = step(batch)
        if check_sync is not None:
            check_sync()
        meter.add(index, loss, logits, targets, healthy)
        if progress is not None and progress.due(index):
            mean_loss, acc, first_bad = meter.read()  # this rank's own numbers: no collective here
            if check_divergence is not None:
                check_divergence(first_bad)
            progress.show(index, mean_loss, acc)
        signum = stop(dist) if stop is not None else None
        if signum:
            raise StopRequested(signum, index + 1, meter)
    mean_loss, acc, first_bad, _, _ = meter.read_global(dist)
    if check_divergence is not None:
        check_divergence(first_bad)
    return mean_loss, acc


@torch.no_grad()
def evaluate(model, loader, criterion=F.cross_entropy, dist=ONE_PROCESS, amp=False, logits_of=None):
    """(mean loss, top-1 %, top-5 %) over `loader` in eval mode (top-k capped at the class count).
    `logits_of(output)` picks the logits of a model whose forward returns more (the evaluation
    networks' (logits, auxiliary logits)). With a distributed `dist`, each rank passes its shard
    and the sums are all-reduced."""
    model.eval()
    device = next(model.parameters()).device
    meter = Meter(device)
    correct5 = torch.zeros((), device=device, dtype=torch.long)
    for step, (x, y) in enumerate(loader):
        with autocast(device, amp):
            logits = model(x)
        logits = logits_of(logits) if logits_of else logits
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bfloat16 up, float64 kept
        meter.add(step, criterion(logits, y), logits, y)
        k = min(5, logits.shape[1])
        correct5 += (logits.topk(k, dim=1).indices == y[:, None]).any(dim=1).sum()
    loss, top1, _, count, correct5 = meter.read_global(dist, correct5)
    return loss, top1, 100.0 * correct5 / max(count, 1)
