"""The NAS-Bench-201 supernet: weight counts, genotype strings, skipped ops."""
import re

import pytest
import torch

from space201.model_search import EDGES, OPS, Network, genotype_string, parse_genotype

ARCH_RE = re.compile(r"^\|(\w+~0)\|\+\|(\w+~0)\|(\w+~1)\|\+\|(\w+~0)\|(\w+~1)\|(\w+~2)\|$")


@pytest.mark.parametrize("k, expected", [(1, 1_686_106), (4, 174_106)])
def test_weight_count_equals_the_authors_network(k, expected):
    model = Network(C=16, N=5, num_classes=10, k=k)
    assert sum(p.numel() for p in model.weight_parameters()) == expected
    assert [p.shape for p in model.arch_parameters()] == [torch.Size([6, 5])]


def test_genotype_is_a_benchmark_string():
    published = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    assert genotype_string(parse_genotype(published)) == published
    model = Network(C=4, N=1)
    with torch.no_grad():
        model.arch['cell'].alpha.zero_()
        model.arch['cell'].alpha[:, OPS.index("nor_conv_3x3")] = 1.0
        model.arch['cell'].alpha[EDGES.index((3, 0)), OPS.index("skip_connect")] = 2.0
    genotype = model.genotype()
    assert ARCH_RE.match(genotype)
    assert genotype == published


def count_calls(model, op_name):
    calls = []
    for edge_ops in (e for cell in model.layers if hasattr(cell, "edges") for e in cell.edges):
        edge_ops.ops[OPS.index(op_name)].register_forward_hook(lambda *a: calls.append(1))
    return calls


def test_none_and_pruned_ops_are_never_computed():
    torch.manual_seed(0)
    model = Network(C=4, N=1)
    none_calls = count_calls(model, "none")
    model(torch.randn(2, 3, 32, 32))
    assert none_calls == []
    with torch.no_grad():
        model.arch['cell'].alpha[:, OPS.index("nor_conv_3x3")] = -5.0
    model.arch['cell'].prune(3)
    conv_calls = count_calls(model, "nor_conv_3x3")
    assert all(OPS.index("nor_conv_3x3") not in kept for kept in model.arch['cell'].kept)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert conv_calls == []


def test_partial_channels_keep_the_output_shape_and_gradients():
    torch.manual_seed(0)
    model = Network(C=8, N=1, k=4)
    loss = model.loss(torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 2]))
    loss.backward()
    assert model.arch['cell'].alpha.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.weight_parameters())
