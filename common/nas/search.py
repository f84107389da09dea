"""The search: its step, its epoch, and the task the epoch driver runs (common/run/driver.py).

Each step (the DARTS/DrNAS bilevel loop): (a) an architecture step on a batch from the
architecture half of the data, (b) a weight step (SGD, gradient-norm clip over the weights
only) on a batch from the weight half. Epochs are grouped into stages (progressive
learning, paper section 2.3); a plain search is one stage.

No host-device synchronisation happens inside a step: losses, accuracies and the divergence
flag accumulate on the device and are read only when a line is printed.

Under torchrun the weight step runs in DDP (re-wrapped after every pruning and widening),
the architect averages alpha's gradients, the loaders are sharded, and rank 0 alone logs,
checkpoints and queries the benchmark. Pruning reads alpha (identical everywhere) and
widening draws its channel map from a seed shared by the ranks, so every rank keeps the same
network; each epoch ends by comparing their digests of alpha and the masks.
"""
import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from common.device import autocast, reset_peak_memory
from common.nas.cuda_graph import StepGraph, graph_key
from common.data.device_loader import cycle
from common.nas.diagnostics import check_ranks_agree, epoch_diagnostics
from common.distributed import ONE_PROCESS, check_sync_enabled, wrap_ddp
from common.run.driver import Task
from common.run.epoch import evaluate, run_epoch
from common.nas.mixing import FIRST_EPOCH_TAU, METHODS, annealed_tau
from common.nas.progressive import enter_stage, load_masks, masks, stage_lines, stage_of
from common.run.results import benchmark_lines
from common.nas.unsampled_ops import sampled_weights, step_unsampled


def finite(tensors):
    """A device bool: every element of `tensors` is finite (one fused norm, no host read)."""
    return torch.isfinite(nn.utils.get_total_norm(tensors, foreach=True))


def search_step(model, architect, weight_optimizer, batch, arch_batch, *, update_arch, grad_clip, amp=False,
                forward=None, unsampled_ops=None):
    """One bilevel step; returns (weight loss, logits, healthy), detached, still on the device;
    `healthy` is false when the architecture loss, alpha or the weights went non-finite.

    `forward`: the module the weight step runs, DistributedDataParallel around `model` under
    torchrun (default `model`); `amp`: bfloat16 autocast of the weight step's forward;
    `unsampled_ops` (GDAS): "step" keeps the ops sampled before stepping (common/nas/unsampled_ops.py;
    the architecture forward's samples count in one process only), else None."""
    x, y = batch
    model.train()
    healthy, arch_sampled = None, frozenset()
    if update_arch:
        lr = weight_optimizer.param_groups[0]["lr"]
        arch_loss = architect.step(x, y, *arch_batch, lr=lr, weight_optimizer=weight_optimizer)
        healthy = torch.isfinite(arch_loss) & finite(model.arch_parameters())
        if unsampled_ops == "step" and forward is None:
            arch_sampled = sampled_weights(model)
    weights = model.weight_parameters()
    weight_optimizer.zero_grad(set_to_none=True)
    with autocast(x.device, amp):
        logits = (model if forward is None else forward)(x)
        loss = F.cross_entropy(logits, y)
    loss.backward(inputs=weights)  # weight gradients only: the architecture has its own step
    if unsampled_ops == "step":
        step_unsampled(weight_optimizer, weights, arch_sampled)
    nn.utils.clip_grad_norm_(weights, grad_clip)  # the weights only (the authors' 201 code clipped alpha too)
    weight_optimizer.step()
    healthy = finite(weights) if healthy is None else healthy & finite(weights)
    return loss.detach(), logits.detach(), healthy


def search_epoch(model, architect, weight_optimizer, train_loader, arch_stream, *, update_arch, grad_clip,
                 amp=False, forward=None, dist=ONE_PROCESS, check_sync=False, graph=None, unsampled_ops=None, **loop):
    """One epoch of search steps; returns (mean weight loss, accuracy %), over all ranks of
    `dist`; `graph`: a common.nas.cuda_graph.StepGraph of the step (--cuda_graph), else eager;
    `loop` holds common.run.epoch.run_epoch's progress, check_divergence, stop and start."""
    def eager(x, y, *arch_batch):
        return search_step(model, architect, weight_optimizer, (x, y), arch_batch, update_arch=update_arch,
                           grad_clip=grad_clip, amp=amp, forward=forward, unsampled_ops=unsampled_ops)

    def step(batch):
        tensors = (*batch, *next(arch_stream)) if update_arch else tuple(batch)
        if graph is None:
            loss, logits, healthy = eager(*tensors)
        else:
            loss, logits, healthy = graph(graph_key(model, weight_optimizer, update_arch), tensors, eager)
        return loss, logits, batch[1], healthy

    # weights and alpha: identical on every rank after each step
    sync = (lambda: dist.check_sync(model)) if check_sync else None
    return run_epoch(train_loader, step, device=next(model.parameters()).device, dist=dist, check_sync=sync, **loop)


@dataclass(frozen=True)
class TauSchedule:
    """The Gumbel temperature of SNAS and GDAS, annealed over all epochs (common.nas.mixing)."""

    epochs: int
    tau_max: float
    tau_min: float
    first_epoch_tau: Optional[float] = FIRST_EPOCH_TAU  # the authors' 10, whatever tau_max

    def __call__(self, epoch):
        return annealed_tau(epoch, self.epochs, self.tau_max, self.tau_min, self.first_epoch_tau)


@dataclass(frozen=True)
class SearchConfig:
    """How a search runs, fixed for the whole run."""

    space: str  # its name in common/spaces.py
    stages: tuple  # common.nas.progressive.Stage, one for a plain search
    batch_size: int  # global (all ranks), for the images/s figure
    grad_clip: float = 5.0
    report_freq: int = 50
    seed: int = 0  # under torchrun: per-epoch RNG streams are derived from it
    valid_from_epoch: int = 0  # evaluate the architecture half from this (0-based) epoch on
    memory_format: torch.memory_format = torch.contiguous_format  # of the model's conv weights
    amp: bool = False  # bfloat16 autocast of the forward passes
    tau: Optional[TauSchedule] = None  # SNAS, GDAS
    sample_archs: int = 0  # architectures sampled every epoch for the exploration record
    hessian_freq: int = 0  # every this many epochs, the largest Hessian eigenvalue (0: never)
    hessian_batches: int = 2  # fixed validation batches for the eigenvalue
    cuda_graph: bool = False  # replay the step from a CUDA graph (common/nas/cuda_graph.py)
    unsampled_ops: Optional[str] = None  # GDAS: "step" or "freeze" (common/nas/unsampled_ops.py)


@dataclass
class SearchObjects:
    """What a search trains and reads, built by common/nas/search_build.py."""

    model: nn.Module
    architect: object
    weight_optimizer: torch.optim.Optimizer
    scheduler: object
    loaders: object  # common.data.loaders.Loaders: train (weight half), arch, evaluation
    benchmark: Optional[Callable] = None  # genotype -> dict of accuracies, or None


def _rank_seed(seed, epoch, rank):
    """Under torchrun every rank draws its own samples and augmentation, re-seeded per epoch so
    that a resumed run replays them (one process keeps one stream, saved in the checkpoint)."""
    return (seed * 1_000_003 + epoch) * 7919 + rank


def search_ddp(model, dist):
    """The weight step's DistributedDataParallel: DDP averages the weight gradients and leaves
    alpha to the architect; GDAS computes only the sampled op, so some weights sit out a step."""
    arch_params = {id(p) for p in model.arch_parameters()}
    ignore = [name for name, p in model.named_parameters() if id(p) in arch_params]
    hard = any(METHODS[arch.method].hard for arch in model.arch_distributions().values())
    return wrap_ddp(model, dist, find_unused_parameters=hard, ignore=ignore)


class SearchTask(Task):
    """A search as the epoch driver runs it (common/run/driver.py)."""

    fix = "lower --learning_rate or --arch_learning_rate"

    def __init__(self, objects, config, dist=ONE_PROCESS):
        loaders = objects.loaders
        super().__init__(
            objects=objects, config=config, dist=dist, optimizer=objects.weight_optimizer,
            scheduler=objects.scheduler, epochs=sum(stage.epochs for stage in config.stages),
            stateful={"model": objects.model, "weight_optimizer": objects.weight_optimizer,
                      "arch_optimizer": objects.architect, "scheduler": objects.scheduler},
            loaders={"train_loader": loaders.train, "arch_loader": loaders.arch, "valid_loader": loaders.evaluation})
        self.distributed = dist.distributed
        self.is_main = dist.is_main
        self.check_sync = self.distributed and check_sync_enabled()
        self.forward, self.update_arch = None, True  # the DDP wrapper of the current stage
        self.graph = StepGraph() if config.cuda_graph else None

    def describe(self, results, device):
        model = self.model
        results.update(space=self.config.space, op_names=list(model.op_names), edge_labels=model.edge_labels(),
                       stages=[dataclasses.asdict(stage) for stage in self.config.stages])
        source = getattr(self.objects.benchmark, "source", None)
        if source is not None:  # which benchmark answered; a stand-in's accuracies are made up
            results["benchmark_source"] = source
        weights = sum(p.numel() for p in model.weight_parameters())
        return [f"device {device}; supernet weights {weights:,}; {self.steps} steps per epoch"]

    def begin_epoch(self, epoch, resuming=False):
        """Enter a new stage (prune, widen), seed the ranks' streams, tell the loaders the epoch;
        an epoch resumed in its middle has all of that in its checkpoint already."""
        config, model = self.config, self.model
        stage_index, stage_epoch = stage_of(config.stages, epoch)
        stage = config.stages[stage_index]
        if stage_epoch == 0 and stage_index > 0 and not resuming:  # progressive learning: prune, then widen
            shared_seed = _rank_seed(config.seed, epoch, rank=-1) if self.distributed else None
            enter_stage(model, self.optimizer, stage, memory_format=config.memory_format, shared_seed=shared_seed)
            for line in stage_lines(model, stage_index + 1, stage):
                self.log.info(line)
            self.forward = None
            reset_peak_memory(next(model.parameters()).device)  # each stage's own peak
            if self.graph is not None:
                self.graph.reset()  # new modules and shapes: capture again
        if self.distributed:
            if not resuming:
                torch.manual_seed(_rank_seed(config.seed, epoch, self.dist.rank))
            self.forward = search_ddp(model, self.dist) if self.forward is None else self.forward
        for loader in self.loaders.values():
            if hasattr(loader, "set_epoch") and not resuming:
                loader.set_epoch(epoch)
        tau = config.tau(epoch) if config.tau else None
        if tau is not None:
            for arch in model.arch_distributions().values():
                arch.tau = tau
        self.update_arch = stage_epoch >= stage.arch_start
        return {"stage": stage_index + 1, "k": stage.k, "tau": tau, "arch_updates": self.update_arch}

    def header(self, epoch, lr, fields):
        return (f"epoch {epoch + 1}/{self.epochs} stage {fields['stage']} k {fields['k']} lr {lr:.6f}"
                + (f" tau {fields['tau']:.3f}" if fields["tau"] is not None else "")
                + ("" if fields["arch_updates"] else " (architecture warm-up: weights only)"))

    def train_epoch(self, epoch, progress, check_divergence, stop=None, start=None):
        objects = self.objects
        return search_epoch(
            self.model, objects.architect, self.optimizer, objects.loaders.train, cycle(objects.loaders.arch),
            update_arch=self.update_arch, grad_clip=self.config.grad_clip, progress=progress,
            check_divergence=check_divergence, amp=self.config.amp, forward=self.forward, dist=self.dist,
            check_sync=self.check_sync, graph=self.graph, unsampled_ops=self.config.unsampled_ops, stop=stop,
            start=start)

    def evaluate(self, epoch):
        if epoch < self.config.valid_from_epoch:
            return {"valid_loss": None, "valid_acc": None}
        loss, acc, _ = evaluate(self.model, self.objects.loaders.evaluation, dist=self.dist, amp=self.config.amp)
        return {"valid_loss": loss, "valid_acc": acc}

    def finish_epoch(self, epoch, record):
        model, benchmark, config = self.model, self.objects.benchmark, self.config
        genotype = model.genotype()
        record.update(genotype=genotype, arch={name: arch.summary() for name, arch in model.arch_distributions().items()},
                      benchmark=benchmark(genotype) if benchmark else None)
        if self.distributed:
            record["arch_digests"] = check_ranks_agree(model, self.dist)
        if self.is_main:
            record.update(epoch_diagnostics(
                model, epoch, sample_archs=config.sample_archs, hessian_freq=config.hessian_freq,
                hessian_batches=config.hessian_batches, benchmark=benchmark, loader=self.objects.loaders.evaluation,
                log=self.log))

    def summary(self, record, results):
        valid = ("not evaluated" if record["valid_acc"] is None
                 else f"loss {record['valid_loss']:.4f} acc {record['valid_acc']:.2f}%")
        lines = [f"epoch {record['epoch']}: train loss {record['train_loss']:.4f} acc {record['train_acc']:.2f}% | "
                 f"valid {valid} | {record['epoch_time_s']:.1f} s", f"genotype {results['genotype_text']}"]
        if record["benchmark"]:
            lines.extend(benchmark_lines(record["benchmark"]))
        return lines

    def update_results(self, results, record):
        results.update(genotype=record["genotype"], genotype_text=self.model.genotype_text(record["genotype"]),
                       benchmark=record["benchmark"])
        by_stage = results.setdefault("memory_mb_by_stage", [])  # the peaks of each stage
        while len(by_stage) < record["stage"]:
            by_stage.append({"stage": len(by_stage) + 1})
        peaks = by_stage[record["stage"] - 1]
        for name, value in record["memory_mb"].items():
            peaks[name] = max(peaks.get(name, 0.0), value)
        refused = [getattr(loader, "cpu_decodes", None) for loader in self.loaders.values()]
        if any(count is not None for count in refused):  # GPU decoding: images its decoder refused
            results["loader_cpu_decodes"] = sum(count or 0 for count in refused)

    def final_lines(self, results):
        never = not any(e.get("arch_updates") for e in results["epochs"])  # --arch_start_epoch past every stage
        return [f"found architecture: {results['genotype_text']}"] + [
            "warning: alpha was never updated in this run: this is the architecture of its initial values"] * never

    def checkpoint_extra(self, epoch):
        """The network's structure now: its k and kept ops (a later stage's from its first epoch on)."""
        return {"k": next(self.model.edge_ops())[2].k, "masks": masks(self.model)}

    def restore(self, state):
        """Load a checkpoint into freshly built objects (the model already at the saved k)."""
        load_masks(self.model, state["masks"])
        return super().restore(state)
