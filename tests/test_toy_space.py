"""A third search space, written against the documented contract alone (common/nas/network.py,
common/spaces.py: docs/architecture.md), runs through the search loop, checkpoint and resume,
aggregate and plot."""
import torch
import torch.nn.functional as F
from torch import nn

from common.nas import search_flags
from common.run import flags
from common.data.loaders import search_loaders
from common.nas.architect import Architect, named_arch_parameters, step_settings
from common.nas.mixed_op import MixedOp
from common.nas.mixing import ArchDistribution
from common.nas.network import SearchNetwork
from common.run.results import METRICS
from common.nas.search_build import search
from common.spaces import SPACES, Space, register
from script_checks import load_script, results

# --- the space: a 2-node cell over 2 ops ---------------------------------------------------------
TOY_OPS = ("conv_3x3", "skip_connect")


def make_op(name, channels):
    if name == "skip_connect":
        return nn.Identity()
    return nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(channels, affine=False))


class ToyNetwork(SearchNetwork):
    def __init__(self, num_classes, k, init_channels, method):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, init_channels, 3, padding=1, bias=False), nn.BatchNorm2d(init_channels))
        self.edges = nn.ModuleList(MixedOp(TOY_OPS, make_op, init_channels, k, edge=e, label=f"{e + 1}<-{e}")
                                   for e in range(2))
        self.classifier = nn.Linear(init_channels, num_classes)
        self.arch = nn.ModuleDict({"cell": ArchDistribution(2, len(TOY_OPS), method, edge_nodes=[1, 2])})

    def forward(self, x):
        draw, h = self.draw()["cell"], self.stem(x)
        for edge in self.edges:
            h = edge(h, draw)
        return self.classifier(F.adaptive_avg_pool2d(h, 1).flatten(1))

    def genotype_from(self, mixing):
        return "+".join(TOY_OPS[o] for o in mixing["cell"].argmax(-1).tolist())


def build(*, num_classes, k, init_channels, method):
    return ToyNetwork(num_classes, k, init_channels, method)


TOY = Space("toy", "toy-space", "test_toy_space:build", "test_toy_space:TOY_OPS", (3, 32, 32), 10, 1,
            {"init_channels": 8, "method": "dirichlet"}, benchmark=True)


def toy_architect(model, args, dist):
    """The space's architecture step: its one alpha matrix, the flags' settings."""
    return Architect(model, params=named_arch_parameters(model, ("cell",)), **step_settings(args, dist))


def toy_benchmark(args, note):
    """Made-up accuracies: one point per convolution."""
    return lambda genotype: {metric: 50.0 + genotype.count("conv") for metric in METRICS}
# --- end of the space ----------------------------------------------------------------------------


def toy_parser():
    p = flags.new_parser("A toy search.")
    flags.add_data_flags(p, data="unused", dataset="synthetic", datasets=["synthetic"])
    search_flags.add_split_flags(p, train_portion=0.5, cutout_length=16)
    flags.add_weight_flags(p, batch_size=32, learning_rate=0.05, momentum=0.9, weight_decay=3e-4, grad_clip=5.0, seed=0)
    flags.add_cosine_flags(p, learning_rate_min=0.0)
    search_flags.add_plain_stage_flags(p, epochs=3, k=1, arch_start_epoch=0)
    search_flags.add_arch_flags(p, method="dirichlet", arch_learning_rate=3e-3, reg_type="l2", reg_scale=1e-3,
                                arch_grad_clip=0.0, tau_max=10.0, tau_min=1.0)
    p.add_argument("--init_channels", type=int, default=8)
    search_flags.add_record_flags(p, valid_from_epoch=0, sample_archs=5, hessian_freq=1,
                                  hessian_batches=1)
    flags.add_speed_flags(p, memory_format="contiguous")
    search_flags.add_cuda_graph_flag(p)
    flags.add_run_flags(p)
    return p


def toy_search(out, *extra):
    args = toy_parser().parse_args(["--data_limit", "128", "--device", "cpu", "--output_dir", str(out), *extra])
    return search(args, SPACES["toy"], architect=toy_architect, loaders_factory=search_loaders,
                  open_benchmark=toy_benchmark)


def test_a_toy_space_runs_through_search_resume_aggregate_and_plot(tmp_path):
    register(TOY)
    whole = toy_search(tmp_path / "whole")
    toy_search(tmp_path / "parts", "--stop_after_epoch", "1")
    resumed = toy_search(tmp_path / "parts", "--resume", str(tmp_path / "parts"))
    assert whole == resumed and whole.count("+") == 1
    a, b = results(tmp_path / "whole"), results(tmp_path / "parts")
    assert [e["arch"] for e in a["epochs"]] == [e["arch"] for e in b["epochs"]]  # bit-identical resume
    assert a["space"] == "toy" and a["op_names"] == list(TOY_OPS) and a["edge_labels"] == {"cell": ["1<-0", "2<-1"]}
    assert a["finished"] and a["benchmark"]["cifar10_test"] == 50.0 + whole.count("conv")
    assert "hessian_eigenvalue" in a["epochs"][0] and a["epochs"][0]["exploration"]["samples"] == 5

    text = load_script("aggregate").main([str(tmp_path / "whole")])
    assert f"| {50.0 + whole.count('conv'):.2f} ± 0.00 (n=1) |" in text
    written = load_script("plot_search").main([str(tmp_path / "whole"), "--out", str(tmp_path / "plots")])
    assert {p.name for p in written} == {"exploration.png", "eigenvalue.png", "edges.png"}
    assert torch.is_tensor(ToyNetwork(10, 1, 8, "dirichlet").arch_parameters()[0])
