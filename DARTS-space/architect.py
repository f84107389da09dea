"""The architecture step of the DARTS-space searches (the authors' DARTS-space/architect.py).

What this space optimises: two alpha matrices, `arch.normal.alpha` and `arch.reduce.alpha`
(14 edges x 7 ops each), one per cell type; with `--method pcdarts` also PC-DARTS's edge
weights of each type, `arch.normal.edge_beta` and `arch.reduce.edge_beta` (14 each,
softmaxed over the edges of a node).

Its defaults, those of the authors' scripts: Adam (betas 0.5, 0.999) with the l2 anchor (Adam
weight decay 1e-3 on alpha) at 6e-4 for the CIFAR search (train_search.py), and at 6e-3 with
the architecture gradient clipped to norm 5 for the ImageNet search (train_search_imagenet.py).

The step itself, first and second order, is the shared one (common/nas/architect.py). Of the
second-order step this space differs from the authors' in one place: their virtual copy
(`new()`) is rebuilt at k 4 without the regulariser or the pruning masks, so loading the k 6
search's weights fails at the first architecture step, epoch 10; here the virtual step runs
on the network in place and is undone. The authors' ImageNet search ignored `--unrolled`;
here it is honoured.
"""
from common.nas import architect as shared
from common.nas import search_flags
from common.distributed import ONE_PROCESS

CELL_TYPES = ("normal", "reduce")

CIFAR_DEFAULTS = dict(arch_learning_rate=6e-4, reg_type="l2", reg_scale=1e-3, arch_grad_clip=0.0)
IMAGENET_DEFAULTS = dict(arch_learning_rate=6e-3, reg_type="l2", reg_scale=1e-3, arch_grad_clip=5.0)


def add_arch_flags(p, defaults=CIFAR_DEFAULTS):
    """The architecture flags with the defaults of one of this space's searches."""
    search_flags.add_arch_flags(p, method="dirichlet", tau_max=10.0, tau_min=1.0, **defaults)


def arch_parameters(model):
    """The tensors this space's step optimises: the normal cell's, then the reduction cell's."""
    return shared.named_arch_parameters(model, CELL_TYPES)


def build(model, args, dist=ONE_PROCESS):
    """The architect of a search from its flags."""
    return shared.Architect(model, params=arch_parameters(model), **shared.step_settings(args, dist))
