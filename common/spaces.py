"""The registry of search spaces: one entry per supernet, read by the search scripts,
scripts/benchmark_search.py, scripts/aggregate.py and scripts/plot_search.py.

An entry holds what is known of a space without building anything: its name (recorded as
`space` in every results.json), the folder of its scripts (runs go to
`experiments/<folder>/`), the input shape and class count of its default dataset, the
defaults of its network flags, and where its network builder and its candidate op names live
in the space's own modules ("module:name", imported on first use, so that this module stays
torch-free for the torch-free report scripts: that is why the entries stand here and not in
the space folders). The builder takes `num_classes`, `k` and every network flag by name.

A new space is one entry: `register(Space(...))` (see docs/architecture.md).
"""
import importlib
from dataclasses import dataclass, field
from typing import Mapping

ZERO_OP = "none"  # the candidate op that stands for no edge (NAS-Bench-201's `none`)


def _load(reference):
    """The object a "module:name" reference names (imported on first use: this module stays torch-free)."""
    module, name = reference.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Space:
    name: str
    folder: str
    builder: str  # "module:function"
    ops: str  # "module:name" of the space's own tuple of candidate op names
    input_shape: tuple  # (channels, height, width) of the default dataset
    num_classes: int
    k: int  # partial channels of the first stage, by default
    network_defaults: Mapping = field(default_factory=dict)  # the builder's flags and their defaults
    benchmark: bool = False  # has a tabular benchmark (NAS-Bench-201)
    genotype_reader: str = ""  # "module:function": a genotype as results.json holds it -> the space's own type

    @property
    def op_names(self):
        return tuple(_load(self.ops))

    def network_flags(self, given=()):
        """The builder's flags: `given`'s values where not None, the space's defaults elsewhere
        (for tools that build a space's network without its search script's flags)."""
        given = dict(given)
        return {key: value if given.get(key) is None else given[key] for key, value in self.network_defaults.items()}

    def build(self, flags, *, num_classes, k):
        """The search network; `flags` (a mapping, e.g. a script's vars(args)) gives every network
        flag of the builder (a missing one is an error: its script must declare it)."""
        missing = [key for key in self.network_defaults if key not in flags]
        if missing:
            raise ValueError(f"the {self.name} search network needs the flags {', '.join(missing)}: declare them "
                             "in the search script, or take network_flags() for the space's defaults")
        chosen = {key: flags[key] for key in self.network_defaults}
        return _load(self.builder)(num_classes=num_classes, k=k, **chosen)

    def read_genotype(self, value):
        """A genotype as results.json holds it, in the space's own type (e.g. a DARTS-space
        Genotype); the JSON value itself where the space has no other (a NAS-Bench-201 cell string)."""
        return _load(self.genotype_reader)(value) if self.genotype_reader else value


SPACES = {}


def register(space):
    SPACES[space.name] = space
    return space


register(Space("201", "201-space", "space201.model_search:build", "space201.cell:OPS", (3, 32, 32), 10, 1,
               {"init_channels": 16, "num_cells": 5, "method": "dirichlet"}, benchmark=True))
register(Space("darts", "DARTS-space", "darts_space.model_search:build", "darts_space.operations:PRIMITIVES",
               (3, 32, 32), 10, 6,
               {"init_channels": 36, "layers": 20, "method": "dirichlet", "derive": "softmax"},
               genotype_reader="darts_space.genotypes:genotype_from_json"))
register(Space("imagenet", "DARTS-space", "darts_space.model_search_imagenet:build",
               "darts_space.operations:PRIMITIVES", (3, 224, 224), 1000, 6,
               {"init_channels": 48, "layers": 14, "method": "dirichlet", "derive": "softmax"},
               genotype_reader="darts_space.genotypes:genotype_from_json"))
