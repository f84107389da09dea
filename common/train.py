"""The training and evaluation loops of the evaluation networks (CIFAR and ImageNet scripts).

One epoch: per step, forward -> (logits, logits_aux); loss = criterion(logits, y)
+ auxiliary_weight * criterion(logits_aux, y) when the auxiliary head answered; backward;
gradient-norm clip over all parameters; optimizer step. After the epoch: evaluation on
the test set (top-1 and top-5), one scheduler step, a record in the results, TensorBoard
scalars and an atomic checkpoint (state_dicts and plain types only) that `--resume` reads.
Drop-path probability ramps linearly per epoch, `drop_path_prob * epoch / epochs` (the
DARTS/DrNAS train.py ramp).

No host-device synchronisation happens inside a step: losses and accuracies accumulate on
the device (common.search.Meter) and are read only when a line is printed or an epoch ends.

Distributed training is prepared for, not implemented: only `is_main` processes log,
write TensorBoard scalars, results and checkpoints, and a loader with `set_epoch` (a
distributed sampler) is told the epoch; the meters are not all-reduced across ranks.
"""
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from common.checkpoint import CHECKPOINT_NAME, rng_state, save_checkpoint, set_rng_state
from common.run import Progress
from common.search import Meter, divergence_check


def _loss(criterion, logits, logits_aux, y, auxiliary_weight):
    loss = criterion(logits, y)
    if logits_aux is not None and auxiliary_weight:
        loss = loss + auxiliary_weight * criterion(logits_aux, y)
    return loss


def train_epoch(model, loader, optimizer, *, auxiliary_weight=0.4, grad_clip=5.0, criterion=F.cross_entropy,
                progress=None, check_divergence=None):
    """One pass over `loader` in training mode; returns (mean loss, top-1 accuracy in %).

    The loss that is reported includes the auxiliary term (as the DARTS code reports it)."""
    model.train()
    meter = Meter(next(model.parameters()).device)
    for step, (x, y) in enumerate(loader):
        optimizer.zero_grad(set_to_none=True)
        logits, logits_aux = model(x)
        loss = _loss(criterion, logits, logits_aux, y, auxiliary_weight)
        loss.backward()
        if grad_clip is not None and grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        meter.add(step, loss, logits, y)
        if progress is not None and progress.due(step):
            mean_loss, acc, first_bad = meter.read()
            if check_divergence is not None:
                check_divergence(first_bad)
            progress.show(step, mean_loss, acc)
    mean_loss, acc, first_bad = meter.read()
    if check_divergence is not None:
        check_divergence(first_bad)
    return mean_loss, acc


@torch.no_grad()
def evaluate(model, loader, criterion=F.cross_entropy):
    """(mean loss, top-1 %, top-5 %) over `loader` in eval mode (top-k capped at the class count)."""
    model.eval()
    device = next(model.parameters()).device
    meter = Meter(device)
    correct5 = torch.zeros((), device=device, dtype=torch.long)
    for step, (x, y) in enumerate(loader):
        logits, _ = model(x)
        meter.add(step, criterion(logits, y), logits, y)
        k = min(5, logits.shape[1])
        correct5 += (logits.topk(k, dim=1).indices == y[:, None]).any(dim=1).sum()
    loss, top1, _ = meter.read()
    top5 = 100.0 * correct5.item() / max(meter.count, 1)
    return loss, top1, top5


@dataclass
class TrainParts:
    """Everything the epoch loop needs, built by the script."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object  # stepped once per epoch
    train_loader: object  # augmented, shuffled; `set_epoch(epoch)` is called if it has one
    test_loader: object
    epochs: int
    drop_path_prob: float = 0.0  # the final value of the linear ramp
    auxiliary_weight: float = 0.4
    grad_clip: float = 5.0
    criterion: Callable = F.cross_entropy  # training loss (e.g. label smoothing)
    eval_criterion: Callable = F.cross_entropy  # test loss
    report_freq: int = 50


def checkpoint_state(parts, run, epoch):
    """Plain state only: loads with `torch.load(weights_only=True)`."""
    loaders = {}
    for name in ("train_loader", "test_loader"):
        loader = getattr(parts, name)
        if hasattr(loader, "state_dict"):
            loaders[name] = loader.state_dict()
    return {
        "epoch": epoch,  # epochs completed
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "loaders": loaders,
        "rng": rng_state(),
        "args": run.results["args"],
        "results": run.results,
    }


def restore(parts, state):
    """Load a checkpoint into freshly built parts; returns the number of epochs done."""
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    for name, loader_state in state.get("loaders", {}).items():
        getattr(parts, name).load_state_dict(loader_state)
    set_rng_state(state["rng"])
    return int(state["epoch"])


def run_training(parts, run, *, start_epoch=0, stop_after_epoch=None, is_main=True):
    """Train (or continue) for `parts.epochs` epochs; returns the results dict.

    `run` (common.run.Run) is only touched where `is_main` (rank 0 of a distributed job)."""
    model = parts.model
    steps = len(parts.train_loader)
    batch_size = getattr(parts.train_loader, "batch_size", None) or 1
    log = run.log if is_main else None
    results = run.results
    for epoch in range(start_epoch, parts.epochs):
        model.drop_path_prob = parts.drop_path_prob * epoch / parts.epochs
        lr = parts.optimizer.param_groups[0]["lr"]
        if hasattr(parts.train_loader, "set_epoch"):
            parts.train_loader.set_epoch(epoch)
        if is_main:
            log.info(f"epoch {epoch + 1}/{parts.epochs} lr {lr:.6e} drop_path_prob {model.drop_path_prob:.4f}")

        check_divergence = divergence_check(run, epoch, "lower --learning_rate or --grad_clip", is_main)

        started = time.time()
        progress = None
        if is_main:
            progress = Progress(log, f"epoch {epoch + 1}", steps, batch_size, parts.report_freq,
                                steps_after=steps * (parts.epochs - epoch - 1))
        train_loss, train_acc = train_epoch(
            model, parts.train_loader, parts.optimizer, auxiliary_weight=parts.auxiliary_weight,
            grad_clip=parts.grad_clip, criterion=parts.criterion, progress=progress,
            check_divergence=check_divergence)
        train_time = time.time() - started
        test_loss, test_acc, test_top5 = evaluate(model, parts.test_loader, parts.eval_criterion)
        parts.scheduler.step()
        record = {
            "epoch": epoch + 1, "lr": lr, "drop_path_prob": model.drop_path_prob,
            "train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss,
            "test_acc": test_acc, "test_top5": test_top5,
            "images_per_s": steps * batch_size / max(train_time, 1e-9),
            "epoch_time_s": time.time() - started,
        }
        results["epochs"].append(record)
        best = max(results.get("best_test_acc") or 0.0, test_acc)
        results.update(best_test_acc=best, final_test_acc=test_acc, final_test_top5=test_top5,
                       epochs_done=epoch + 1)
        if is_main:
            log.info(f"epoch {epoch + 1}: train loss {train_loss:.4f} acc {train_acc:.2f}% | "
                     f"test loss {test_loss:.4f} top-1 {test_acc:.2f}% top-5 {test_top5:.2f}% "
                     f"(best {best:.2f}%) | {record['epoch_time_s']:.1f} s")
            run.scalars(epoch + 1, {k: v for k, v in record.items() if k != "epoch"})
            results["wall_time_s"] = run.elapsed_before + time.time() - run.started
            save_checkpoint(run.dir / CHECKPOINT_NAME, checkpoint_state(parts, run, epoch + 1))
            run.save_results()
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < parts.epochs:
            if is_main:
                log.info(f"stopping after epoch {epoch + 1} as asked; continue with --resume {run.dir}")
            return results
    if is_main:
        run.save_results(finished=True)
        log.info(f"final test accuracy {results.get('final_test_acc', 0.0):.2f}%, "
                 f"best {results.get('best_test_acc', 0.0):.2f}%")
    return results
