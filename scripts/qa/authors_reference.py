"""Time the authors' NAS-Bench-201 search step on this machine, as the outside reference.

    python scripts/qa/authors_reference.py --authors DIR --k 1 --device cuda

DIR is a checkout of the authors' code (github.com/xiangning-chen/DrNAS), kept outside this
repository's history (e.g. in the ignored folder .authors/). Nothing of it is copied here:
this script imports their 201-space modules from DIR, builds their supernet, architect and
weight optimizer as their train_search.py does (DrNAS, C 16, N 5, batch 64, first order, l2
anchor), and runs the body of their training loop: the architecture step on one batch, the
weight step on another (gradient clip 5 over all parameters), their accuracy and averages.
`--num_keep 3` prunes every edge to 3 ops first (their progressive second stage at k=2).

Prints JSON in scripts/benchmark_search.py's form: median step, images/s and memory (on a
GPU: max allocated, max reserved and device used, context included), so the two codes' rows
sit in one table. Batches are random tensors already on the device, for both codes.

`--check` compares instead of timing, in float64 on the CPU: their supernet and ours, the same
weights (copied from theirs), the same batch and the same random stream (their six per-edge
Dirichlet draws and our one batched draw take the same numbers), must give the same loss, the
same gradient of every weight and of alpha, and the same BatchNorm statistics.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # common/, when this checkout is not installed

from common.device import memory_mb  # noqa: E402


def import_authors(folder, device):
    """Their modules, from `folder`/201-space and `folder` (their own sys.path layout). On a CPU
    their `.cuda()` calls are made no-ops, so that the harness can be tried without a GPU."""
    folder = Path(folder).resolve()
    if not (folder / "201-space" / "search_model.py").is_file():
        print(f"error: {folder} is not a checkout of the authors' DrNAS code (no 201-space/search_model.py)",
              file=sys.stderr)
        raise SystemExit(2)
    sys.path[:0] = [str(folder / "201-space"), str(folder)]
    if device.type == "cpu":
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
        nn.Module.cuda = lambda self, *args, **kwargs: self
    import architect
    import cell_operations
    import search_model
    import utils
    return architect, cell_operations, search_model, utils


def build(modules, args, device):
    """Their network, architect and SGD, with their train_search.py's defaults."""
    architect, cell_operations, search_model, _ = modules
    criterion = nn.CrossEntropyLoss().to(device)
    model = search_model.TinyNetwork(C=16, N=5, max_nodes=4, num_classes=10, criterion=criterion,
                                     search_space=cell_operations.NAS_BENCH_201, k=args.k, species="dirichlet",
                                     reg_type="l2", reg_scale=1e-3).to(device)
    if args.num_keep:
        model.pruning(args.num_keep)
    settings = argparse.Namespace(momentum=0.9, weight_decay=3e-4, reg_type="l2", reg_scale=1e-3,
                                  arch_learning_rate=3e-4)
    optimizer = torch.optim.SGD(model.get_weights(), 0.025, momentum=0.9, weight_decay=3e-4)
    return model, architect.Architect(model, settings), optimizer, criterion


def accuracy(logits, y, topk=(1, 5)):
    """Their utils.accuracy (top-k correct, in %, as device tensors), which today's PyTorch
    refuses as written (a .view of a non-contiguous tensor): the same sums with reshape."""
    correct = logits.topk(max(topk), 1, True, True)[1].t().eq(y.view(1, -1))
    return [correct[:k].reshape(-1).float().sum(0).mul_(100.0 / y.size(0)) for k in topk]


def step(objects, batch, arch_batch, meters):
    """The body of their train(): architecture step, then weight step, accuracy, averages."""
    model, architect, optimizer, criterion = objects
    (x, y), (x_search, y_search) = batch, arch_batch
    model.train()
    architect.step(x, y, x_search, y_search, 0.025, optimizer, unrolled=False)
    optimizer.zero_grad()
    architect.optimizer.zero_grad()
    logits = model(x)
    loss = criterion(logits, y)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()
    optimizer.zero_grad()
    architect.optimizer.zero_grad()
    prec1, prec5 = accuracy(logits, y)
    for meter, value in zip(meters, (loss.data, prec1.data, prec5.data)):
        meter.update(value, x.size(0))


def differential(modules, k, num_cells=2, channels=8):
    """Their network and ours on the same weights, batch and random stream: the largest relative
    differences of the loss, the weight and alpha gradients and the BatchNorm statistics."""
    from space201.model_search import Network

    torch.set_default_dtype(torch.float64)
    theirs = modules[2].TinyNetwork(C=channels, N=num_cells, max_nodes=4, num_classes=10,
                                    criterion=nn.CrossEntropyLoss(), search_space=modules[1].NAS_BENCH_201, k=k,
                                    species="dirichlet", reg_type="l2", reg_scale=1e-3)
    ours = Network(channels, num_cells, 10, "dirichlet", k)
    pairs = list(zip([t for name, t in theirs.state_dict().items() if name != "_arch_parameters"],
                     [t for name, t in ours.state_dict().items() if name != "arch.cell.alpha"]))
    for their_tensor, our_tensor in pairs:  # the same modules in the same order
        assert their_tensor.shape == our_tensor.shape, (their_tensor.shape, our_tensor.shape)
        our_tensor.copy_(their_tensor)
    ours.arch["cell"].alpha.data.copy_(theirs._arch_parameters.data)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)
    losses = []
    for network, loss in ((theirs, theirs._loss), (ours, ours.loss)):
        torch.manual_seed(7)  # the mixing weights' draw
        losses.append(loss(x, y))
        losses[-1].backward()

    def gap(a, b):
        return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()

    grads = [(a.grad, b.grad) for a, b in zip([p for n, p in theirs.named_parameters() if n != "_arch_parameters"],
                                            ours.weight_parameters())]
    return {"loss": gap(losses[0].detach(), losses[1].detach()),
            "weight_gradients": max(gap(a, b) for a, b in grads),
            "alpha_gradient": gap(theirs._arch_parameters.grad, ours.arch["cell"].alpha.grad),
            "batchnorm_statistics": max(gap(a, b) for a, b in zip(
                [t for n, t in theirs.state_dict().items() if "running" in n],
                [t for n, t in ours.state_dict().items() if "running" in n])),
            "tensors_compared": len(pairs)}


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--authors", required=True, help="a checkout of the authors' DrNAS code")
    p.add_argument("--k", type=int, default=1)
    p.add_argument("--num_keep", type=int, default=None, help="prune every edge to N ops first")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda")
    p.add_argument("--check", action="store_true", help="compare their network with ours instead (float64, CPU)")
    args = p.parse_args(argv)
    device = torch.device("cpu" if args.check else args.device)
    modules = import_authors(args.authors, device)
    if args.check:
        report = {"code": "authors vs ours", "k": args.k, **differential(modules, args.k)}
        print(json.dumps(report, indent=1))
        return report
    torch.manual_seed(2)
    torch.backends.cudnn.benchmark = True  # as their script sets it
    torch.backends.cudnn.allow_tf32 = False  # IEEE fp32 as ours by default (their GTX 1080 Ti had no TF32)
    objects = build(modules, args, device)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.batch_size, 3, 32, 32, generator=g).to(device),
                torch.randint(0, 10, (args.batch_size,), generator=g).to(device)) for _ in range(4)]
    meters = [modules[3].AvgrageMeter() for _ in range(3)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for index in range(args.warmup + args.steps):
        synchronize(device)
        started = time.perf_counter()
        step(objects, batches[index % 4], batches[(index + 1) % 4], meters)
        synchronize(device)
        if index >= args.warmup:
            times.append(time.perf_counter() - started)
    median = statistics.median(times)
    report = {"code": "authors", "space": "201", "k": args.k, "num_keep": args.num_keep,
              "batch_size": args.batch_size, "device": str(device), "steps": args.steps, "median_step_s": median,
              "images_per_s": args.batch_size / median, "memory_mb": memory_mb(device), "torch": torch.__version__,
              "weights": sum(p.numel() for p in objects[0].get_weights())}
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
