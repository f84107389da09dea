"""--method pcdarts: PC-DARTS's edge normalisation in both spaces, its derivation, its defaults."""
import pytest
import torch
import torch.nn.functional as F

from common.nas.mixing import ArchDistribution
from darts_space import train_search as darts_search
from darts_space.genotypes import derive
from darts_space.model_search import Network as DartsNetwork
from darts_space.operations import PRIMITIVES
from script_checks import results
from space201 import train_search as nb201_search
from space201.model_search import EDGES, Network as NB201Network

DARTS_NODES = [i for i in range(4) for _ in range(2 + i)]


@pytest.mark.parametrize("nodes", [[i for i, _ in EDGES], DARTS_NODES], ids=["201", "darts"])
def test_edge_weights_sum_to_one_over_the_edges_of_each_node(nodes):
    torch.manual_seed(0)
    arch = ArchDistribution(len(nodes), 5, "pcdarts", edge_nodes=nodes)
    with torch.no_grad():
        arch.edge_beta.normal_(0, 2.0)
    weights = arch.edge_weights()
    for node in sorted(set(nodes)):
        group = [e for e, n in enumerate(nodes) if n == node]
        assert weights[group].sum().item() == pytest.approx(1.0, abs=1e-6)
        assert torch.allclose(weights[group], F.softmax(arch.edge_beta[group], -1))
    assert ArchDistribution(len(nodes), 5, "darts").edge_weights() is None


def test_derivation_multiplies_the_edge_weights_into_the_edge_strength():
    torch.manual_seed(0)
    arch = ArchDistribution(len(DARTS_NODES), len(PRIMITIVES), "pcdarts", edge_nodes=DARTS_NODES)
    conv = PRIMITIVES.index("sep_conv_3x3")
    with torch.no_grad():
        arch.alpha.zero_()
        arch.alpha[:, conv] = 1.0
        arch.alpha[2:4, conv] = 3.0  # node 3: its edges from inputs 0 and 1 have the strongest op
        arch.edge_beta.zero_()
    expected = F.softmax(arch.alpha, -1) * arch.edge_weights()[:, None]
    assert torch.allclose(arch.for_derivation("softmax"), expected)
    node3 = derive(arch.for_derivation(), arch.for_derivation()).normal[2:4]
    assert sorted(j for _, j in node3) == [0, 1]
    with torch.no_grad():
        arch.edge_beta[4] = 5.0  # PC-DARTS weighs node 3's edge from node 2 far higher
    node3 = derive(arch.for_derivation(), arch.for_derivation()).normal[2:4]
    assert node3[0] == ("sep_conv_3x3", 2)  # the edge weight decided the choice


@pytest.mark.parametrize("network", ["201", "darts"])
def test_edge_outputs_are_scaled_and_the_edge_parameters_learn(network):
    torch.manual_seed(0)
    if network == "201":
        model = NB201Network(C=8, N=1, num_classes=10, method="pcdarts", k=2)
    else:
        model = DartsNetwork(8, 10, 3, method="pcdarts", k=2)
    betas = [arch.edge_beta for arch in model.arch.values()]
    assert all(any(b is p for p in model.arch_parameters()) for b in betas)
    assert not any(b is p for b in betas for p in model.weight_parameters())
    model.loss(torch.randn(4, 3, 16, 16), torch.arange(4)).backward()
    assert all(b.grad is not None and b.grad.abs().sum() > 0 for b in betas)


def test_edge_output_scales_the_whole_output_partial_channels_included():
    from common.nas.network import Draw

    out = torch.randn(2, 8, 4, 4)
    draw = Draw(None, None, None, torch.tensor([0.25, 0.75]))
    assert torch.equal(draw.edge_output(1, out), out * 0.75)
    assert Draw(None, None, None).edge_output(1, out) is out


def test_201_search_with_pcdarts_takes_its_defaults_and_given_flags_win(tmp_path):
    nb201_search.main(["--dataset", "synthetic", "--method", "pcdarts", "--epochs", "1", "--arch_start_epoch", "0",
                       "--data_limit", "128", "--batch_size", "32", "--init_channels", "8", "--num_cells", "1",
                       "--output_dir", str(tmp_path), "--device", "cpu"])
    data = results(tmp_path)
    args = data["args"]
    assert (args["k"], args["learning_rate"], args["learning_rate_min"], args["arch_learning_rate"]) == (4, 0.1, 0.0, 6e-4)
    assert (args["epochs"], args["batch_size"], args["arch_start_epoch"]) == (1, 32, 0)  # given: kept
    edge_weights = data["epochs"][0]["arch"]["cell"]["edge_weights"]
    assert sum(edge_weights[1:3]) == pytest.approx(1.0) and sum(edge_weights[3:]) == pytest.approx(1.0)
    assert data["genotype"].count("~") == 6


def test_darts_search_with_pcdarts_runs_one_epoch(tmp_path):
    genotype = darts_search.main(["--dataset", "synthetic", "--method", "pcdarts", "--train_epochs", "1",
                                  "--arch_start_epoch", "0", "--data_limit", "64", "--batch_size", "16",
                                  "--layers", "3", "--output_dir", str(tmp_path), "--device", "cpu"])
    data = results(tmp_path)
    args = data["args"]
    assert (args["ks"], args["num_keeps"], args["init_channels"], args["learning_rate"]) == ([4], [7], 16, 0.1)
    assert len(data["epochs"]) == 1 and data["genotype"] == genotype
    weights = data["epochs"][0]["arch"]["normal"]["edge_weights"]
    assert sum(weights[:2]) == pytest.approx(1.0) and sum(weights[9:]) == pytest.approx(1.0)
    assert len(genotype["normal"]) == 8


def test_help_shows_the_pcdarts_defaults(capsys):
    with pytest.raises(SystemExit):
        nb201_search.main(["--help"])
    assert "--method pcdarts: --k 4, --epochs 50" in " ".join(capsys.readouterr().out.split())
