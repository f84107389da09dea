"""Each space folder has its own architect.py (the authors' layout): imported by its space's
search scripts, it says which tensors the architecture step optimises and with which defaults,
and builds the shared step (common/nas/architect.py) from the flags."""
import ast
from pathlib import Path

import pytest
import torch

from common.nas.architect import Architect, named_arch_parameters
from darts_space import architect as darts_architect
from darts_space import model_search as darts_model
from darts_space import train_search as darts_search
from darts_space import train_search_imagenet as imagenet_search
from space201 import architect as nb201_architect
from space201 import model_search as nb201_model
from space201 import train_search, train_search_progressive

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"201-space": ("train_search.py", "train_search_progressive.py"),
           "DARTS-space": ("train_search.py", "train_search_imagenet.py")}
PACKAGES = {"201-space": "space201", "DARTS-space": "darts_space"}


@pytest.mark.parametrize("folder", sorted(SCRIPTS))
def test_every_search_script_imports_its_own_space_architect(folder):
    assert (ROOT / folder / "architect.py").is_file()
    for script in SCRIPTS[folder]:
        tree = ast.parse((ROOT / folder / script).read_text())
        imported = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    for alias in node.names}
        assert (PACKAGES[folder], "architect") in imported, script
        assert "architect=architect.build" in (ROOT / folder / script).read_text(), script


def parse(script, *argv):
    return script.build_parser().parse_args(["--device", "cpu", *argv])


@pytest.mark.parametrize("method, names", [
    ("dirichlet", ["arch.cell.alpha"]),
    ("pcdarts", ["arch.cell.alpha", "arch.cell.edge_beta"]),
])
def test_nb201_optimises_one_alpha_matrix_and_pcdarts_edge_weights(method, names):
    model = nb201_model.build(num_classes=10, k=1, init_channels=4, num_cells=1, method=method)
    architect = nb201_architect.build(model, parse(train_search, "--method", method))
    by_id = {id(param): name for name, param in model.named_parameters()}
    assert [by_id[id(p)] for p in architect.params] == names
    assert [id(p) for p in architect.optimizer.param_groups[0]["params"]] == [id(p) for p in architect.params]


@pytest.mark.parametrize("method, per_cell", [("dirichlet", ["alpha"]), ("pcdarts", ["alpha", "edge_beta"])])
def test_darts_space_optimises_normal_then_reduce(method, per_cell):
    model = darts_model.build(num_classes=10, k=1, init_channels=8, layers=3, method=method, derive="softmax")
    architect = darts_architect.build(model, parse(darts_search, "--method", method))
    by_id = {id(param): name for name, param in model.named_parameters()}
    assert [by_id[id(p)] for p in architect.params] == [f"arch.{cell}.{name}" for cell in ("normal", "reduce")
                                                        for name in per_cell]
    assert architect.params[0].shape == (14, 7)


@pytest.mark.parametrize("script, expected", [
    (train_search, dict(lr=3e-4, weight_decay=1e-3, clip=None)),
    (train_search_progressive, dict(lr=3e-4, weight_decay=1e-3, clip=None)),
    (darts_search, dict(lr=6e-4, weight_decay=1e-3, clip=None)),
    (imagenet_search, dict(lr=6e-3, weight_decay=1e-3, clip=5.0)),
])
def test_each_search_takes_its_space_architect_defaults(script, expected):
    """The authors' arch lr, l2 anchor and (ImageNet) gradient clip, from the space's architect.py."""
    space_architect = nb201_architect if script in (train_search, train_search_progressive) else darts_architect
    args = parse(script)
    model = (nb201_model.build(num_classes=10, k=1, init_channels=4, num_cells=1, method="dirichlet")
             if space_architect is nb201_architect else
             darts_model.build(num_classes=10, k=1, init_channels=8, layers=3, method="dirichlet", derive="softmax"))
    architect = space_architect.build(model, args)
    group = architect.optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"], architect.grad_clip) == (expected["lr"], expected["weight_decay"],
                                                                         expected["clip"])
    assert group["betas"] == (0.5, 0.999)


def test_a_network_with_other_cell_types_is_refused():
    model = nb201_model.build(num_classes=10, k=1, init_channels=4, num_cells=1, method="dirichlet")
    with pytest.raises(ValueError, match="cell types"):
        named_arch_parameters(model, darts_architect.CELL_TYPES)


def test_the_space_step_updates_only_its_parameters():
    torch.manual_seed(0)
    model = nb201_model.build(num_classes=10, k=1, init_channels=4, num_cells=1, method="dirichlet")
    architect = nb201_architect.build(model, parse(train_search))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    architect.step(x, y, x, y)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == {"arch.cell.alpha"}
    assert isinstance(architect, Architect)
