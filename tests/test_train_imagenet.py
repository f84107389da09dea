"""DARTS-space/train_imagenet.py end to end on CPU: a tiny class-folder ImageNet of real JPEGs,
a tiny NetworkImageNet (224x224 input), workers 0 and 2, the warm-up + decay schedule, exact
resume, and bad input as one line with exit status 2. (The 2-process gloo run belongs to the
DistributedDataParallel work.)"""

import numpy as np
import pytest
import torch

from common.errors import UserError
from common.data.imagenet_loader import streamed_training_loaders
from darts_space import train_imagenet
from common.run.schedule import imagenet_training_lr, warmup_epochs_for
from imagenet_fixture import make_imagenet
from script_checks import expect_one_line_error, results

TINY = ["--init_channels", "8", "--layers", "3", "--batch_size", "4", "--epochs", "1",
        "--device", "cpu", "--report_freq", "1", "--auxiliary"]


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    return make_imagenet(tmp_path_factory.mktemp("imagenet"))


def splits(loaders):
    return loaders.train, loaders.evaluation, loaders.num_classes


def one_line_error(capsys, argv):
    return expect_one_line_error(capsys, train_imagenet.main, argv)


def lr_factor(epoch, *, epochs, batch_size, scheduler="linear"):
    """train_imagenet.py's lr of `epoch` as a multiple of the base rate (5 warm-up epochs above batch 256)."""
    return imagenet_training_lr(epoch, lr=1.0, epochs=epochs, decay=scheduler,
                                warmup_epochs=warmup_epochs_for(batch_size, 5))


def test_linear_schedule_with_warmup_batch_768():
    f = [lr_factor(e, epochs=250, batch_size=768) for e in range(250)]
    assert f[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert f[5] == pytest.approx(240 / 245)  # PC-DARTS adjust_lr: (E - 5 - e) / (E - 5)
    assert f[244] == pytest.approx(1 / 245)
    assert f[245] == pytest.approx(5 / (245 * 5))  # the last 5 epochs: a smaller slope
    assert f[249] == pytest.approx(1 / (245 * 5))
    assert all(a >= b for a, b in zip(f[4:], f[5:])) and min(f) > 0


def test_schedule_without_warmup_batch_256_and_cosine():
    f = [lr_factor(e, epochs=250, batch_size=256) for e in range(6)]
    assert f == pytest.approx([1.0, 244 / 245, 243 / 245, 242 / 245, 241 / 245, 240 / 245])
    cos = [lr_factor(e, epochs=250, scheduler="cosine_unshifted", batch_size=256) for e in (0, 125)]
    assert cos == pytest.approx([1.0, 0.5])
    warm = [lr_factor(e, epochs=250, scheduler="cosine_unshifted", batch_size=512) for e in (0, 4, 5)]
    assert warm[:2] == pytest.approx([0.2, 1.0]) and warm[2] == pytest.approx(0.5 * (1 + np.cos(np.pi * 5 / 250)))
    assert [lr_factor(e, epochs=2, batch_size=4) for e in (0, 1)] == pytest.approx([1.0, 0.5])


def test_scheduler_gives_the_lr_per_epoch():
    args = train_imagenet.build_parser().parse_args(["--epochs", "10", "--batch_size", "768"])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=args.learning_rate)
    scheduler = train_imagenet.schedule(args, optimizer)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:5] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert lrs[5:] == pytest.approx([0.5 * f for f in (5 / 25, 4 / 25, 3 / 25, 2 / 25, 1 / 25)])


def test_defaults_are_the_authors():
    a = train_imagenet.build_parser().parse_args([])
    assert (a.epochs, a.batch_size, a.learning_rate, a.weight_decay, a.label_smooth) == (250, 768, 0.5, 3e-5, 0.1)
    assert (a.init_channels, a.layers, a.auxiliary_weight, a.drop_path_prob) == (48, 14, 0.4, 0.0)
    assert (a.lr_scheduler, a.warmup_epochs, a.arch, a.grad_clip, a.momentum) == ("linear", 5, "DrNAS_imagenet", 5.0, 0.9)
    assert a.data.endswith("imagenet")


def test_loaders_batches_and_replay(imagenet):
    train, val, num_classes = splits(streamed_training_loaders(imagenet, 4, 0, torch.device("cpu"), seed=3))
    assert num_classes == 3 and len(train) == 3 and len(val) == 2 and train.batch_size == 4
    x, y = next(iter(train))
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32 and y.dtype == torch.long
    vx, vy = next(iter(val))
    assert vy.tolist() == [0, 0, 1, 1]  # file order, no shuffle
    state = train.state_dict()
    first = [(bx.clone(), by.clone()) for bx, by in train]
    global_rng = torch.get_rng_state()
    train.load_state_dict(state)
    again = list(train)
    assert torch.equal(global_rng, torch.get_rng_state())  # augmentation leaves the global RNG alone
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(first, again))
    nxt = list(train)  # a new epoch: a new order or new augmentation
    assert not all(torch.equal(a, c) for (a, _), (c, _) in zip(first, nxt))
    small, _, _ = splits(streamed_training_loaders(imagenet, 3, 0, torch.device("cpu"), seed=3, limit=3))
    assert sorted(int(l) for _, ys in small for l in ys) == [0, 1, 2]  # evenly spread: every class


def test_batches_do_not_depend_on_workers(imagenet):
    def epochs(workers):
        train, _, _ = splits(streamed_training_loaders(imagenet, 4, workers, torch.device("cpu"), seed=5))
        return [[(x, y) for x, y in train] for _ in range(2)]

    a, b = epochs(0), epochs(2)
    for ea, eb in zip(a, b):
        assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(ea, eb))


def test_run_writes_results_same_with_workers_0_and_2(imagenet, tmp_path):
    runs = {}
    for workers in ("0", "2"):
        out = tmp_path / f"run{workers}"
        returned = train_imagenet.main([*TINY, "--data", str(imagenet), "--workers", workers,
                                        "--output_dir", str(out)])
        data = results(out)
        assert data["finished"] and data["epochs_done"] == 1 and data["params_m"] > 0
        assert returned["final_test_acc"] == data["final_test_acc"]
        epoch = data["epochs"][0]
        assert 0 <= epoch["test_acc"] <= epoch["test_top5"] <= 100
        assert data["final_test_top5"] == epoch["test_top5"] == 100.0  # 3 classes: top-5 holds them all
        assert epoch["lr"] == pytest.approx(0.5)  # batch 4: no warm-up
        assert data["args"]["label_smooth"] == 0.1 and data["genotype"]
        assert "param size" in (out / "log.txt").read_text()
        state = torch.load(out / "checkpoint.pt", weights_only=True)
        assert state["epoch"] == 1 and "generator" in state["loaders"]["train_loader"]
        runs[workers] = epoch
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):  # same batches, same run
        assert runs["0"][key] == pytest.approx(runs["2"][key], abs=1e-6), key


def test_resume_replays_exactly(imagenet, tmp_path):
    argv = [*TINY, "--data", str(imagenet), "--workers", "0", "--epochs", "2",
            "--batch_size", "6", "--layers", "3", "--init_channels", "4"]
    straight = train_imagenet.main([*argv, "--output_dir", str(tmp_path / "a")])
    train_imagenet.main([*argv, "--output_dir", str(tmp_path / "b"), "--stop_after_epoch", "1"])
    assert results(tmp_path / "b")["epochs_done"] == 1
    resumed = train_imagenet.main([*argv, "--resume", str(tmp_path / "b")])
    for a, b in zip(straight["epochs"], resumed["epochs"]):
        for key in ("lr", "train_loss", "train_acc", "test_loss", "test_acc", "test_top5"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), key


def test_bad_input_is_one_line(imagenet, tmp_path, capsys):
    out = ["--output_dir", str(tmp_path / "out")]
    no_train = make_imagenet(tmp_path / "no_train", splits=("val",))
    err = one_line_error(capsys, [*TINY, *out, "--data", str(no_train), "--workers", "0"])
    assert "no train/ folder" in err and "<root>/train/<class>" in err
    no_val = make_imagenet(tmp_path / "no_val", splits=("train",))
    err = one_line_error(capsys, [*TINY, *out, "--data", str(no_val), "--workers", "0"])
    assert "no val/ folder" in err
    err = one_line_error(capsys, [*TINY, *out, "--data", str(tmp_path / "missing"), "--workers", "0"])
    assert "does not exist" in err
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "val").mkdir()
    err = one_line_error(capsys, [*TINY, *out, "--data", str(empty), "--workers", "0"])
    assert "holds no images" in err
    err = one_line_error(capsys, [*TINY, *out, "--data", str(imagenet), "--arch", "NoSuchNet"])
    assert "NoSuchNet" in err
    err = one_line_error(capsys, [*TINY, *out, "--data", str(imagenet), "--lr_scheduler", "step"])
    assert "step" in err
    assert not (tmp_path / "out").exists()  # errors come before the output folder
    with pytest.raises(UserError):
        streamed_training_loaders(imagenet, 100, 0, torch.device("cpu"), seed=0, limit=1)


def test_two_process_gloo_run(imagenet, tmp_path):
    """The same command under torchrun: ranks share each global batch of 4, rank 0 writes."""
    from test_train_ddp import torchrun

    out = tmp_path / "ddp"
    proc = torchrun([*TINY, "--data", str(imagenet), "--workers", "0", "--output_dir", str(out)],
                    script="train_imagenet.py")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = results(out)
    assert data["finished"] and "test_top5" in data["epochs"][0]
    assert proc.stdout.count("data parallel over 2 processes") == 1
