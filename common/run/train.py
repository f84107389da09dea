"""Training an architecture from scratch: the train and evaluation loops of the evaluation
networks, and the task the epoch driver runs (common/run/driver.py).

One epoch: per step, forward -> (logits, logits_aux); loss = criterion(logits, y)
+ auxiliary_weight * criterion(logits_aux, y) when the auxiliary head answered; backward;
gradient-norm clip over all parameters (none if grad_clip is None or 0); optimizer step.
After the epoch: evaluation on the test set (top-1 and top-5) and one scheduler step.
Drop-path probability ramps linearly per epoch, `drop_path_prob * epoch / epochs` (the
DARTS/DrNAS train.py ramp).

No host-device synchronisation happens inside a step: losses and accuracies accumulate on
the device (common.run.meter.Meter) and are read only when a line is printed or an epoch ends.

Under torchrun the training steps run in DistributedDataParallel (the task keeps the plain
module, so checkpoints hold the unwrapped state_dict and load in either mode), the meters'
sums are all-reduced before they are read, and each rank evaluates its shard of the test set.
Nothing here imports the search.
"""
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from common.run import launch
from common.device import MEMORY_FORMATS, autocast
from common.distributed import ONE_PROCESS, check_sync_enabled, wrap_ddp
from common.run.driver import Task
from common.run.flags import config_from_flags
from common.errors import UserError
from common.run.epoch import evaluate, run_epoch


def _loss(criterion, logits, logits_aux, y, auxiliary_weight):
    loss = criterion(logits, y)
    if logits_aux is not None and auxiliary_weight:
        loss = loss + auxiliary_weight * criterion(logits_aux, y)
    return loss


def train_epoch(model, loader, optimizer, *, auxiliary_weight=0.4, grad_clip=5.0, criterion=F.cross_entropy,
                dist=ONE_PROCESS, check_sync=False, amp=False, **loop):
    """One pass over `loader` in training mode; returns (mean loss, top-1 accuracy in %).

    The loss that is reported includes the auxiliary term (as the DARTS code reports it).
    With a distributed `dist`, `model` is the DDP-wrapped module and the result is global;
    `check_sync` compares the ranks' parameters after every step (DRNAS_CHECK_SYNC); `loop`
    holds common.run.epoch.run_epoch's progress, check_divergence, stop and start."""
    model.train()
    device = next(model.parameters()).device
    params = list(model.parameters())

    def step(batch):
        x, y = batch
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            logits, logits_aux = model(x)
            loss = _loss(criterion, logits, logits_aux, y, auxiliary_weight)
        loss.backward()
        if grad_clip is not None and grad_clip > 0:
            nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        return loss, logits, y, torch.isfinite(nn.utils.get_total_norm(params, foreach=True))

    sync = (lambda: dist.check_sync(model)) if check_sync else None
    return run_epoch(loader, step, device=device, dist=dist, check_sync=sync, **loop)


def main_logits(output):
    """The logits of an evaluation network's (logits, auxiliary logits)."""
    return output[0]


def count_parameters(model):
    """Parameters in millions, those of an auxiliary head (names containing 'auxiliary') not
    counted: the DARTS `count_parameters_in_MB` convention."""
    return sum(p.numel() for name, p in model.named_parameters() if "auxiliary" not in name) / 1e6


@dataclass(frozen=True)
class TrainConfig:
    """How a training runs, fixed for the whole run."""

    space: str  # the search space of the architecture (common/spaces.py)
    genotype: object  # the architecture, JSON-able (for the results)
    epochs: int
    batch_size: int  # global (all ranks), for the images/s figure
    drop_path_prob: float = 0.0  # the final value of the linear ramp
    auxiliary_weight: float = 0.4
    grad_clip: float = 5.0
    report_freq: int = 50
    amp: bool = False  # bfloat16 autocast
    extras: bool = True  # the network has an auxiliary head and drop-path (the DARTS networks; not 201's)
    report_best: bool = True  # log the best test accuracy over the epochs (the authors' DARTS train.py did)
    genotype_text: str = ""  # the architecture as text that --arch takes (the DARTS space: Genotype(...))


@dataclass
class TrainObjects:
    """What a training trains and reads."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object  # stepped once per epoch
    loaders: object  # common.data.loaders.Loaders: train, evaluation (the test set)
    criterion: Callable = F.cross_entropy  # training loss (e.g. label smoothing)
    eval_criterion: Callable = F.cross_entropy  # test loss


class TrainTask(Task):
    """A training as the epoch driver runs it (common/run/driver.py)."""

    fix = "lower --learning_rate or --grad_clip"

    def __init__(self, objects, config, dist=ONE_PROCESS):
        super().__init__(
            objects=objects, config=config, dist=dist, optimizer=objects.optimizer, scheduler=objects.scheduler,
            epochs=config.epochs, stateful={"model": objects.model, "optimizer": objects.optimizer,
                                            "scheduler": objects.scheduler},
            loaders={"train_loader": objects.loaders.train, "test_loader": objects.loaders.evaluation})
        # an auxiliary head that the loss ignores would leave parameters without gradients
        unused = bool(getattr(self.model, "_auxiliary", False)) and not config.auxiliary_weight
        self.train_model = wrap_ddp(self.model, dist, find_unused_parameters=unused)
        self.check_sync = check_sync_enabled()

    def describe(self, results, device):
        params_m = count_parameters(self.model)
        config = self.config
        results.update(space=config.space, genotype=config.genotype, params_m=params_m)
        if config.genotype_text:
            results["genotype_text"] = config.genotype_text
        loaders = self.objects.loaders
        return [f"genotype {config.genotype_text or config.genotype}",
                f"device {device}; param size {params_m:.6f} M{' (without the auxiliary head)' * config.extras}; "
                f"{loaders.train.num_images} training and {loaders.evaluation.num_images} test images; "
                f"{self.steps} steps per epoch"]

    def begin_epoch(self, epoch, resuming=False):
        self.model.drop_path_prob = self.config.drop_path_prob * epoch / self.epochs
        if hasattr(self.objects.loaders.train, "set_epoch") and not resuming:
            self.objects.loaders.train.set_epoch(epoch)
        return {"drop_path_prob": self.model.drop_path_prob}

    def header(self, epoch, lr, fields):
        extras = f" drop_path_prob {fields['drop_path_prob']:.4f}" if self.config.extras else ""
        return f"epoch {epoch + 1}/{self.epochs} lr {lr:.6e}{extras}"

    def train_epoch(self, epoch, progress, check_divergence, stop=None, start=None):
        config = self.config
        return train_epoch(self.train_model, self.objects.loaders.train, self.optimizer,
                           auxiliary_weight=config.auxiliary_weight, grad_clip=config.grad_clip,
                           criterion=self.objects.criterion, progress=progress, check_divergence=check_divergence,
                           dist=self.dist, check_sync=self.check_sync, amp=config.amp, stop=stop, start=start)

    def evaluate(self, epoch):
        loss, top1, top5 = evaluate(self.model, self.objects.loaders.evaluation, self.objects.eval_criterion,
                                    self.dist, self.config.amp, logits_of=main_logits)
        return {"test_loss": loss, "test_acc": top1, "test_top5": top5}

    def update_results(self, results, record):
        results.update(final_test_acc=record["test_acc"], final_test_top5=record["test_top5"])
        if self.config.report_best:
            results["best_test_acc"] = max(results.get("best_test_acc") or 0.0, record["test_acc"])

    def summary(self, record, results):
        best = f" (best {results['best_test_acc']:.2f}%)" if self.config.report_best else ""
        return [f"epoch {record['epoch']}: train loss {record['train_loss']:.4f} acc {record['train_acc']:.2f}% | "
                f"test loss {record['test_loss']:.4f} top-1 {record['test_acc']:.2f}% top-5 "
                f"{record['test_top5']:.2f}%{best} | {record['epoch_time_s']:.1f} s"]

    def final_lines(self, results):
        best = (f", best over the epochs {results.get('best_test_acc', 0.0):.2f}% (chosen on the test set: not a "
                "model-selection figure)" if self.config.report_best else "")
        return [f"final test accuracy {results.get('final_test_acc', 0.0):.2f}%{best}"]


# the class count of every dataset a training takes, for --count_params (no data read)
CLASS_COUNTS = {"cifar10": 10, "cifar100": 100, "svhn": 10, "imagenet16-120": 120, "synthetic": 10, "imagenet": 1000}


def class_count(args):
    if args.dataset == "folder":  # the class folders, listed
        from common.data.folder_data import scan

        return len(scan(args.data, args.test_portion).classes)
    return CLASS_COUNTS[args.dataset]


def parameter_count(args, build_model):
    """--count_params: the network's size, printed as the authors' scripts log it, without
    reading the data or training; returns {"params_m", "params_with_auxiliary_m", "num_classes"}."""
    classes = class_count(args)
    model = build_model(classes)
    counts = {"params_m": count_parameters(model),
              "params_with_auxiliary_m": sum(p.numel() for p in model.parameters()) / 1e6, "num_classes": classes}
    extra = (f" ({counts['params_with_auxiliary_m']:.6f} M with the auxiliary head)"
             if counts["params_with_auxiliary_m"] != counts["params_m"] else "")
    print(f"param size {counts['params_m']:.6f} M{extra}: --arch {str(args.arch)[:100]}, {classes} classes")
    return counts


def training(args, *, space, genotype, build_model, loaders_factory, schedule, default_dir,
             criterion=F.cross_entropy, nesterov=False, dist=ONE_PROCESS, genotype_text="", extras=True, report_best=True):
    """A training script's body: the network `build_model(num_classes)` of architecture
    `genotype` (JSON-able, for the results) from search space `space`, trained with SGD
    (Nesterov momentum if `nesterov`: NAS-Bench-201's recipe) on the loaders of
    `loaders_factory` (common/data/loaders.py's signature) under the per-epoch scheduler
    `schedule(args, optimizer)`, run by common.run.launch; returns the results dict. `genotype_text`:
    the architecture as `--arch` text (logged, and in the results); `extras`: the network has an
    auxiliary head and drop-path; `report_best`: log the best test accuracy over the epochs. With
    `--count_params` it prints the parameter count and returns (common.run.train.parameter_count)."""
    if getattr(args, "count_params", False):
        return parameter_count(args, build_model)
    run = launch.prepare(args, default_dir, dist)
    task = training_task(args, run.device, build_model, loaders_factory, schedule, dist, criterion=criterion,
                         nesterov=nesterov, config=dict(space=space, genotype=genotype, genotype_text=genotype_text,
                                                        extras=extras, report_best=report_best))
    return launch.run_task(args, run, task, dist)


def training_task(args, device, build_model, loaders_factory, schedule, dist, *, criterion, nesterov, config):
    """The TrainTask of the flags on `device`: the loaders, the network, SGD and its schedule;
    `config`: TrainConfig's fields that are not flags."""
    loaders = loaders_factory(args, device, dist)
    auxiliary = getattr(args, "auxiliary", False)
    if auxiliary and loaders.train.batch_size < 2:
        raise UserError(f"--auxiliary with {loaders.train.batch_size} image per process and step: the "
                        "auxiliary head's BatchNorm after its 1x1 map needs 2; raise --batch_size or leave "
                        "out --auxiliary")
    model = build_model(loaders.num_classes).to(device, memory_format=MEMORY_FORMATS[args.memory_format])
    optimizer = torch.optim.SGD(model.parameters(), args.learning_rate, momentum=args.momentum,
                                weight_decay=args.weight_decay, nesterov=nesterov)
    objects = TrainObjects(model, optimizer, schedule(args, optimizer), loaders, criterion)
    # drop_path_prob and the auxiliary head: the DARTS networks' extras
    config = config_from_flags(TrainConfig, args, **config,
                               auxiliary_weight=args.auxiliary_weight if auxiliary else 0.0)
    return TrainTask(objects, config, dist)
