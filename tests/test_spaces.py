"""The registry of search spaces holds one fact once: the op names come from each space's own
module, the network defaults are its search scripts' defaults, and a network flag the script
does not declare is an error, not a silent default."""
import pytest

from common.spaces import SPACES, ZERO_OP
from darts_space import operations
from darts_space import train_search as darts_search
from darts_space import train_search_imagenet as imagenet_search
from space201 import cell
from space201 import train_search, train_search_progressive


def test_op_names_are_the_space_modules_own():
    assert SPACES["201"].op_names == tuple(cell.OPS) and SPACES["201"].op_names[0] == ZERO_OP
    assert SPACES["darts"].op_names == SPACES["imagenet"].op_names == tuple(operations.PRIMITIVES)
    assert ZERO_OP not in operations.PRIMITIVES  # the DARTS space searches without `none` (the authors')


@pytest.mark.parametrize("space, script", [("201", train_search), ("201", train_search_progressive),
                                           ("darts", darts_search), ("imagenet", imagenet_search)])
def test_the_registry_defaults_are_the_search_scripts_defaults(space, script):
    defaults = vars(script.build_parser().parse_args([]))
    assert {key: defaults[key] for key in SPACES[space].network_defaults} == dict(SPACES[space].network_defaults)


def test_a_missing_network_flag_is_an_error_and_network_flags_fills_it_on_request():
    space = SPACES["201"]
    with pytest.raises(ValueError, match="num_cells"):
        space.build({"init_channels": 4, "method": "dirichlet"}, num_classes=10, k=1)
    flags = space.network_flags({"init_channels": 4, "num_cells": None, "layers": 3})
    assert flags == {"init_channels": 4, "num_cells": 5, "method": "dirichlet"}
    assert len(space.build(flags, num_classes=10, k=1).layers) == 17  # 3 stages of 5 cells, 2 reductions
