"""The search loop, written once for every space and script.

Each step (DARTS/DrNAS bilevel loop): (a) an architecture step on a batch from the
architecture half of the data, (b) a weight step (SGD, gradient-norm clip over the
weights only) on a batch from the weight half. Epochs are grouped into stages
(progressive learning, paper section 2.3); a plain search is one stage.

No host-device synchronisation happens inside a step: losses, accuracies and the
divergence flag accumulate on the device and are read only when a line is printed.
"""
import json
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from common.arch import METHODS
from common.checkpoint import CHECKPOINT_NAME, loop_state, restore_loop_state, save_checkpoint
from common.distributed import check_sync_enabled, wrap_ddp
from common.errors import UserError
from common.hessian import timed_arch_hessian
from common.progressive import prune_and_widen
from common.run import Progress, autocast


class Diverged(UserError):
    """The loss became non-finite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class Stage:
    epochs: int
    k: int = 1  # partial-channel parameter during this stage
    num_keep: Optional[int] = None  # ops kept per edge from this stage on (None: all)
    arch_start: int = 0  # first epoch *within this stage* with architecture updates (the
    # authors count the warm-up per stage, kept on purpose)


def stage_of(stages, epoch):
    """(stage index, epoch within the stage) of a global epoch index."""
    for index, stage in enumerate(stages):
        if epoch < stage.epochs:
            return index, epoch
        epoch -= stage.epochs
    raise ValueError("epoch beyond the last stage")


class Meter:
    """Sums of loss and correct predictions on the device, plus the first non-finite step."""

    def __init__(self, device):
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.first_bad = torch.full((), -1, device=device, dtype=torch.long)
        self.count = 0

    def add(self, step, loss, logits, target):
        loss = loss.detach()
        self.loss_sum += loss * target.shape[0]
        self.correct += (logits.detach().argmax(1) == target).sum()
        self.count += target.shape[0]
        self.first_bad = torch.where((self.first_bad < 0) & ~torch.isfinite(loss), step, self.first_bad)

    def read(self):
        """(mean loss, accuracy in %, first non-finite step or -1): one host read."""
        loss_sum, correct, first_bad = torch.stack(
            [self.loss_sum, self.correct.to(self.loss_sum.dtype), self.first_bad.to(self.loss_sum.dtype)]
        ).tolist()
        count = max(self.count, 1)
        return loss_sum / count, 100.0 * correct / count, int(first_bad)

    def read_global(self, dist, extra=None):
        """`read` with the sums all-reduced over the ranks of `dist` (a plain read in one process).

        Returns (mean loss, accuracy %, first non-finite step or -1, global count, `extra`
        (a device scalar) summed, or None)."""
        if dist is None or not dist.distributed:
            loss, acc, first_bad = self.read()
            return loss, acc, first_bad, self.count, (None if extra is None else extra.item())
        dtype, device = torch.float64, self.loss_sum.device
        bad = self.first_bad.to(dtype)
        sums = torch.stack([self.loss_sum.to(dtype), self.correct.to(dtype),
                            torch.tensor(float(self.count), dtype=dtype, device=device),
                            (bad >= 0).to(dtype), bad.clamp(min=0),
                            torch.zeros((), dtype=dtype, device=device) if extra is None else extra.to(dtype)])
        dist.all_reduce_sum(sums)
        loss_sum, correct, count, n_bad, bad_sum, extra_sum = sums.tolist()
        count = int(count)
        first_bad = int(bad_sum / n_bad) if n_bad else -1  # the mean step over the ranks that saw one
        return (loss_sum / max(count, 1), 100.0 * correct / max(count, 1), first_bad, count,
                None if extra is None else extra_sum)


def search_step(model, architect, weight_optimizer, batch, arch_batch, *, update_arch, grad_clip, amp=False,
                forward=None):
    """One bilevel step; returns (weight loss, logits), both detached, still on the device.

    `forward`: the module the weight step runs, DistributedDataParallel around `model` under
    torchrun (default `model`); `amp`: bfloat16 autocast of the weight step's forward."""
    x, y = batch
    model.train()
    if update_arch:
        lr = weight_optimizer.param_groups[0]["lr"]
        architect.step(x, y, *arch_batch, lr=lr, weight_optimizer=weight_optimizer)
    weights = model.weights()
    weight_optimizer.zero_grad(set_to_none=True)
    with autocast(x.device, amp):
        logits = (model if forward is None else forward)(x)
        loss = F.cross_entropy(logits, y)
    loss.backward(inputs=weights)  # weight gradients only: the architecture has its own step
    nn.utils.clip_grad_norm_(weights, grad_clip)  # the weights only (the authors' code clipped alpha too)
    weight_optimizer.step()
    return loss.detach(), logits.detach()


def train_epoch(model, architect, weight_optimizer, train_loader, arch_stream, *, update_arch,
                grad_clip, progress, check_divergence, amp=False, forward=None, dist=None, check_sync=False):
    """One epoch of search steps; returns (mean weight loss, accuracy %), over all ranks of `dist`.
    `progress` (None on ranks other than 0) shows this rank's own running numbers."""
    meter = Meter(next(model.parameters()).device)
    for step, batch in enumerate(train_loader):
        arch_batch = next(arch_stream) if update_arch else None
        loss, logits = search_step(model, architect, weight_optimizer, batch, arch_batch,
                                   update_arch=update_arch, grad_clip=grad_clip, amp=amp, forward=forward)
        if check_sync:
            dist.check_sync(model)  # weights and alpha: identical on every rank after each step
        meter.add(step, loss, logits, batch[1])
        if progress is not None and progress.due(step):
            mean_loss, acc, first_bad = meter.read()
            check_divergence(first_bad)
            progress.show(step, mean_loss, acc)
    mean_loss, acc, first_bad, _, _ = meter.read_global(dist)
    check_divergence(first_bad)
    return mean_loss, acc


@torch.no_grad()
def evaluate(model, loader, dist=None, amp=False):
    """Mean loss and accuracy (%) over a loader in eval mode (each rank its shard, summed)."""
    model.eval()
    device = next(model.parameters()).device
    meter = Meter(device)
    for step, (x, y) in enumerate(loader):
        with autocast(device, amp):
            logits = model(x).float()
        meter.add(step, F.cross_entropy(logits, y), logits, y)
    loss, acc, _, _, _ = meter.read_global(dist)
    return loss, acc


def divergence_check(run, epoch, fix, is_main=True):
    """A callback for the loops: given the first non-finite step (or -1), stop the run with one
    line naming epoch and step; the checkpoint of the last good epoch stays."""

    def check(first_bad):
        if first_bad < 0:
            return
        if is_main:
            run.save_results(diverged={"epoch": epoch + 1, "step": first_bad + 1})
        raise Diverged(
            f"training diverged: non-finite loss at epoch {epoch + 1}, step {first_bad + 1}; "
            f"the last good checkpoint ({epoch} epochs done) is kept in {run.dir / CHECKPOINT_NAME}: "
            f"{fix} and start again")

    return check


def set_tau(model, tau):
    for arch in model.arch_weights().values():
        arch.tau = tau


def masks(model):
    return {name: arch.kept for name, arch in model.arch_weights().items()}


def load_masks(model, saved):
    for name, arch in model.arch_weights().items():
        arch.set_kept(saved[name])


@dataclass
class SearchParts:
    """Everything the loop needs, built by the script."""

    model: nn.Module
    architect: object
    weight_optimizer: torch.optim.Optimizer
    scheduler: object
    train_loader: object  # weight half, augmented, shuffled
    arch_loader: object  # architecture half, augmented, shuffled
    valid_loader: object  # architecture half, plain: the validation figure of each epoch
    stages: list
    grad_clip: float = 5.0
    report_freq: int = 50
    tau: Optional[Callable] = None  # epoch -> Gumbel temperature (SNAS, GDAS)
    benchmark: Optional[Callable] = None  # genotype -> dict of accuracies
    sample_archs: int = 0  # architectures sampled every epoch for the exploration record
    hessian_freq: int = 0  # every this many epochs, the dominant Hessian eigenvalue (0: never)
    hessian_batches: int = 2  # fixed validation batches for the eigenvalue
    memory_format: torch.memory_format = torch.contiguous_format  # of the model's conv weights
    amp: bool = False  # bfloat16 autocast of the forward passes
    batch_size: int = 0  # global batch (all ranks), for the images/s figure; 0: the loader's
    seed: int = 0  # under torchrun: per-epoch RNG streams are derived from it
    valid_from_epoch: int = 0  # evaluate the architecture half from this (0-based) epoch on


def forked_rng(device):
    """Diagnostics draw from a forked RNG: the search is identical with or without them."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def explore(model, count, benchmark, seed):
    """Paper figure 1: sample `count` architectures from the current distribution, discretise
    each by argmax, count the distinct ones and (with a benchmark) their accuracy range."""
    with forked_rng(next(model.parameters()).device):
        torch.manual_seed(seed)
        draws = {name: arch.sample_many(count) for name, arch in model.arch_weights().items()}
    genotypes = [model.genotype_from({name: d[i] for name, d in draws.items()}) for i in range(count)]
    record = {"samples": count, "distinct": len({json.dumps(g, sort_keys=True) for g in genotypes}),
              "benchmark": None}
    found = [acc for acc in map(benchmark, genotypes) if acc] if benchmark else []
    if found:
        record["benchmark"] = {
            metric: {"min": min(values), "mean": sum(values) / len(values), "max": max(values)}
            for metric in found[0]
            for values in [[acc[metric] for acc in found if acc[metric] is not None]] if values}
    return record


def _stateful(parts):
    """The objects whose state_dicts a search checkpoint holds, by key (model first)."""
    return {"model": parts.model, "weight_optimizer": parts.weight_optimizer,
            "arch_optimizer": parts.architect, "scheduler": parts.scheduler}


def _loaders(parts):
    return {name: getattr(parts, name) for name in ("train_loader", "arch_loader", "valid_loader")}


def checkpoint_state(parts, run, epoch):
    stage = stage_of(parts.stages, epoch - 1)[0]
    state = loop_state(epoch, run, _stateful(parts), _loaders(parts))
    state.update(stage=stage, k=parts.stages[stage].k, masks=masks(parts.model))
    return state


def restore(parts, state):
    """Load a checkpoint into freshly built parts (the model already at the saved k)."""
    load_masks(parts.model, state["masks"])
    return restore_loop_state(state, _stateful(parts), _loaders(parts))


def search_ddp(model, dist):
    """The weight step's DistributedDataParallel: DDP averages the weight gradients and leaves
    alpha to the architect; GDAS computes only the sampled op, so some weights sit out a step."""
    arch_params = {id(p) for p in model.arch_parameters()}
    ignore = [name for name, p in model.named_parameters() if id(p) in arch_params]
    hard = any(METHODS[arch.method].hard for arch in model.arch_weights().values())
    return wrap_ddp(model, dist, find_unused_parameters=hard, ignore=ignore)


def _rank_seed(seed, epoch, rank):
    """Under torchrun every rank draws its own samples and augmentation, re-seeded per epoch so
    that a resumed run replays them (one process keeps one stream, saved in the checkpoint)."""
    return (seed * 1_000_003 + epoch) * 7919 + rank


def arch_digest(model):
    """A fingerprint of alpha and the kept ops: equal on every rank when the search is in sync."""
    import hashlib

    digest = hashlib.sha256()
    for name, arch in sorted(model.arch_weights().items()):
        digest.update(name.encode())
        digest.update(arch.alpha.detach().cpu().numpy().tobytes())
        digest.update(json.dumps(arch.kept).encode())
    return digest.hexdigest()


def check_ranks_agree(model, dist):
    """Every rank's arch_digest; raise when they differ (a bug: the ranks would search apart)."""
    digests = dist.all_gather_objects(arch_digest(model))
    if len(set(digests)) != 1:
        raise RuntimeError(f"architecture parameters or masks differ between ranks: {digests}")
    return digests


def run_search(parts, run, *, start_epoch=0, stop_after_epoch=None, dist=None):
    """Run (or continue) the search; returns the final genotype.

    `dist` (common.distributed.Dist, torchrun): the weight step runs in DDP (re-wrapped after
    every pruning and widening), the architect averages alpha's gradients, the loaders are
    sharded, and rank 0 alone logs, checkpoints and queries the benchmark. Pruning reads alpha
    (identical everywhere) and widening draws its channel map from a seed shared by the ranks,
    so every rank keeps the same network; each epoch ends by comparing their arch_digest."""
    from common.data import cycle

    distributed = dist is not None and dist.distributed
    is_main = dist is None or dist.is_main
    check_sync = distributed and check_sync_enabled()
    total = sum(stage.epochs for stage in parts.stages)
    steps = len(parts.train_loader)
    batch_size = parts.batch_size or parts.train_loader.batch_size
    model, log = parts.model, run.log
    genotype = model.genotype()
    forward = None  # the DDP wrapper of the current stage
    for epoch in range(start_epoch, total):
        stage_index, stage_epoch = stage_of(parts.stages, epoch)
        stage = parts.stages[stage_index]
        if stage_epoch == 0 and stage_index > 0:  # progressive learning: prune, then widen
            with torch.random.fork_rng(devices=[], enabled=distributed):
                if distributed:
                    torch.manual_seed(_rank_seed(parts.seed, epoch, rank=-1))  # the same on every rank
                prune_and_widen(model, parts.weight_optimizer, stage.num_keep, stage.k)
            model.to(memory_format=parts.memory_format)  # the widened ops are built contiguous
            forward = None
        if distributed:
            torch.manual_seed(_rank_seed(parts.seed, epoch, dist.rank))
            forward = search_ddp(model, dist) if forward is None else forward
        for loader in _loaders(parts).values():
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
        lr = parts.weight_optimizer.param_groups[0]["lr"]
        tau = parts.tau(epoch) if parts.tau else None
        if tau is not None:
            set_tau(model, tau)
        update_arch = stage_epoch >= stage.arch_start
        log.info(f"epoch {epoch + 1}/{total} stage {stage_index + 1} k {stage.k} lr {lr:.6f}"
                 + (f" tau {tau:.3f}" if tau is not None else "")
                 + ("" if update_arch else " (architecture warm-up: weights only)"))

        check_divergence = divergence_check(run, epoch, "lower --learning_rate or --arch_learning_rate", is_main)
        started = time.time()
        progress = Progress(log, f"epoch {epoch + 1}", steps, batch_size, parts.report_freq,
                            steps_after=steps * (total - epoch - 1)) if is_main else None
        train_loss, train_acc = train_epoch(
            model, parts.architect, parts.weight_optimizer, parts.train_loader,
            cycle(parts.arch_loader), update_arch=update_arch, grad_clip=parts.grad_clip,
            progress=progress, check_divergence=check_divergence, amp=parts.amp, forward=forward,
            dist=dist, check_sync=check_sync)
        train_time = time.time() - started
        valid_loss = valid_acc = None
        if epoch >= parts.valid_from_epoch:
            valid_loss, valid_acc = evaluate(model, parts.valid_loader, dist, parts.amp)
        parts.scheduler.step()

        genotype = model.genotype()
        record = {
            "epoch": epoch + 1, "stage": stage_index + 1, "k": stage.k, "lr": lr, "tau": tau,
            "arch_updates": update_arch, "train_loss": train_loss, "train_acc": train_acc,
            "valid_loss": valid_loss, "valid_acc": valid_acc, "genotype": genotype,
            "arch": {name: arch.summary() for name, arch in model.arch_weights().items()},
            "benchmark": parts.benchmark(genotype) if parts.benchmark else None,
            "images_per_s": steps * batch_size / train_time,
        }
        if distributed:
            record["arch_digests"] = check_ranks_agree(model, dist)
        if parts.sample_archs and is_main:
            record["exploration"] = explore(model, parts.sample_archs, parts.benchmark, seed=epoch)
            log.info(f"exploration: {record['exploration']['distinct']} distinct of {parts.sample_archs} sampled")
        if parts.hessian_freq and (epoch + 1) % parts.hessian_freq == 0 and is_main:
            # at the expected mixing weights for every method: Dirichlet.rsample is differentiable
            # once only (common/hessian.py); at the mean the DARTS and DrNAS figures compare
            record.update(timed_arch_hessian(model, parts.valid_loader, parts.hessian_batches, seed=epoch))
            log.info(f"largest Hessian eigenvalue w.r.t. alpha: {record['hessian_eigenvalue']:.4f} (largest "
                     f"magnitude {record['hessian_eigenvalue_largest_magnitude']:.4f}; "
                     f"{record['hessian_products']} products, {record['hessian_time_s']:.1f} s)")
        record["epoch_time_s"] = time.time() - started
        valid = "not evaluated" if valid_acc is None else f"loss {valid_loss:.4f} acc {valid_acc:.2f}%"
        log.info(f"epoch {epoch + 1}: train loss {train_loss:.4f} acc {train_acc:.2f}% | "
                 f"valid {valid} | {record['epoch_time_s']:.1f} s")
        log.info(f"genotype {genotype}")
        if record["benchmark"]:
            log.info("benchmark " + " ".join(f"{k} {v:.2f}" for k, v in record["benchmark"].items()))
        run.scalars(epoch + 1, {k: v for k, v in record.items() if k not in ("epoch", "stage")})
        run.scalars(epoch + 1, record["benchmark"] or {}, prefix="benchmark/")
        run.results["epochs"].append(record)
        run.results.update(genotype=genotype, benchmark=record["benchmark"], epochs_done=epoch + 1)
        run.results["wall_time_s"] = run.elapsed_before + time.time() - run.started
        if is_main:
            save_checkpoint(run.dir / CHECKPOINT_NAME, checkpoint_state(parts, run, epoch + 1))
            run.save_results()
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < total:
            log.info(f"stopping after epoch {epoch + 1} as asked; continue with --resume {run.dir}")
            return genotype
    run.save_results(finished=True)
    return genotype
