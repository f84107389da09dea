"""Where the authors' code decides: each test pins one of their behaviours (README's table
"Where this code differs from the authors' code" lists the places where we differ)."""
import math

import pytest
import torch
import torch.nn.functional as F

from common import rng
from common.nas.architect import Architect
from common.data.device_loader import DeviceLoader
from common.data.imageset import ImageSet
from darts_space import train_search, train_search_imagenet
from darts_space.genotypes import GENOTYPES, derive, genotype_from_json
from darts_space.model import NetworkCIFAR, NetworkImageNet, count_parameters
from darts_space.model_search import Network as DartsNetwork
from darts_space.operations import PRIMITIVES, PoolBN
from imagenet_fixture import make_imagenet
from script_checks import expect_one_line_error, results
from space201 import train_search_progressive
from space201.model_search import Network as Network201


# --- edge choice -------------------------------------------------------------------------------
def authors_cell(alpha, mask):
    """The authors' genotype() of one cell, written from their code: softmax of alpha over
    every op, pruned ops set to 0 and the rest renormalised (process_step_matrix), then per
    node the 2 inputs whose largest weight is largest (a stable sort), each with its first
    argmax op."""
    weights = F.softmax(alpha, dim=-1)
    weights = torch.where(mask, weights, torch.zeros_like(weights))
    weights = (weights / weights.sum(-1, keepdim=True)).tolist()
    gene, start = [], 0
    for node in range(4):
        rows = weights[start:start + node + 2]
        edges = sorted(range(node + 2), key=lambda j: -max(rows[j]))[:2]
        for j in edges:
            best = 0
            for k in range(len(rows[j])):
                if rows[j][k] > rows[j][best]:
                    best = k
            gene.append((PRIMITIVES[best], j))
        start += node + 2
    return gene


def random_masks(generator, keep):
    return [sorted(torch.randperm(len(PRIMITIVES), generator=generator)[:keep].tolist()) for _ in range(14)]


@pytest.mark.parametrize("scale", [0.3, 1.0, 2.0])
@pytest.mark.parametrize("keep", [7, 4])
def test_darts_genotype_is_the_authors_edge_choice(scale, keep):
    model = DartsNetwork(C=4, num_classes=10, layers=3)
    mean_model = DartsNetwork(C=4, num_classes=10, layers=3, derive="mean")
    g = torch.Generator().manual_seed(int(scale * 10) + keep)
    differs = 0
    for _ in range(170):  # 6 x 170 = 1020 random alphas in all
        kept = {name: random_masks(g, keep) for name in ("normal", "reduce")}
        alphas = {name: scale * torch.randn(14, len(PRIMITIVES), generator=g) for name in kept}
        for net in (model, mean_model):
            for name, arch in net.arch_distributions().items():
                with torch.no_grad():
                    arch.alpha.copy_(alphas[name])
                arch.set_kept(kept[name])
        genotype = genotype_from_json(model.genotype())
        for name in ("normal", "reduce"):
            mask = torch.zeros(14, len(PRIMITIVES), dtype=torch.bool)
            mask[torch.arange(14)[:, None], torch.tensor(kept[name])] = True
            assert getattr(genotype, name) == authors_cell(alphas[name], mask)
        # --derive mean: the Dirichlet-mean rule of the same alphas
        means = {name: arch.mean() for name, arch in mean_model.arch_distributions().items()}
        assert genotype_from_json(mean_model.genotype()) == derive(means["normal"], means["reduce"])
        differs += genotype_from_json(mean_model.genotype()) != genotype
    if scale >= 1.0:
        assert differs > 170 // 4  # the two rules disagree often: the default matters


# --- learning rate after widening -----------------------------------------------------------------
def authors_lrs(stages, lr, lr_min, warmup_epochs=0):
    """The lr of every epoch in the authors' pattern, by torch's own SGD and CosineAnnealingLR:
    at each stage boundary a new SGD at the base lr and a new scheduler that loads the old
    one's state; the ImageNet warm-up sets lr * (epoch + 1) / W at the start of an epoch."""
    total = float(sum(stages))
    weight = torch.nn.Parameter(torch.zeros(1))

    def fresh(state=None):
        optimizer = torch.optim.SGD([weight], lr, momentum=0.9, weight_decay=3e-4)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total, eta_min=lr_min)
        if state is not None:
            scheduler.load_state_dict(state)
        return optimizer, scheduler

    optimizer, scheduler = fresh()
    lrs, epoch = [], 0
    for index, epochs in enumerate(stages):
        for _ in range(epochs):
            if epoch < warmup_epochs:
                for group in optimizer.param_groups:
                    group["lr"] = lr * (epoch + 1) / warmup_epochs
            lrs.append(optimizer.param_groups[0]["lr"])
            weight.grad = torch.ones(1)
            optimizer.step()
            scheduler.step()
            epoch += 1
        if index < len(stages) - 1:
            optimizer, scheduler = fresh(scheduler.state_dict())
    return lrs


def lrs_of(out_dir):
    return [epoch["lr"] for epoch in results(out_dir)["epochs"]]


def run_and_resume(main, argv, tmp_path, stop_after):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    main([*argv, "--output_dir", str(whole)])
    main([*argv, "--output_dir", str(parts), "--stop_after_epoch", str(stop_after)])
    main([*argv, "--resume", str(parts)])
    return lrs_of(whole), lrs_of(parts)


def assert_lrs(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-15)


def test_nas_bench_201_progressive_lr_restarts_at_each_stage(tmp_path):
    argv = ["--dataset", "synthetic", "--data_limit", "64", "--batch_size", "32", "--init_channels", "8",
            "--num_cells", "1", "--train_epochs", "3", "2", "--arch_start_epoch", "0", "--device", "cpu"]
    whole, resumed = run_and_resume(train_search_progressive.main, argv, tmp_path, stop_after=3)
    expected = authors_lrs([3, 2], 0.025, 0.001)
    assert expected[3] == 0.025  # stage 2 restarts at the base lr
    assert_lrs(whole, expected)
    assert_lrs(resumed, expected)  # stopped at the end of stage 1, resumed into stage 2


def test_darts_cifar_search_lr_restarts_at_each_stage(tmp_path):
    argv = ["--dataset", "synthetic", "--data_limit", "32", "--batch_size", "16", "--init_channels", "8",
            "--layers", "3", "--ks", "2", "1", "--num_keeps", "4", "2", "--train_epochs", "2", "2",
            "--arch_start_epoch", "0", "--device", "cpu"]
    whole, resumed = run_and_resume(train_search.main, argv, tmp_path, stop_after=2)
    assert_lrs(whole, authors_lrs([2, 2], 0.1, 0.0))
    assert_lrs(resumed, authors_lrs([2, 2], 0.1, 0.0))


def test_imagenet_search_lr_has_the_warm_up_and_restarts(tmp_path):
    data = make_imagenet(tmp_path / "data", train_per_class=3, val_per_class=2, size=[(40, 36)])
    argv = ["--data", str(data), "--init_channels", "8", "--layers", "3", "--image_size", "32",
            "--batch_size", "264", "--warmup_epochs", "2", "--ks", "2", "1", "--num_keeps", "4", "2",
            "--train_epochs", "3", "2", "--arch_start_epoch", "0", "--workers", "0", "--device", "cpu"]
    whole, resumed = run_and_resume(train_search_imagenet.main, argv, tmp_path, stop_after=3)
    expected = authors_lrs([3, 2], 0.5, 0.0, warmup_epochs=2)  # batch 264 > 256: warm-up
    assert expected[:2] == [0.25, 0.5] and expected[3] == 0.5
    assert_lrs(whole, expected)
    assert_lrs(resumed, expected)


def test_stage_lr_continue_is_one_cosine(tmp_path):
    argv = ["--dataset", "synthetic", "--data_limit", "64", "--batch_size", "32", "--init_channels", "8",
            "--num_cells", "1", "--train_epochs", "2", "2", "--arch_start_epoch", "0", "--device", "cpu",
            "--stage_lr", "continue", "--output_dir", str(tmp_path / "run")]
    train_search_progressive.main(argv)
    assert_lrs(lrs_of(tmp_path / "run"),
               [0.001 + 0.024 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)])


# --- evaluation networks ------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GENOTYPES))
def test_every_pool_of_the_evaluation_networks_is_followed_by_a_plain_batchnorm(name):
    pools = (torch.nn.MaxPool2d, torch.nn.AvgPool2d)
    for model in (NetworkCIFAR(8, 10, 5, True, GENOTYPES[name]), NetworkImageNet(8, 10, 5, True, GENOTYPES[name])):
        seen = 0
        for cell in model.cells:
            for (op_name, _), op in zip(cell_pairs(cell, GENOTYPES[name]), cell.ops):
                if "pool" in op_name:
                    seen += 1
                    assert isinstance(op, PoolBN)
                    assert isinstance(op[1], torch.nn.BatchNorm2d) and not op[1].affine
                    assert op[1].track_running_stats
                else:
                    assert not any(isinstance(m, pools) or type(m).__name__ == "AvgPool" for m in op.modules())
        has_pool = any("pool" in op for op, _ in GENOTYPES[name].normal + GENOTYPES[name].reduce)
        assert (seen > 0) == has_pool


def cell_pairs(cell, genotype):
    return genotype.reduce if cell.reduction else genotype.normal


@pytest.mark.parametrize("name,millions", [("DrNAS_cifar10", 4.0993), ("DARTS_V2", 3.3493), ("PC_DARTS_cifar", 3.6347)])
def test_cifar_parameter_counts_do_not_change(name, millions):
    assert count_parameters(NetworkCIFAR(36, 10, 20, True, GENOTYPES[name])) == pytest.approx(millions, abs=5e-5)


def test_imagenet_parameter_count_does_not_change():
    assert count_parameters(NetworkImageNet(48, 1000, 14, True, GENOTYPES["DrNAS_imagenet"])) == \
        pytest.approx(5.7264, abs=5e-5)


# --- smaller differences ------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["darts", "snas", "gdas"])
def test_kl_anchor_needs_the_dirichlet(method, capsys):
    err = expect_one_line_error(capsys, train_search.main, ["--dataset", "synthetic", "--method", method,
                                                            "--reg_type", "kl", "--device", "cpu"])
    assert "--reg_type kl" in err and "dirichlet" in err


def test_a_search_epoch_ends_with_the_last_partial_batch(monkeypatch):
    from common.data import loaders

    images = torch.zeros(50_000, 3, 2, 2, dtype=torch.uint8)
    fake = ImageSet(images, torch.zeros(50_000, dtype=torch.long), 10, (0.5,) * 3, (0.25,) * 3, pad=0)
    monkeypatch.setattr(loaders, "load_dataset", lambda *args, **kwargs: fake)
    args = train_search.build_parser().parse_args(["--dataset", "cifar10"])
    train, arch, valid = (getattr(loaders.search_loaders(args, torch.device("cpu")), name)
                          for name in ("train", "arch", "evaluation"))
    assert len(train) == 391  # 25,000 images at batch 64: 390 full batches and one of 40
    batches = list(train)
    assert len(batches) == 391 and len(batches[-1][1]) == 40
    assert len(arch) == 390  # the architecture stream draws full batches
    assert len(valid) == 391


def test_under_torchrun_the_shards_follow_distributed_sampler():
    # 25,001 images, 2 ranks, global batch 64: padded to 25,002 by repeating the first image of
    # the permutation, 391 steps, the same count on both ranks, every image seen
    images = torch.zeros(25_001, 3, 2, 2, dtype=torch.uint8)
    shards = []
    for rank in range(2):
        loader = DeviceLoader(images, torch.arange(25_001), batch_size=64, mean=(0.0,) * 3, std=(1.0,) * 3,
                              device="cpu", shuffle=True, seed=3, rank=rank, world_size=2)
        shards.append(loader.batch_indices())
    assert len(shards[0]) == len(shards[1]) == 391
    assert [len(b) for b in shards[0]] == [len(b) for b in shards[1]]
    assert sum(len(b) for b in shards[0]) == 12_501
    assert set(torch.cat(shards[0] + shards[1]).tolist()) == set(range(25_001))


def test_imagenet_search_defaults_seed_0_and_clips_the_architecture_gradient():
    args = train_search_imagenet.build_parser().parse_args([])
    assert (args.seed, args.grad_clip, args.arch_grad_clip) == (0, 5.0, 5.0)
    cifar = train_search.build_parser().parse_args([])
    assert (cifar.seed, cifar.arch_grad_clip) == (2, 0.0)  # the CIFAR search does not clip alpha


def test_the_architect_clips_the_architecture_gradient_to_its_norm():
    torch.manual_seed(0)
    model = Network201(C=4, N=1, num_classes=10)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    architect = Architect(model, lr=1.0, reg_scale=0.0, grad_clip=1e-6)
    seen = []
    architect.optimizer.register_step_pre_hook(lambda *_: seen.append(model.arch['cell'].alpha.grad.norm().item()))
    architect.step(x, y, x, y)
    assert seen[0] == pytest.approx(1e-6, rel=1e-3)


# --- second order ---------------------------------------------------------------------------------
def exact_mixed_product(model, vector, x, y, draws):
    """d/d alpha (dL_train/dw . v) through the same Dirichlet draw (replayed)."""
    rng.replay(draws)
    loss = model.loss(x, y)
    grads = torch.autograd.grad(loss, model.weight_parameters(), create_graph=True, allow_unused=True)
    dot = sum((g * v).sum() for g, v in zip(grads, vector) if g is not None)
    return torch.autograd.grad(dot, model.arch_parameters())


def test_finite_differences_use_one_draw_and_match_the_exact_product(monkeypatch):
    torch.manual_seed(0)
    model = Network201(C=4, N=1, num_classes=10, method="dirichlet").double()
    with torch.no_grad():
        model.arch['cell'].alpha.normal_(0.0, 0.5)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 10, (8,), generator=g)
    vector = [torch.randn(w.shape, generator=g, dtype=torch.float64) for w in model.weight_parameters()]
    architect = Architect(model, lr=1e-3)
    draws = rng.capture("cpu")
    # r small enough that the central difference is in its O(r^2) regime on this tiny network
    approx = architect.finite_difference_product(vector, x, y, r=1e-4)
    exact = exact_mixed_product(model, vector, x, y, draws)
    for a, e in zip(approx, exact):
        torch.testing.assert_close(a, e, rtol=1e-3, atol=1e-9)
    # with a fresh draw for each pass the sampling noise swamps the product
    monkeypatch.setattr(rng, "replay", lambda state: None)
    torch.set_rng_state(draws[0])
    noisy = architect.finite_difference_product(vector, x, y, r=1e-4)
    assert (noisy[0] - exact[0]).norm() > 10 * exact[0].norm()
