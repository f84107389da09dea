"""The authors' commands run: --gpu, --arch_weight_decay and --cutout_prob with their meaning,
every flag's default in --help; and the silent traps say so in the log (alpha never updated)."""
import argparse
import importlib

import pytest
import torch

from common.run.authors_flags import translate
from common.data.device_loader import DeviceLoader
from common.errors import UserError
from common.data.folder_loaders import Cutout
from common.nas.progressive import Stage, arch_warnings
from common.run.resume import explicit_flags
from script_checks import expect_one_line_error, results
from space201 import train_search

SCRIPTS = ["space201.train_search", "space201.train_search_progressive", "space201.train", "darts_space.train_search",
           "darts_space.train_search_imagenet", "darts_space.train", "darts_space.train_imagenet"]
TINY = ["--dataset", "synthetic", "--data_limit", "128", "--batch_size", "32", "--init_channels", "4",
        "--num_cells", "1", "--device", "cpu", "--report_freq", "100"]


def parsed(argv, script=train_search):
    args = script.build_parser().parse_args(argv)
    return translate(args, explicit_flags(script.build_parser, argv))


def test_gpu_is_device_cuda_n():
    args, given = parsed(["--gpu", "1"])
    assert args.device == "cuda:1" and "device" in given and "gpu" not in vars(args) and "gpu" not in given
    args, _ = parsed([])
    assert args.device == "auto" and "gpu" not in vars(args)  # the alias never reaches the run's flags
    assert parsed(["--gpu", "0", "--device", "cuda:0"])[0].device == "cuda:0"  # the same thing twice
    with pytest.raises(UserError, match="--gpu 1 means --device cuda:1, but --device cpu"):
        parsed(["--gpu", "1", "--device", "cpu"])


def test_arch_weight_decay_is_the_l2_anchor_scale(tmp_path, capsys):
    args, given = parsed(["--arch_weight_decay", "0.01"])
    assert args.reg_scale == 0.01 and args.reg_type == "l2" and "reg_scale" in given
    train_search.main([*TINY, "--epochs", "1", "--arch_weight_decay", "0.005", "--output_dir", str(tmp_path / "run")])
    saved = results(tmp_path / "run")["args"]
    assert saved["reg_scale"] == 0.005 and "arch_weight_decay" not in saved
    base = [*TINY, "--epochs", "1", "--output_dir", str(tmp_path / "other")]
    assert "--reg_type kl" in expect_one_line_error(capsys, train_search.main,
                                                    [*base, "--arch_weight_decay", "0.01", "--reg_type", "kl"])
    assert "--reg_scale 0.002 is given too" in expect_one_line_error(
        capsys, train_search.main, [*base, "--arch_weight_decay", "0.01", "--reg_scale", "0.002"])


def loader(prob, count=200):
    images = torch.full((count, 3, 16, 16), 255, dtype=torch.uint8)
    return DeviceLoader(images, torch.zeros(count, dtype=torch.long), batch_size=count, mean=(0.0,) * 3,
                        std=(1.0,) * 3, device="cpu", cutout=8, seed=0, cutout_prob=prob)


def cut_images(batch):
    return int((batch == 0).flatten(1).any(1).sum())


def test_cutout_prob_is_the_chance_an_image_is_cut_out():
    idx = torch.arange(200)
    assert cut_images(loader(1.0).batch(idx)) == 200  # the authors' default: every image
    assert cut_images(loader(0.0).batch(idx)) == 0
    half = cut_images(loader(0.5).batch(idx))
    assert 70 <= half <= 130  # Binomial(200, 0.5) at this seed; 70..130 is beyond 4 standard deviations
    # the default draws nothing more than before: the squares of the first images are the same
    assert torch.equal(loader(1.0).batch(idx[:4]), loader(1.0).batch(idx[:4]))
    image = torch.ones(3, 16, 16)
    assert torch.equal(Cutout(8, prob=0.0)(image.clone()), image)
    assert (Cutout(8, prob=1.0)(image.clone()) == 0).any()


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_every_flags_default(script):
    parser = importlib.import_module(script).build_parser()
    text = parser.format_help()
    for action in parser._actions:
        if action.option_strings and action.default is not argparse.SUPPRESS:
            assert action.help, f"{action.option_strings[0]} has no help text, so --help hides its default"
    for flag in ("--seed", "--weight_decay", "--momentum", "--dataset"):
        assert flag in text
    assert text.count("(default:") >= sum(1 for a in parser._actions if a.option_strings and a.help
                                           and a.default is not argparse.SUPPRESS)


def test_arch_warnings_name_the_stages_without_architecture_updates():
    assert arch_warnings((Stage(10, arch_start=0),), 0) == []
    (line,) = arch_warnings((Stage(2, arch_start=15),), 15)
    assert line.startswith("warning: --arch_start_epoch 15") and "alpha will never be updated" in line
    (line,) = arch_warnings((Stage(1, arch_start=1), Stage(3, arch_start=1)), 1)
    assert line == "warning: stage 1 has 1 epochs, not more than --arch_start_epoch 1: alpha is not updated in it"


def test_a_search_that_never_updates_alpha_says_so(tmp_path):
    train_search.main([*TINY, "--epochs", "2", "--method", "pcdarts", "--output_dir", str(tmp_path)])  # starts at 15
    log, data = (tmp_path / "log.txt").read_text(), results(tmp_path)
    assert "warning: --arch_start_epoch 15 is not before the last epoch of any stage" in log
    assert "warning: alpha was never updated in this run" in log.split("found architecture")[1]
    assert data["epochs"][0]["arch"]["cell"]["alpha"] == data["epochs"][-1]["arch"]["cell"]["alpha"]
