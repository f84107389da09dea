"""DARTS-space evaluation networks (DARTS-space/model.py): sizes, forward contract, drop-path,
--arch resolution, and a searched genotype built into an evaluation network."""
import json

import pytest
import torch

from common.errors import UserError
from darts_space.genotypes import GENOTYPES, Genotype, genotype_from_json, genotype_to_json
from darts_space.model import (
    AuxiliaryHeadCIFAR,
    AuxiliaryHeadImageNet,
    Cell,
    NetworkCIFAR,
    NetworkImageNet,
    count_parameters,
    drop_path,
    resolve_genotype,
)


# --- sizes (the paper's table) -------------------------------------------------------------------
@pytest.mark.parametrize("name, millions", [
    ("DrNAS_cifar10", 4.1), ("DARTS_V2", 3.3), ("PC_DARTS_cifar", 3.6),
])
def test_cifar_parameter_counts_match_paper(name, millions):
    model = NetworkCIFAR(36, 10, 20, True, GENOTYPES[name])
    count = count_parameters(model)
    assert abs(count - millions) < 0.05, count
    # the auxiliary head exists but is not counted
    total = sum(p.numel() for p in model.parameters()) / 1e6
    aux = sum(p.numel() for p in model.auxiliary_head.parameters()) / 1e6
    assert aux > 0 and count == pytest.approx(total - aux)


def test_imagenet_parameter_count_matches_paper():
    model = NetworkImageNet(48, 1000, 14, True, GENOTYPES["DrNAS_imagenet"])
    assert abs(count_parameters(model) - 5.7) < 0.05, count_parameters(model)


def test_cell_channels_and_strides():
    g = GENOTYPES["DrNAS_cifar10"]
    normal = Cell(g, 12, 12, 4, reduction=False, reduction_prev=False).eval()
    out = normal(torch.randn(2, 12, 8, 8), torch.randn(2, 12, 8, 8))
    assert out.shape == (2, 16, 8, 8)
    reduce = Cell(g, 16, 16, 8, reduction=True, reduction_prev=False).eval()
    assert reduce(out, out).shape == (2, 32, 4, 4)
    after = Cell(g, 16, 32, 8, reduction=False, reduction_prev=True).eval()
    assert after(out, reduce(out, out)).shape == (2, 32, 4, 4)
    # every BN of an evaluation cell is affine
    assert all(m.affine for m in after.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_auxiliary_heads_shapes():
    assert AuxiliaryHeadCIFAR(6, 3)(torch.randn(2, 6, 8, 8)).shape == (2, 3)
    assert AuxiliaryHeadImageNet(6, 3)(torch.randn(2, 6, 7, 7)).shape == (2, 3)


# --- forward contract ---------------------------------------------------------------------------
def test_tiny_cifar_network_train_and_eval():
    torch.manual_seed(0)
    model = NetworkCIFAR(8, 10, 5, True, GENOTYPES["DrNAS_cifar10"])
    model.drop_path_prob = 0.2
    x = torch.randn(4, 3, 32, 32)
    model.train()
    logits, logits_aux = model(x)
    assert logits.shape == (4, 10) and logits_aux.shape == (4, 10)
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(4)) + 0.4 * logits_aux.sum()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.auxiliary_head.classifier.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        a, aux_a = model(x)
        b, aux_b = model(x)
    assert aux_a is None and aux_b is None
    assert torch.equal(a, b)


def test_no_auxiliary_head_returns_none_in_training():
    model = NetworkCIFAR(8, 10, 3, False, GENOTYPES["DARTS_V2"]).train()
    assert not hasattr(model, "auxiliary_head")
    logits, logits_aux = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and logits_aux is None


def test_tiny_imagenet_network_forward():
    torch.manual_seed(0)
    model = NetworkImageNet(8, 7, 3, True, GENOTYPES["DrNAS_imagenet"])
    model.drop_path_prob = 0.1
    model.train()
    logits, logits_aux = model(torch.randn(2, 3, 224, 224))
    assert logits.shape == (2, 7) and logits_aux.shape == (2, 7)
    (logits.sum() + logits_aux.sum()).backward()
    model.eval()
    with torch.no_grad():
        logits, logits_aux = model(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 7) and logits_aux is None


# --- drop-path ------------------------------------------------------------------------------------
def test_drop_path_identity_at_zero():
    x = torch.randn(5, 3, 2, 2)
    assert drop_path(x, 0.0) is x


def test_drop_path_drops_whole_samples_and_keeps_expectation():
    torch.manual_seed(0)
    p, n = 0.3, 20000
    x = torch.ones(n, 2, 3, 3)
    y = drop_path(x, p)
    assert y.shape == x.shape
    per_sample = y.flatten(1)
    # each sample is either all zero or all 1 / keep_prob
    first = per_sample[:, :1]
    assert torch.equal(per_sample, first.expand_as(per_sample))
    kept = first[first != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - p)))
    dropped = (first == 0).float().mean().item()
    assert abs(dropped - p) < 0.02
    assert abs(y.mean().item() - 1.0) < 0.03
    # gradients flow through the kept samples, scaled like the forward
    x = torch.ones(8, 3, requires_grad=True)
    drop_path(x, 0.5).sum().backward()
    assert set(x.grad.flatten().tolist()) <= {0.0, 2.0}


def test_drop_path_only_in_training_and_not_on_identity():
    g = Genotype(normal=[("skip_connect", 0), ("skip_connect", 1)] * 2, normal_concat=[2, 3],
                 reduce=[("skip_connect", 0), ("skip_connect", 1)] * 2, reduce_concat=[2, 3])
    cell = Cell(g, 4, 4, 4, reduction=False, reduction_prev=False).train()
    s = torch.randn(64, 4, 3, 3)
    torch.manual_seed(0)
    a = cell(s, s, drop_prob=0.9)
    torch.manual_seed(1)
    b = cell(s, s, drop_prob=0.9)
    assert torch.equal(a, b)  # only identities: nothing dropped
    conv = Cell(GENOTYPES["DARTS_V2"], 4, 4, 4, reduction=False, reduction_prev=False)
    conv.eval()
    with torch.no_grad():
        assert torch.equal(conv(s, s, 0.9), conv(s, s, 0.0))


# --- resolve_genotype -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(GENOTYPES))
def test_resolve_published_names(name):
    assert resolve_genotype(name) == GENOTYPES[name]


def test_resolve_results_json_and_bare_genotype(tmp_path):
    g = GENOTYPES["DrNAS_cifar10"]
    results = tmp_path / "run" / "results.json"
    results.parent.mkdir()
    results.write_text(json.dumps({"args": {}, "epochs": [], "genotype": genotype_to_json(g), "finished": True}))
    assert resolve_genotype(str(results)) == g
    assert resolve_genotype(str(results.parent)) == g  # the run folder
    bare = tmp_path / "cell.json"
    bare.write_text(json.dumps(genotype_to_json(GENOTYPES["PC_DARTS_cifar"])))
    assert resolve_genotype(bare) == GENOTYPES["PC_DARTS_cifar"]


def _one_line_error(arch):
    with pytest.raises(UserError) as info:
        resolve_genotype(arch)
    message = str(info.value)
    assert "\n" not in message and message
    return message


def test_resolve_unknown_name_lists_known_names():
    message = _one_line_error("DrNAS_cifar100")
    assert all(name in message for name in GENOTYPES)


def test_resolve_results_without_genotype(tmp_path):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"args": {}, "epochs": []}))
    assert "no genotype" in _one_line_error(str(results))
    results.write_text(json.dumps({"args": {}, "genotype": None}))
    assert "no genotype" in _one_line_error(str(results))
    results.write_text(json.dumps({"genotype": "|nor_conv_3x3~0|+|skip_connect~0|none~1|"}))
    assert "not a DARTS-space genotype" in _one_line_error(str(results))
    results.write_text(json.dumps({"genotype": {"normal": [["sep_conv_3x3", 7]] * 2, "normal_concat": [2],
                                                "reduce": [], "reduce_concat": [2]}, "finished": True}))
    assert "bad genotype" in _one_line_error(str(results))


def test_resolve_malformed_json(tmp_path):
    broken = tmp_path / "results.json"
    broken.write_text('{"genotype": {"normal": [')
    assert "not valid JSON" in _one_line_error(str(broken))
    assert "not valid JSON" in _one_line_error(str(tmp_path))  # folder holding it
    (tmp_path / "empty").mkdir()
    assert "without results.json" in _one_line_error(str(tmp_path / "empty"))


# --- a searched genotype ----------------------------------------------------------------------------
def test_searched_genotype_builds_an_evaluation_network():
    from darts_space.model_search import Network

    torch.manual_seed(0)
    found = Network(C=4, layers=5, k=2).genotype()
    found = json.loads(json.dumps(found))  # as written to results.json
    genotype = genotype_from_json(found)
    model = NetworkCIFAR(8, 10, 5, True, genotype).eval()
    with torch.no_grad():
        logits, logits_aux = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and logits_aux is None
    assert torch.isfinite(logits).all()
    # the dict itself is accepted as well
    assert NetworkCIFAR(8, 10, 5, False, found).genotype == genotype
