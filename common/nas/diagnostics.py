"""What a search records beside its genotype, every epoch: exploration (paper figure 1),
sharpness (figures 4-5) and, under torchrun, a digest of alpha and the kept ops per rank.

Exploration and sharpness draw from a forked RNG, so a search finds the same architecture
with or without them.
"""
import hashlib
import json
import time

import torch

from common import rng
from common.nas.hessian import arch_hessian_eigenvalues


def explore(model, count, benchmark, seed):
    """Sample `count` architectures from the current distribution, discretise each by argmax,
    count the distinct ones and (with a benchmark) give their accuracy range."""
    with rng.forked(next(model.parameters()).device):
        torch.manual_seed(seed)
        draws = {name: arch.sample_many(count) for name, arch in model.arch_distributions().items()}
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


def sharpness(model, loader, num_batches, seed):
    """The largest Hessian eigenvalue w.r.t. alpha, at the expected mixing weights for every
    method (Dirichlet.rsample is differentiable once only: common/nas/hessian.py; at the mean the
    DARTS and DrNAS figures compare), over the first `num_batches` batches of `loader`, with
    the largest-magnitude one, the products spent and the time."""
    started = time.perf_counter()
    batches = loader.first_batches(num_batches)  # not a pass of the loader: a resume sees none
    values = arch_hessian_eigenvalues(model, batches, seed=seed, weights="mean")
    return {"hessian_eigenvalue": values.largest, "hessian_eigenvalue_largest_magnitude": values.largest_magnitude,
            "hessian_products": values.products, "hessian_time_s": time.perf_counter() - started}


def arch_digest(model):
    """A fingerprint of alpha and the kept ops: equal on every rank when the search is in sync."""
    digest = hashlib.sha256()
    for name, arch in sorted(model.arch_distributions().items()):
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


def epoch_diagnostics(model, epoch, *, sample_archs, hessian_freq, hessian_batches, benchmark, loader, log):
    """The exploration and sharpness fields of an epoch's record, as asked for, with their log lines."""
    record = {}
    if sample_archs:
        record["exploration"] = explore(model, sample_archs, benchmark, seed=epoch)
        log.info(f"exploration: {record['exploration']['distinct']} distinct of {sample_archs} sampled")
    if hessian_freq and (epoch + 1) % hessian_freq == 0:
        record.update(sharpness(model, loader, hessian_batches, seed=epoch))
        log.info(f"largest Hessian eigenvalue w.r.t. alpha: {record['hessian_eigenvalue']:.4f} (largest "
                 f"magnitude {record['hessian_eigenvalue_largest_magnitude']:.4f}; "
                 f"{record['hessian_products']} products, {record['hessian_time_s']:.1f} s)")
    return record
