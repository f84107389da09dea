"""--cuda_graph (common/nas/cuda_graph.py): when a step is warmed up, captured, replayed or run
eagerly (on the CPU, with the CUDA calls recorded instead of made); the flag's refusals; and
on a GPU, 20 graphed steps equal 20 eager ones."""
import pytest
import torch

from common.nas.architect import Architect
from common.nas.cuda_graph import StepGraph
from common.nas.search import search_step
from script_checks import expect_one_line_error
from space201 import train_search


class RecordingGraph(StepGraph):
    """StepGraph's decisions, with its three CUDA actions recorded instead of made."""

    def __init__(self):
        super().__init__(warmup_steps=2)
        self.actions = []

    def _on_side_stream(self, tensors, fn):
        self.actions.append("warm")
        return fn(*tensors)

    def _capture(self, key, tensors, fn):
        self.actions.append("capture")
        self.graph, self.key, self.captures = object(), key, self.captures + 1
        self.static_inputs, self.fn = [t.clone() for t in tensors], fn

    def _replay(self, tensors):
        self.actions.append("replay")
        return self.fn(*tensors)


def batch(size, width=3):
    return (torch.zeros(size, width), torch.zeros(size, dtype=torch.long))


def test_warm_up_then_capture_then_replay_and_a_partial_batch_runs_eagerly():
    graph, calls = RecordingGraph(), []

    def step(x, y):
        calls.append(len(x))
        return (x.sum(),)

    for size in (8, 8, 8, 8, 3):
        graph(("lr", 0.1), batch(size), step)
    assert graph.actions == ["warm", "warm", "capture", "replay", "replay"]
    assert calls == [8, 8, 8, 8, 3]  # every step is a real one; the partial batch ran eagerly
    graph(("lr", 0.05), batch(8), step)  # a new learning rate: captured again, no new warm-up
    assert graph.actions[-2:] == ["capture", "replay"] and graph.captures == 2


def test_new_inputs_or_a_reset_warm_up_again():
    graph = RecordingGraph()

    def step(*tensors):
        return (tensors[0].sum(),)

    for _ in range(3):
        graph(0.1, batch(8), step)
    graph(0.1, (*batch(8), *batch(8)), step)  # alpha updates start: four inputs, not two
    assert graph.actions == ["warm", "warm", "capture", "replay", "warm"]
    graph.reset()  # a new stage
    graph(0.1, (*batch(8), *batch(8)), step)
    assert graph.actions[-1] == "warm"
    first_partial = RecordingGraph()
    first_partial(0.1, batch(3), step)  # a run resumed at its last, partial batch
    first_partial(0.1, batch(8), step)
    assert first_partial.batch == 8 and first_partial.actions == ["warm", "warm"]


@pytest.mark.parametrize("flags, reason", [
    (["--method", "gdas"], "GDAS"), (["--unrolled"], "--unrolled"), (["--amp"], "--amp"), ([], "on a GPU")])
def test_the_flag_is_refused_in_one_line_where_it_cannot_capture(tmp_path, capsys, flags, reason):
    argv = ["--dataset", "synthetic", "--epochs", "1", "--cuda_graph", "--output_dir", str(tmp_path / "run"), *flags]
    if torch.cuda.is_available() and not flags:
        pytest.skip("a GPU is here: the CPU refusal needs a machine without one")
    err = expect_one_line_error(capsys, train_search.main, argv + ([] if flags else ["--device", "cpu"]))
    assert "--cuda_graph" in err and reason in err
    assert not (tmp_path / "run").exists()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_graphed_steps_equal_eager_steps():
    from common.device import configure_backends
    from space201.model_search import Network

    configure_backends(torch.device("cuda"), deterministic=True)
    alphas = []
    for graph in (None, StepGraph()):
        torch.manual_seed(0)
        model = Network(8, 1, 10, "dirichlet", 2).cuda().to(memory_format=torch.channels_last)
        architect = Architect(model, lr=3e-4, reg_scale=1e-3, capturable=True)
        optimizer = torch.optim.SGD(model.weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
        g = torch.Generator().manual_seed(1)
        data = [(torch.randn(16, 3, 32, 32, generator=g).cuda(), torch.randint(0, 10, (16,), generator=g).cuda())
                for _ in range(3)]

        def step(x, y, ax, ay):
            return search_step(model, architect, optimizer, (x, y), (ax, ay), update_arch=True, grad_clip=5.0)

        for index in range(20):
            tensors = (*data[index % 3], *data[(index + 1) % 3])
            step(*tensors) if graph is None else graph(0.025, tensors, step)
        alphas.append(model.arch["cell"].alpha.detach().clone())
    configure_backends(torch.device("cuda"))
    assert graph.captures == 1
    assert torch.allclose(alphas[0], alphas[1], rtol=1e-4, atol=1e-6), (alphas[0] - alphas[1]).abs().max()
