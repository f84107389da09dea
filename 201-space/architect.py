"""The architecture step of the NAS-Bench-201 search (the authors' 201-space/architect.py).

What this space optimises: one alpha matrix, `arch.cell.alpha` (6 edges x 5 ops), shared by
all 15 cells; with `--method pcdarts` also PC-DARTS's edge weights `arch.cell.edge_beta`.
Nothing else of the network is an architecture parameter.

Its defaults, those of the authors' train_search.py and train_search_progressive.py: Adam at
3e-4 (betas 0.5, 0.999), the l2 anchor (Adam weight decay 1e-3 on alpha), no gradient clip.

The step itself, first and second order, is the shared one (common/nas/architect.py). The
second-order step is the space's only difference from the authors': their `--unrolled`
raises at the first step in this space (the supernet has no `new()` to build the virtual
copy from); here the virtual step runs on the network in place and is undone.
"""
from common.nas import architect as shared
from common.nas import search_flags
from common.distributed import ONE_PROCESS

CELL_TYPES = ("cell",)  # one distribution for every cell of the network

DEFAULTS = dict(arch_learning_rate=3e-4, reg_type="l2", reg_scale=1e-3, arch_grad_clip=0.0)


def add_arch_flags(p, **defaults):
    """The architecture flags with this space's defaults (`defaults` overrides them)."""
    search_flags.add_arch_flags(p, method="dirichlet", tau_max=10.0, tau_min=1.0, **{**DEFAULTS, **defaults})


def arch_parameters(model):
    """The tensors this space's step optimises, in the order of `model.arch`."""
    return shared.named_arch_parameters(model, CELL_TYPES)


def build(model, args, dist=ONE_PROCESS):
    """The architect of a search from its flags."""
    return shared.Architect(model, params=arch_parameters(model), **shared.step_settings(args, dist))
