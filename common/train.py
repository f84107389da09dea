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

Distributed data parallel (common/distributed.py): given a `dist` with world_size > 1,
`run_training` wraps the model in DistributedDataParallel for the training steps (the
parts keep the plain module, so checkpoints hold the unwrapped state_dict and load in
either mode), the meters' sums are all-reduced before they are read (every rank gets the
global numbers; rank 0 alone logs, writes TensorBoard scalars, results and checkpoints),
each rank evaluates its shard of the test set, and a loader with `set_epoch` is told the
epoch. The progress lines within an epoch show rank 0's own numbers (no collective there).
"""
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from common.checkpoint import CHECKPOINT_NAME, loop_state, restore_loop_state, save_checkpoint
from common.distributed import check_sync_enabled, wrap_ddp
from common.run import Progress, autocast
from common.search import Meter, divergence_check


def _loss(criterion, logits, logits_aux, y, auxiliary_weight):
    loss = criterion(logits, y)
    if logits_aux is not None and auxiliary_weight:
        loss = loss + auxiliary_weight * criterion(logits_aux, y)
    return loss


def train_epoch(model, loader, optimizer, *, auxiliary_weight=0.4, grad_clip=5.0, criterion=F.cross_entropy,
                progress=None, check_divergence=None, dist=None, check_sync=False, amp=False):
    """One pass over `loader` in training mode; returns (mean loss, top-1 accuracy in %).

    The loss that is reported includes the auxiliary term (as the DARTS code reports it).
    With a distributed `dist`, `model` is the DDP-wrapped module and the result is global;
    `check_sync` compares the ranks' parameters after every step (DRNAS_CHECK_SYNC)."""
    model.train()
    device = next(model.parameters()).device
    meter = Meter(device)
    for step, (x, y) in enumerate(loader):
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            logits, logits_aux = model(x)
            loss = _loss(criterion, logits, logits_aux, y, auxiliary_weight)
        loss.backward()
        if grad_clip is not None and grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if check_sync and dist is not None:
            dist.check_sync(model)
        meter.add(step, loss, logits, y)
        if progress is not None and progress.due(step):
            mean_loss, acc, first_bad = meter.read()  # this rank's own numbers: no collective here
            if check_divergence is not None:
                check_divergence(first_bad)
            progress.show(step, mean_loss, acc)
    mean_loss, acc, first_bad, _, _ = meter.read_global(dist)
    if check_divergence is not None:
        check_divergence(first_bad)
    return mean_loss, acc


@torch.no_grad()
def evaluate(model, loader, criterion=F.cross_entropy, dist=None, amp=False):
    """(mean loss, top-1 %, top-5 %) over `loader` in eval mode (top-k capped at the class count).

    With a distributed `dist`, each rank passes its shard and the sums are all-reduced."""
    model.eval()
    device = next(model.parameters()).device
    meter = Meter(device)
    correct5 = torch.zeros((), device=device, dtype=torch.long)
    for step, (x, y) in enumerate(loader):
        with autocast(device, amp):
            logits, _ = model(x)
        logits = logits.float()
        meter.add(step, criterion(logits, y), logits, y)
        k = min(5, logits.shape[1])
        correct5 += (logits.topk(k, dim=1).indices == y[:, None]).any(dim=1).sum()
    loss, top1, _, count, correct5 = meter.read_global(dist, correct5)
    top5 = 100.0 * correct5 / max(count, 1)
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
    amp: bool = False  # bfloat16 autocast


def _stateful(parts):
    return {"model": parts.model, "optimizer": parts.optimizer, "scheduler": parts.scheduler}


def _loaders(parts):
    return {"train_loader": parts.train_loader, "test_loader": parts.test_loader}


def checkpoint_state(parts, run, epoch):
    """Plain state only: loads with `torch.load(weights_only=True)`."""
    return loop_state(epoch, run, _stateful(parts), _loaders(parts))


def restore(parts, state):
    """Load a checkpoint into freshly built parts; returns the number of epochs done."""
    return restore_loop_state(state, _stateful(parts), _loaders(parts))


def _wrap(parts, dist):
    """The module the training steps run: DDP around `parts.model` when distributed."""
    # an auxiliary head that the loss ignores would leave parameters without gradients
    unused = bool(getattr(parts.model, "_auxiliary", False)) and not parts.auxiliary_weight
    return wrap_ddp(parts.model, dist, find_unused_parameters=unused)


def run_training(parts, run, *, start_epoch=0, stop_after_epoch=None, is_main=True, dist=None):
    """Train (or continue) for `parts.epochs` epochs; returns the results dict.

    `run` (common.run.Run) is only touched where `is_main` (rank 0 of a distributed job).
    `dist` (common.distributed.Dist): data parallel across its ranks; `is_main` follows it."""
    if dist is not None:
        is_main = dist.is_main
    model = parts.model
    train_model = _wrap(parts, dist)
    check_sync = check_sync_enabled()
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
            train_model, parts.train_loader, parts.optimizer, auxiliary_weight=parts.auxiliary_weight,
            grad_clip=parts.grad_clip, criterion=parts.criterion, progress=progress,
            check_divergence=check_divergence, dist=dist, check_sync=check_sync, amp=parts.amp)
        train_time = time.time() - started
        test_loss, test_acc, test_top5 = evaluate(model, parts.test_loader, parts.eval_criterion, dist, parts.amp)
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


def train_from_flags(args, dist, *, genotype, genotype_record, build_parts, default_dir, count_params):
    """The body of every evaluation script (train.py, train_imagenet.py): prepare the run
    (resume, output folder, seed), build the parts (`build_parts(args, genotype, device, dist)`),
    log the network (`count_params(model)` in millions), train. Only rank 0 writes; returns the
    results dict."""
    from common.distributed import init_distributed
    from common.search_script import open_run, prepare_run

    dist = dist or init_distributed(args.device)
    device, checkpoint, out_dir = prepare_run(args, default_dir, dist)  # checks batch and --amp
    parts = build_parts(args, genotype, device, dist)  # data errors before the output folder exists
    parts.amp = args.amp

    results = checkpoint["results"] if checkpoint else None
    run = open_run(out_dir, args, device, dist, results)
    try:
        run.log.info(f"args {vars(args)}")
        run.log.info(f"genotype {genotype}")
        params_m = count_params(parts.model)
        run.results.update(genotype=genotype_record, params_m=params_m)
        start = restore(parts, checkpoint) if checkpoint else 0
        if checkpoint:
            run.log.info(f"resumed from {out_dir} after epoch {start}")
        run.log.info(f"device {device}; param size {params_m:.6f} M (without the auxiliary head); "
                     f"{parts.train_loader.num_images} training and {parts.test_loader.num_images} test "
                     f"images; {len(parts.train_loader)} steps per epoch")
        if dist.distributed:
            run.log.info(f"data parallel over {dist.world_size} processes, "
                         f"{args.batch_size // dist.world_size} images per process and step")
        results = run_training(parts, run, start_epoch=start, stop_after_epoch=args.stop_after_epoch, dist=dist)
        run.log.info(f"log {run.dir / 'log.txt'} | TensorBoard {run.dir / 'tb'} | results {run.results_path}")
        return results
    finally:
        run.close()
