"""The Gumbel methods where the authors' code decides: GDAS's weights of ops not sampled in a
step (`--unsampled_ops`), the temperature of the first epoch (`--first_epoch_tau`), and what
their code did with `--reg_type kl` under GDAS (README's table, common/nas/unsampled_ops.py)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from authors_code import needs_authors, run_authors
from common.nas.architect import Architect
from common.nas.mixing import annealed_tau
from common.nas.search import TauSchedule, search_step
from script_checks import results
from space201 import train_search
from space201.model_search import Network


def batches(count):
    g = torch.Generator().manual_seed(1)

    def batch():
        return torch.randn(8, 3, 16, 16, generator=g, dtype=torch.float64), torch.randint(0, 10, (8,), generator=g)

    return [(batch(), batch()) for _ in range(count)]


def authors_loop(model, data):
    """Their train(), written with torch's own optimizers as their PyTorch ran it: zero_grad()
    zeroed the gradients and kept them (set_to_none=False), and their architect's backward
    reached the weights too (first order, l2 anchor, the weights' gradient clipped)."""
    arch_optimizer = torch.optim.Adam(model.arch_parameters(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    optimizer = torch.optim.SGD(model.weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    for (x, y), (x_arch, y_arch) in data:
        model.train()
        arch_optimizer.zero_grad(set_to_none=False)
        model.loss(x_arch, y_arch).backward()
        arch_optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        F.cross_entropy(model(x), y).backward()
        nn.utils.clip_grad_norm_(model.weight_parameters(), 5.0)
        optimizer.step()


def our_steps(model, data, unsampled_ops):
    architect = Architect(model, lr=3e-4, reg_scale=1e-3)
    optimizer = torch.optim.SGD(model.weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    for batch, arch_batch in data:
        search_step(model, architect, optimizer, batch, arch_batch, update_arch=True, grad_clip=5.0,
                    unsampled_ops=unsampled_ops)
    return optimizer


@pytest.fixture
def supernet():
    torch.manual_seed(0)
    return Network(8, 1, 10, "gdas", 1).double()  # 57 weight tensors


def after(model, run, seed=5):
    torch.manual_seed(seed)  # the same Gumbel draws for every run
    model = copy.deepcopy(model)
    run(model)
    return model.state_dict()


def test_gdas_steps_every_op_sampled_before_as_the_authors_loop_did(supernet):
    data = batches(5)
    theirs = after(supernet, lambda m: authors_loop(m, data))
    ours = after(supernet, lambda m: our_steps(m, data, "step"))
    frozen = after(supernet, lambda m: our_steps(m, data, None))
    for name, tensor in theirs.items():
        assert torch.equal(ours[name], tensor), name
    assert any(not torch.equal(frozen[name], tensor) for name, tensor in theirs.items())


def test_freeze_leaves_the_ops_not_sampled_in_a_step_alone(supernet):
    data = batches(2)
    torch.manual_seed(5)
    before = [w.detach().clone() for w in supernet.weight_parameters()]
    optimizer = our_steps(supernet, data[:1], None)
    idle = [w.grad is None for w in supernet.weight_parameters()]
    assert 0 < sum(idle) < len(idle)  # 30 of 57 here: GDAS ran one op per edge
    for w, w0, unused in zip(supernet.weight_parameters(), before, idle):
        assert torch.equal(w, w0) == unused
    assert all((w in optimizer.state) != unused for w, unused in zip(supernet.weight_parameters(), idle))


def test_a_resumed_gdas_search_keeps_stepping_the_ops_sampled_before(tmp_path):
    """"Sampled before" is the optimizer's momentum state, which the checkpoint keeps."""
    argv = ["--dataset", "synthetic", "--data_limit", "64", "--batch_size", "16", "--init_channels", "4",
            "--num_cells", "1", "--epochs", "2", "--method", "gdas", "--device", "cpu"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train_search.main([*argv, "--output_dir", str(whole)])
    train_search.main([*argv, "--output_dir", str(parts), "--stop_after_epoch", "1"])
    train_search.main([*argv, "--resume", str(parts)])
    a, b = results(whole), results(parts)
    assert a["args"]["unsampled_ops"] == "step"
    assert [e["arch"] for e in a["epochs"]] == [e["arch"] for e in b["epochs"]]
    assert [e["train_loss"] for e in a["epochs"]] == [e["train_loss"] for e in b["epochs"]]


# --- temperature -----------------------------------------------------------------------------------
def authors_taus(epochs, tau_max, tau_min):
    """Their loop: the network starts at tau 10; after every epoch tau_max steps down by
    (tau_max - tau_min) / epochs and is set."""
    tau, tau_epoch, seen = 10.0, tau_max, []
    for _ in range(epochs):
        seen.append(tau)
        tau_epoch += (tau_min - tau_max) / epochs
        tau = tau_epoch
    return seen


@pytest.mark.parametrize("tau_max", [10.0, 5.0, 20.0])
def test_the_first_epoch_runs_at_tau_10_whatever_tau_max(tau_max):
    schedule = TauSchedule(8, tau_max, 1.0)
    assert [schedule(e) for e in range(8)] == pytest.approx(authors_taus(8, tau_max, 1.0), rel=1e-12)
    assert schedule(0) == 10.0
    straight = TauSchedule(8, tau_max, 1.0, first_epoch_tau=tau_max)  # --first_epoch_tau given tau_max
    assert [straight(e) for e in range(8)] == pytest.approx([annealed_tau(e, 8, tau_max, 1.0, None) for e in range(8)])


def test_a_search_records_the_first_epoch_tau(tmp_path):
    argv = ["--dataset", "synthetic", "--data_limit", "32", "--batch_size", "16", "--init_channels", "4",
            "--num_cells", "1", "--epochs", "2", "--method", "snas", "--tau_max", "5", "--device", "cpu"]
    train_search.main([*argv, "--output_dir", str(tmp_path / "theirs")])
    train_search.main([*argv, "--first_epoch_tau", "5", "--output_dir", str(tmp_path / "line")])
    assert [e["tau"] for e in results(tmp_path / "theirs")["epochs"]] == pytest.approx([10.0, 3.0])
    assert [e["tau"] for e in results(tmp_path / "line")["epochs"]] == pytest.approx([5.0, 3.0])


# --- the KL anchor under their Gumbel methods -------------------------------------------------------
@needs_authors
def test_the_authors_kl_anchor_ran_without_an_anchor_under_gdas_and_asserted_otherwise():
    found = run_authors("201-space", """
        import argparse
        from architect import Architect
        from cell_operations import NAS_BENCH_201
        from search_model import TinyNetwork
        from search_model_gdas import TinyNetworkGDAS
        torch.manual_seed(0)
        x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
        criterion = nn.CrossEntropyLoss()
        gdas = TinyNetworkGDAS(C=4, N=1, max_nodes=4, num_classes=10, criterion=criterion, search_space=NAS_BENCH_201)
        torch.manual_seed(1)
        loss = gdas._loss(x, y).item()
        torch.manual_seed(1)
        plain = criterion(gdas(x), y).item()
        settings = argparse.Namespace(momentum=0.9, weight_decay=3e-4, reg_type="kl", reg_scale=1e-3,
                                      arch_learning_rate=3e-4)
        decay = Architect(gdas, settings).optimizer.param_groups[0]["weight_decay"]
        refused = []
        for species in ("softmax", "gumbel"):
            net = TinyNetwork(C=4, N=1, max_nodes=4, num_classes=10, criterion=criterion,
                              search_space=NAS_BENCH_201, k=1, species=species, reg_type="kl")
            try:
                net._loss(x, y)
            except AssertionError:
                refused.append(species)
        print(json.dumps({"gdas_loss": loss, "plain_loss": plain, "arch_decay": decay, "refused": refused}))
    """)
    assert found["gdas_loss"] == found["plain_loss"]  # GDAS: no KL term in the loss
    assert found["arch_decay"] == 0  # and no weight decay on alpha with --reg_type kl: no anchor at all
    assert found["refused"] == ["softmax", "gumbel"]  # darts and snas: an assertion
