"""The DARTS-space search network of the direct ImageNet search.

The search cells of model_search.py behind the search's ImageNet stems (a stride-2 3x3 conv
to 3C/2, a stride-2 3x3 conv to 3C, then a stride-2 3x3 conv at 3C: 224 x 224 images reach the
first cell at 28 x 28 with 144 channels at C 48, three times the evaluation network's stem), C
48, 14 layers, reduction cells at layers 4 and 9, 1000 classes: the network the authors
searched with on ImageNet (PC-DARTS's model_search_imagenet.py, `stem_multiplier * C`). Everything
else (partial channels, the Dirichlet sample per forward, pruning and widening, the
genotype) is model_search.Network's.
"""
from darts_space.model_search import Network as SearchNetwork


class Network(SearchNetwork):
    def __init__(self, C=48, num_classes=1000, layers=14, method="dirichlet", k=6, **kwargs):
        super().__init__(C, num_classes, layers, method, k, stem="imagenet", **kwargs)


def build(*, num_classes, k, init_channels, layers, method, derive):
    """The ImageNet search network from the flags of a search script (common/spaces.py)."""
    return Network(init_channels, num_classes, layers, method, k, derive=derive)
