"""The GPU path's bookkeeping, shown on the CPU: numerics and memory recorded per stage in
results.json, --deterministic, the run's own GPU random state (a resume on a box with fewer
GPUs), Adam's capturable state across resumes, and rank 0's epoch-end work waited for on the
CPU."""
from datetime import timedelta

import pytest
import torch

from common import distributed
from common.run import checkpoint, driver
from common.nas.architect import Architect
from common.device import configure_backends
from script_checks import results
from space201 import train_search_progressive

TINY = ["--dataset", "synthetic", "--data_limit", "128", "--batch_size", "32", "--init_channels", "8",
        "--num_cells", "1", "--train_epochs", "1", "1", "--arch_start_epoch", "0", "--device", "cpu"]


def test_numerics_and_each_stages_memory_are_recorded(tmp_path):
    train_search_progressive.main([*TINY, "--output_dir", str(tmp_path / "run")])
    record = results(tmp_path / "run")
    assert record["numerics"] == {"tf32": False, "deterministic": False, "cudnn_benchmark": False}
    assert record["args"]["tf32"] is False and record["args"]["deterministic"] is False
    assert [stage["stage"] for stage in record["memory_mb_by_stage"]] == [1, 2]
    assert all(stage["rss"] > 0 for stage in record["memory_mb_by_stage"])  # a CPU's figure: peak RSS
    assert all(set(epoch["memory_mb"]) == {"rss"} for epoch in record["epochs"])


def test_deterministic_is_a_recorded_setting(tmp_path):
    try:
        train_search_progressive.main([*TINY, "--deterministic", "--output_dir", str(tmp_path / "run")])
        assert torch.are_deterministic_algorithms_enabled()
        assert results(tmp_path / "run")["numerics"]["deterministic"] is True
    finally:
        configure_backends(torch.device("cpu"))
    assert not torch.are_deterministic_algorithms_enabled()


def test_the_gpu_random_state_is_the_runs_own_device():
    states = [torch.full((16,), i, dtype=torch.uint8) for i in range(4)]
    assert checkpoint.device_rng_state(states[2], 0) is states[2]  # this format: one state
    # a checkpoint of an earlier version held every GPU's state: the entry of this device, or
    # the first where this box has more GPUs than that one had
    assert checkpoint.device_rng_state(states, 3) is states[3]
    assert checkpoint.device_rng_state(states[:1], 3) is states[0]
    if not torch.cuda.is_available():
        assert "cuda" not in checkpoint.rng_state()


def test_a_capturable_adams_state_resumes_in_a_plain_one():
    alpha = torch.nn.Parameter(torch.zeros(3))

    class Model:
        def arch_parameters(self):
            return [alpha]

    architect = Architect(Model(), lr=0.1)
    alpha.grad = torch.ones(3)
    architect.optimizer.step()
    state = architect.state_dict()
    state["param_groups"][0]["capturable"] = True  # as a --cuda_graph run on a GPU saves it
    resumed = Architect(Model(), lr=0.1)
    resumed.load_state_dict(state)
    assert resumed.optimizer.param_groups[0]["capturable"] is False
    assert resumed.optimizer.state[alpha]["step"].device.type == "cpu"
    resumed.optimizer.step()  # a plain Adam step runs on the CPU
    assert float(resumed.optimizer.state[alpha]["step"]) == 2


class FakeDist:
    rank, world_size, is_main, distributed = 0, 2, True, True

    def __init__(self):
        self.waits = 0

    def wait_for_main(self):
        self.waits += 1


def test_every_rank_waits_for_rank_0s_epoch_end_on_the_cpu(monkeypatch, tmp_path):
    """The driver makes the ranks wait in a gloo barrier after rank 0's diagnostics and
    checkpoint, once per epoch; the barrier's group is gloo with a timeout far past NCCL's."""
    import torch.distributed as torch_dist

    dist = FakeDist()
    calls = []
    monkeypatch.setattr(driver, "_train", lambda task, folder, epoch, *a: (1.0, 50.0, 0.0, 1.0))
    monkeypatch.setattr(driver, "save_checkpoint", lambda *a: calls.append("checkpoint"))

    class Task(driver.Task):
        def __init__(self):
            self.epochs, self.steps, self.batch_size = 3, 1, 1
            self.optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], 0.1)
            self.scheduler = type("Schedule", (), {"step": lambda self: None})()
            self.model = torch.nn.Linear(1, 1)

        def checkpoint(self, folder, epoch):
            return {}

    class Folder:
        dir, results, log = tmp_path, {"epochs": []}, __import__("logging").getLogger("test")
        elapsed_before = started = 0.0

        def save_results(self, **extra):
            calls.append("results")

        def scalars(self, *args, **kwargs):
            pass

    driver.drive(Task(), Folder(), dist=dist)
    assert dist.waits == 3 and calls.count("checkpoint") == 3
    barriers = []
    monkeypatch.setattr(torch_dist, "barrier", lambda group=None: barriers.append(group))
    distributed.Dist(0, 2, 0, torch.device("cpu"), cpu_group="gloo group").wait_for_main()
    assert barriers == ["gloo group"]
    assert distributed.MAIN_WORK_TIMEOUT > timedelta(minutes=10)  # NCCL's watchdog


def test_init_distributed_makes_the_gloo_group_with_the_long_timeout(monkeypatch):
    import torch.distributed as torch_dist

    made = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setattr(torch_dist, "init_process_group", lambda **kwargs: None)
    monkeypatch.setattr(torch_dist, "new_group", lambda **kwargs: made.append(kwargs) or "group")
    dist = distributed.init_distributed("cpu")
    assert dist.cpu_group == "group" and made == [{"backend": "gloo", "timeout": distributed.MAIN_WORK_TIMEOUT}]
