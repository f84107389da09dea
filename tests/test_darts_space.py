"""DARTS space: operations, published genotypes and their JSON form, the derivation rule,
and the partial-channel search network (forward/backward, methods, progressive learning)."""
import collections
import json

import pytest
import torch
import torch.nn.functional as F

from common.nas import progressive
from common.nas.mixed_op import PrunedOp
from common.nas.progressive import load_masks, masks
from darts_space.genotypes import (GENOTYPES, Genotype, derive, genotype_from_json, genotype_to_json,
                                   num_edges)
from darts_space.model_search import Network
from darts_space.operations import OPS, PRIMITIVES, FactorizedReduce, search_op

P = PRIMITIVES.index
DRNAS_SPACE = ("DrNAS_cifar10", "DrNAS_imagenet", "DARTS_V1", "DARTS_V2", "PC_DARTS_cifar", "PC_DARTS_image")


def weights_of(entries, background=0.01, ops=len(PRIMITIVES)):
    """14 x ops weights, `background` everywhere, then {(edge, op): value}."""
    w = torch.full((num_edges(4), ops), background)
    for (edge, op), value in entries.items():
        w[edge, op] = value
    return w


# --- derivation rule -------------------------------------------------------------------------
# Edge order: node 2 <- 0,1 (edges 0,1); node 3 <- 0,1,2 (2-4); node 4 <- 0..3 (5-8); node 5 <- 0..4 (9-13).
def test_derive_keeps_the_two_strongest_edges_with_their_argmax_op():
    w = weights_of({
        (0, P("sep_conv_3x3")): 0.5, (1, P("dil_conv_5x5")): 0.7,  # node 2: strongest first
        (2, P("max_pool_3x3")): 0.3, (3, P("sep_conv_5x5")): 0.9, (4, P("skip_connect")): 0.6,
        (5, P("avg_pool_3x3")): 0.4, (6, P("dil_conv_3x3")): 0.2,
        (7, P("sep_conv_3x3")): 0.4, (8, P("sep_conv_5x5")): 0.4,  # three-way edge tie: inputs 0, 2
        (13, P("sep_conv_3x3")): 0.8, (13, P("sep_conv_5x5")): 0.8,  # op tie: the lower op index
        (11, P("dil_conv_5x5")): 0.3, (11, P("skip_connect")): 0.1,
    })
    g = derive(w, w)
    assert isinstance(g, Genotype)
    assert g.normal == [("dil_conv_5x5", 1), ("sep_conv_3x3", 0),
                        ("sep_conv_5x5", 1), ("skip_connect", 2),
                        ("avg_pool_3x3", 0), ("sep_conv_3x3", 2),
                        ("sep_conv_3x3", 4), ("dil_conv_5x5", 2)]
    assert g.reduce == g.normal and g.normal_concat == g.reduce_concat == [2, 3, 4, 5]
    # all-equal weights: the lowest inputs and the first op everywhere
    flat = derive(torch.full((14, 7), 1 / 7), torch.full((14, 7), 1 / 7))
    assert flat.normal == [("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4
    # lists work as well as tensors
    assert derive(w.tolist(), w.numpy()) == g


def test_pruned_ops_never_win_and_dead_edges_are_never_kept():
    # Zeros mark pruned ops: they lose even to negative weights (alpha-like inputs).
    w = weights_of({}, background=0.0)
    w[:, P("avg_pool_3x3")] = -1.0
    w[:, P("dil_conv_3x3")] = -2.0
    w[5, :] = 0.0  # node 4, input 0: every op pruned -> never kept (as weight 0 it would win)
    w[6, P("avg_pool_3x3")], w[6, P("dil_conv_3x3")] = -3.0, -4.0  # input 1: best -3
    w[7, P("avg_pool_3x3")], w[7, P("dil_conv_3x3")] = -5.0, -6.0  # input 2: best -5
    w[8, P("sep_conv_5x5")] = 0.5  # input 3
    g = derive(w, w)
    avg = [("avg_pool_3x3", 0), ("avg_pool_3x3", 1)]
    assert g.normal == avg + avg + [("sep_conv_5x5", 3), ("avg_pool_3x3", 1)] + avg

    # A node with fewer than two live edges cannot be derived.
    w = weights_of({})
    w[1, :] = 0.0
    with pytest.raises(ValueError, match="node 2"):
        derive(w, weights_of({}))
    with pytest.raises(ValueError, match="14 edges x 7 ops"):
        derive(torch.ones(13, 7), torch.ones(14, 7))
    with pytest.raises(ValueError, match="NaN"):
        derive(weights_of({(3, 2): float("nan")}), weights_of({}))


def test_none_is_excluded_when_present():
    names = ("none",) + PRIMITIVES
    w = weights_of({}, ops=8)
    w[:, 0] = 0.9  # `none` strongest everywhere
    w[0, 1 + P("sep_conv_3x3")] = 0.5
    w[2, :] = 0.0
    w[2, 0] = 0.9  # node 3, input 0: only `none` is live -> never kept
    g = derive(w, w, op_names=names)
    assert all(op != "none" for op, _ in g.normal + g.reduce)
    assert g.normal[0] == ("sep_conv_3x3", 0)
    assert {j for _, j in g.normal[2:4]} == {1, 2}


def alpha_for(genotype):
    """Alphas whose derivation is `genotype`: 3 on each node's first pair, 2 on its second."""
    alphas = []
    for cell in (genotype.normal, genotype.reduce):
        alpha, start = torch.zeros(14, 7), 0
        for node in range(4):
            (op_a, a), (op_b, b) = cell[2 * node: 2 * node + 2]
            assert a != b
            alpha[start + a, P(op_a)], alpha[start + b, P(op_b)] = 3.0, 2.0
            start += node + 2
        alphas.append(alpha)
    return alphas


@pytest.mark.parametrize("method", ["dirichlet", "darts"])
def test_the_network_derives_the_published_genotypes(method):
    model = Network(C=4, num_classes=10, layers=5, method=method)
    for name in DRNAS_SPACE:
        with torch.no_grad():
            for alpha, value in zip(model.arch_parameters(), alpha_for(GENOTYPES[name])):
                alpha.copy_(value)
        assert model.genotype() == genotype_to_json(GENOTYPES[name]), name
        json.dumps(model.genotype())


def test_derivation_after_pruning_ignores_pruned_ops():
    torch.manual_seed(0)
    model = Network(C=4, num_classes=10, layers=5)
    arch = model.arch_distributions()["normal"]
    with torch.no_grad():
        arch.alpha[:, P("sep_conv_3x3")] = 1.0
        arch.alpha[:, P("skip_connect")] = 0.5
    arch.prune(2)
    assert arch.kept == [[P("skip_connect"), P("sep_conv_3x3")]] * 14
    with torch.no_grad():
        arch.alpha[:, P("dil_conv_5x5")] = 50.0  # pruned: its weight stays exactly 0
    ops = {op for op, _ in genotype_from_json(model.genotype()).normal}
    assert ops == {"sep_conv_3x3"}


# --- published genotypes, JSON ---------------------------------------------------------------
def test_published_genotypes_round_trip_through_json_and_use_known_ops():
    for name, g in GENOTYPES.items():
        back = genotype_from_json(json.loads(json.dumps(genotype_to_json(g))))
        assert back == g and isinstance(back, Genotype), name
        assert all(op in OPS for op, _ in g.normal + g.reduce), name
    for name in DRNAS_SPACE:
        g = GENOTYPES[name]
        assert len(g.normal) == len(g.reduce) == 8 and g.normal_concat == g.reduce_concat == [2, 3, 4, 5]
        assert all(op in PRIMITIVES for op, _ in g.normal + g.reduce), name
    assert GENOTYPES["DrNAS_cifar10"].reduce[6] == ("skip_connect", 4)
    assert GENOTYPES["PC_DARTS_image"].normal[7] == ("dil_conv_5x5", 4)
    assert set(PRIMITIVES) < set(OPS) and "none" not in PRIMITIVES and len(PRIMITIVES) == 7


def test_malformed_genotype_json_is_rejected():
    good = genotype_to_json(GENOTYPES["DrNAS_cifar10"])
    for change, words in (({"normal": good["normal"][:7]}, "pairs per node"),
                          ({"reduce": [["conv_9x9", 0]] + good["reduce"][1:]}, "unknown op"),
                          ({"normal": good["normal"][:2] + [["skip_connect", 3]] + good["normal"][3:]},
                           "cannot take input 3"),
                          ({"reduce_concat": [2, 6]}, "concat")):
        with pytest.raises(ValueError, match=words):
            genotype_from_json({**good, **change})
    with pytest.raises(ValueError, match="missing"):
        genotype_from_json({"normal": good["normal"]})


# --- operations --------------------------------------------------------------------------------
def test_every_op_keeps_channels_and_divides_the_size_by_its_stride():
    x = torch.randn(2, 4, 8, 8)
    for name in OPS:
        for stride in (1, 2):
            assert OPS[name](4, stride, True)(x).shape == (2, 4, 8 // stride, 8 // stride), (name, stride)
    assert isinstance(OPS["skip_connect"](4, 2, False), FactorizedReduce)
    assert isinstance(OPS["skip_connect"](4, 1, False), torch.nn.Identity)
    for name in ("max_pool_3x3", "avg_pool_3x3"):
        op = search_op(name, 4, 2)
        assert isinstance(op[1], torch.nn.BatchNorm2d) and not op[1].affine


def test_factorized_reduce_is_darts_two_convolutions():
    torch.manual_seed(0)
    op = FactorizedReduce(6, 4, affine=False).eval()
    x = torch.randn(2, 6, 8, 8)
    w = op.conv.weight  # (4, 6, 1, 1): the two stride-2 convs' weights stacked
    r = F.relu(x)
    darts = torch.cat([F.conv2d(r, w[:2], stride=2), F.conv2d(r[:, :, 1:, 1:], w[2:], stride=2)], dim=1)
    assert torch.allclose(op(x), op.bn(darts), atol=1e-6)
    assert sum(p.numel() for p in op.parameters()) == 2 * (6 * 2)
    assert op(torch.randn(2, 6, 7, 7)).shape == (2, 4, 4, 4)  # odd sizes too


# --- search network ----------------------------------------------------------------------------
def edge_params(c, stride):
    """Parameters of the 7 search ops on c channels (BN has no affine parameters)."""
    sep = lambda k: 2 * (k * k * c + c * c)  # noqa: E731
    dil = lambda k: k * k * c + c * c  # noqa: E731
    return sep(3) + sep(5) + dil(3) + dil(5) + (c * c if stride == 2 else 0)


def tiny(**kwargs):
    torch.manual_seed(0)
    return Network(**{"C": 4, "num_classes": 10, "layers": 5, **kwargs})


def batch():
    return torch.randn(2, 3, 32, 32), torch.tensor([3, 7])


def check_genotype(g):
    assert set(g) == {"normal", "normal_concat", "reduce", "reduce_concat"}
    genotype = genotype_from_json(g)
    for cell in (genotype.normal, genotype.reduce):
        assert len(cell) == 8
        assert all(op in PRIMITIVES and 0 <= j < index // 2 + 2 for index, (op, j) in enumerate(cell))


def test_tiny_network_trains_and_derives_a_valid_genotype():
    model = tiny(k=2)
    assert [c.reduction for c in model.cells] == [False, True, False, True, False]
    assert [p.shape for p in model.arch_parameters()] == [torch.Size([14, 7])] * 2
    assert len(list(model.edge_ops())) == 5 * 14
    assert sum(t == "reduce" for t, _, _ in model.edge_ops()) == 2 * 14
    x, y = batch()
    logits = model(x)
    assert logits.shape == (2, 10)
    F.cross_entropy(logits, y).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.arch_parameters())
    assert all(p.grad is not None for p in model.weight_parameters())
    n_weights = len(model.weight_parameters())
    assert n_weights + 2 == len(list(model.parameters()))
    assert torch.isfinite(model.anchor_kl()) and model.anchor_kl().requires_grad
    check_genotype(model.genotype())
    draws = {name: arch.sample_many(3) for name, arch in model.arch_distributions().items()}
    check_genotype(model.genotype_from({name: d[0] for name, d in draws.items()}))


def test_partial_channels_shrink_the_ops_as_expected():
    counts = {k: sum(p.numel() for p in tiny(k=k).weight_parameters()) for k in (1, 2)}
    expected = 0
    for cell in tiny().cells:
        c = cell.edges[0].channels
        for i in range(4):
            for j in range(2 + i):
                stride = 2 if cell.reduction and j < 2 else 1
                expected += edge_params(c, stride) - edge_params(c // 2, stride)
    assert counts[1] - counts[2] == expected > 0


@pytest.mark.parametrize("method", ["gdas", "darts", "snas"])
def test_baseline_methods_run(method):
    model = tiny(method=method, k=2)
    model.loss(*batch()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.arch_parameters())
    check_genotype(model.genotype())


def test_gdas_computes_only_the_sampled_op():
    model = tiny(method="gdas", k=2)
    ran = collections.defaultdict(set)  # edge -> the ops whose modules ran (fused paths included)
    for e, (_, _, edge) in enumerate(model.edge_ops()):
        for o, op in enumerate(edge.ops):
            for module in op.modules():
                module.register_forward_hook(lambda m, i, out, e=e, o=o: ran[e].add(o))
    model(batch()[0])
    assert len(ran) == 5 * 14 and all(len(ops) == 1 for ops in ran.values())


def test_imagenet_stem():
    model = tiny(C=8, stem="imagenet", k=2)
    assert model.cells[0].preprocess0.__class__ is FactorizedReduce
    model.loss(torch.randn(2, 3, 64, 64), torch.tensor([0, 1])).backward()
    with pytest.raises(ValueError, match="unknown stem"):
        tiny(stem="mnist")


def test_progressive_prune_and_widen():
    model = tiny(k=2)
    with torch.no_grad():
        for alpha in model.arch_parameters():
            alpha.normal_()
            alpha[:, P("skip_connect")] = 5.0  # FactorizedReduce kept on the stride-2 edges
            alpha[:, P("dil_conv_5x5")] = 4.0
    optimizer = torch.optim.SGD(model.weight_parameters(), 0.1, momentum=0.9, weight_decay=3e-4)
    for _ in range(2):  # real momentum buffers and BN statistics
        optimizer.zero_grad()
        model.loss(*batch()).backward()
        optimizer.step()

    progressive.prune_and_widen(model, optimizer, 4, 1)
    for name, arch in model.arch_distributions().items():
        assert all(len(kept) == 4 and {P("skip_connect"), P("dil_conv_5x5")} <= set(kept) for kept in arch.kept)
    for cell_type, edge, op in model.edge_ops():
        kept = model.arch_distributions()[cell_type].kept[edge]
        assert op.k == 1
        assert [isinstance(o, PrunedOp) for o in op.ops] == [o not in kept for o in range(7)]
    assert any(isinstance(op.ops[P("skip_connect")], FactorizedReduce) for _, _, op in model.edge_ops())
    for p in model.weight_parameters():
        if p in optimizer.state:
            assert optimizer.state[p]["momentum_buffer"].shape == p.shape

    optimizer.zero_grad()
    model.loss(*batch()).backward()
    optimizer.step()
    check_genotype(model.genotype())

    direct = tiny(k=1)
    load_masks(direct, masks(model))
    progressive.apply_masks(direct)
    assert sum(p.numel() for p in model.weight_parameters()) == sum(p.numel() for p in direct.weight_parameters())
    assert [p.shape for p in model.weight_parameters()] == [p.shape for p in direct.weight_parameters()]


@pytest.mark.parametrize("unrolled, reg_type", [(False, "kl"), (True, "l2")])
def test_architect_steps_move_both_alphas(unrolled, reg_type):
    from common.nas.architect import Architect

    model = tiny(k=2)
    optimizer = torch.optim.SGD(model.weight_parameters(), 0.1, momentum=0.9, weight_decay=3e-4)
    architect = Architect(model, lr=6e-4, reg_type=reg_type, unrolled=unrolled)
    before = [a.detach().clone() for a in model.arch_parameters()]
    loss = architect.step(*batch(), *batch(), lr=0.1, weight_optimizer=optimizer)
    assert torch.isfinite(loss)
    assert all(not torch.equal(a, b) for a, b in zip(model.arch_parameters(), before))
