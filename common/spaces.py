"""The registry of search spaces: one entry per supernet, read by the search scripts,
scripts/benchmark_search.py, scripts/aggregate.py and scripts/plot_search.py.

An entry holds what is known of a space without building anything: its name (recorded as
`space` in every results.json), the folder of its scripts (runs go to
`experiments/<folder>/`), its candidate ops, the input shape and class count of its default
dataset, the defaults of its network flags, and where its network builder lives
("module:function", imported on first use, so that this module stays torch-free). The
builder takes `num_classes`, `k` and the network flags by name.

A new space is one entry: `register(Space(...))` (see docs/architecture.md).
"""
import importlib
from dataclasses import dataclass, field
from typing import Mapping

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
DARTS_OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
             "dil_conv_3x3", "dil_conv_5x5")


@dataclass(frozen=True)
class Space:
    name: str
    folder: str
    builder: str  # "module:function"
    op_names: tuple
    input_shape: tuple  # (channels, height, width) of the default dataset
    num_classes: int
    k: int  # partial channels of the first stage, by default
    network_defaults: Mapping = field(default_factory=dict)  # the builder's flags and their defaults
    benchmark: bool = False  # has a tabular benchmark (NAS-Bench-201)
    genotype_reader: str = ""  # "module:function": a genotype as results.json holds it -> the space's own type

    def build(self, flags, *, num_classes, k):
        """The search network; `flags` (a mapping, e.g. a script's vars(args)) gives the
        builder's network flags, the defaults fill in the missing ones."""
        module, function = self.builder.split(":")
        chosen = {**self.network_defaults, **{key: flags[key] for key in self.network_defaults if key in flags}}
        return getattr(importlib.import_module(module), function)(num_classes=num_classes, k=k, **chosen)

    def read_genotype(self, value):
        """A genotype as results.json holds it, in the space's own type (e.g. a DARTS-space
        Genotype); the JSON value itself where the space has no other (a NAS-Bench-201 cell string)."""
        if not self.genotype_reader:
            return value
        module, function = self.genotype_reader.split(":")
        return getattr(importlib.import_module(module), function)(value)


SPACES = {}


def register(space):
    SPACES[space.name] = space
    return space


register(Space("201", "201-space", "space201.model_search:build", NB201_OPS, (3, 32, 32), 10, 1,
               {"init_channels": 16, "num_cells": 5, "method": "dirichlet"}, benchmark=True))
register(Space("darts", "DARTS-space", "darts_space.model_search:build", DARTS_OPS, (3, 32, 32), 10, 6,
               {"init_channels": 36, "layers": 20, "method": "dirichlet", "derive": "softmax"},
               genotype_reader="darts_space.genotypes:genotype_from_json"))
register(Space("imagenet", "DARTS-space", "darts_space.model_search_imagenet:build", DARTS_OPS, (3, 224, 224), 1000, 6,
               {"init_channels": 48, "layers": 14, "method": "dirichlet", "derive": "softmax"},
               genotype_reader="darts_space.genotypes:genotype_from_json"))
