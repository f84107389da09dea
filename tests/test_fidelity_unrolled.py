"""The authors' second-order step (`--unrolled`) did not run (README's table): their architect
builds the virtual model with `model.new()`, which the NAS-Bench-201 supernet does not have and
which the DARTS-space supernet builds at its default k 4, so that loading the k 6 search's
weights fails at the first architecture step (epoch 10). Ours: tests/test_architect.py."""
from authors_code import needs_authors, run_authors

STEP = """
import argparse
from architect import Architect
torch.manual_seed(0)
settings = argparse.Namespace(momentum=0.9, weight_decay=3e-4, reg_type="l2", reg_scale=1e-3, arch_learning_rate=3e-4)
architect = Architect(net, settings)
optimizer = torch.optim.SGD(weights, 0.025, momentum=0.9)
x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
try:
    architect.step(x, y, x, y, 0.025, optimizer, unrolled=True)
    error = None
except Exception as failure:
    error = f"{type(failure).__name__}: {failure}"
"""


@needs_authors
def test_the_authors_unrolled_step_raises_in_nas_bench_201():
    found = run_authors("201-space", """
        from cell_operations import NAS_BENCH_201
        from search_model import TinyNetwork
        net = TinyNetwork(C=4, N=1, max_nodes=4, num_classes=10, criterion=nn.CrossEntropyLoss(),
                          search_space=NAS_BENCH_201, k=1, species="dirichlet")
        weights = net.get_weights()
    """, STEP, "print(json.dumps(error))\n")
    assert found == "AttributeError: 'TinyNetwork' object has no attribute 'new'"


@needs_authors
def test_the_authors_unrolled_step_fails_in_the_darts_space_at_k_6():
    found = run_authors("DARTS-space", """
        from model_search import Network
        net = Network(12, 10, 5, nn.CrossEntropyLoss(), k=6)  # their search's k
        weights = net.parameters()
    """, STEP, 'print(json.dumps({"error": error, "k_of_new": net.new().k}))\n')
    assert found["k_of_new"] == 4
    assert found["error"].startswith("RuntimeError: Error(s) in loading state_dict")
    assert "size mismatch" in found["error"]
