"""--dataset folder (common/data/folder_data.py, common/data/folder_loaders.py) on CPU: both layouts of
generated PNG and JPEG class folders of odd sizes, the reader's splits and statistics, the four
scripts end to end, the one-line errors, and the switch to streaming from disk."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.data import datasets, folder_data, folder_loaders
from common.errors import UserError
from darts_space import train as darts_train
from darts_space import train_search as darts_search
from script_checks import expect_one_line_error, results
from space201 import train_search as search201
from space201 import train_search_progressive as search201_progressive

CLASSES = ["cat", "dog", "bird"]  # label order: bird, cat, dog
ODD_SIZES = ((37, 29), (50, 41))  # (width, height)
SEARCH_201 = ["--epochs", "1", "--init_channels", "4", "--num_cells", "1", "--batch_size", "16", "--device", "cpu"]
SEARCH_DARTS = ["--batch_size", "16", "--init_channels", "8", "--layers", "3", "--ks", "4", "--num_keeps", "7",
                "--train_epochs", "1", "--arch_start_epoch", "0", "--device", "cpu"]
TRAIN_DARTS = ["--init_channels", "4", "--layers", "3", "--batch_size", "16", "--epochs", "1", "--device", "cpu"]


def write_class(folder: Path, label: int, n: int, sizes, seed: int) -> None:
    """n images, PNG and JPEG alternating, of the given sizes in turn, plus files to skip."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) // 2 + 40 * label
        Image.fromarray(pixels).save(folder / f"img{i:02d}.{'png' if i % 2 else 'jpg'}")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"macOS resource fork")


def make_dataset(root: Path, layout: str, per_class: int = 20, val_per_class: int = 5, sizes=ODD_SIZES) -> Path:
    """`single`: root/<class>/*; `split`: root/train/<class>/* and root/val/<class>/*."""
    for label, name in enumerate(CLASSES):
        if layout == "single":
            write_class(root / name, label, per_class, sizes, seed=label)
        else:
            write_class(root / "train" / name, label, per_class, sizes, seed=label)
            write_class(root / "val" / name, label, val_per_class, sizes, seed=10 + label)
    return root


@pytest.fixture
def single(tmp_path):
    return make_dataset(tmp_path / "single", "single")


@pytest.fixture
def split(tmp_path):
    return make_dataset(tmp_path / "split", "split")


def decoded(path, size):
    with Image.open(path) as image:
        return np.array(image.convert("RGB").resize((size, size), Image.BILINEAR))


# ---------------------------------------------------------------- the reader


def test_single_layout_holds_out_a_stratified_test_part_and_shuffles_the_training_order(single):
    splits = folder_data.scan(single)
    assert splits.classes == ["bird", "cat", "dog"] and splits.test_split == "held out"
    assert len(splits.train) == 48 and len(splits.test) == 12  # 4 of each class's 20 held out
    assert [label for _, label in splits.test] == [0] * 4 + [1] * 4 + [2] * 4
    assert not {p for p, _ in splits.train} & {p for p, _ in splits.test}
    assert all(Path(p).suffix in (".png", ".jpg") for p, _ in splits.train + splits.test)  # .txt, hidden skipped
    assert folder_data.scan(single) == splits  # deterministic
    weight_half, arch_half = datasets.search_split(len(splits.train), 0.5)
    for half in (weight_half, arch_half):  # the shuffled order puts every class in both halves
        assert {splits.train[i][1] for i in half} == {0, 1, 2}

    train = datasets.load_dataset("folder", single, train=True, image_size=32)
    assert train.images.shape == (48, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.num_classes == 3 and train.labels.tolist() == [label for _, label in splits.train]
    assert train.pad == 4
    pixels = np.stack([decoded(p, 32) for p, _ in splits.train]).astype(np.float64) / 255
    assert torch.equal(train.images[5], torch.from_numpy(decoded(splits.train[5][0], 32)).permute(2, 0, 1))
    assert train.mean == pytest.approx(tuple(pixels.mean(axis=(0, 1, 2))), abs=1e-9)
    assert train.std == pytest.approx(tuple(pixels.std(axis=(0, 1, 2))), abs=1e-9)

    test = datasets.load_dataset("folder", single, train=False, image_size=32)
    assert len(test) == 12 and test.num_classes == 3
    assert (test.mean, test.std) == (train.mean, train.std)  # the training images' statistics
    assert len(folder_data.scan(single, test_portion=0.5).test) == 30


def test_train_val_layout_reads_val_as_the_test_split(split):
    splits = folder_data.scan(split)
    assert splits.test_split == "val" and len(splits.train) == 60 and len(splits.test) == 15
    assert all("/val/" in p for p, _ in splits.test) and all("/train/" in p for p, _ in splits.train)
    test = folder_data.read_folder(split, train=False, image_size=16)
    assert test.images.shape == (15, 3, 16, 16) and test.pad == 2
    assert test.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5


def test_images_of_one_size_keep_it_without_image_size(tmp_path):
    root = make_dataset(tmp_path / "same", "single", per_class=6, sizes=((24, 20),))
    data = folder_data.read_folder(root)
    assert data.images.shape[1:] == (3, 20, 24) and len(data) == 15


# ---------------------------------------------------------------- the scripts


def test_201_search_on_a_single_folder_records_its_classes(single, tmp_path):
    out = tmp_path / "run"
    genotype = search201.main(["--dataset", "folder", "--data", str(single), "--image_size", "32", *SEARCH_201,
                               "--output_dir", str(out)])
    data = results(out)
    assert data["finished"] and data["genotype"] == genotype
    assert data["args"]["data"] == str(single) and data["args"]["image_size"] == 32
    record = data["data"]
    assert record["classes"] == ["bird", "cat", "dog"] and record["num_classes"] == 3
    assert record["image_size"] == [32, 32] and record["train_images"] == 48 and record["in_memory"]
    assert "folder data" in (out / "log.txt").read_text() and "in memory" in (out / "log.txt").read_text()
    head = torch.load(out / "checkpoint.pt", weights_only=True)["model"]["classifier.weight"]
    assert head.shape[0] == 3


def test_201_progressive_and_darts_searches_on_a_train_val_folder(split, tmp_path):
    search201_progressive.main(["--dataset", "folder", "--data", str(split), "--image_size", "32",
                                "--init_channels", "4", "--num_cells", "1", "--batch_size", "16",
                                "--train_epochs", "1", "--ks", "1", "--num_keeps", "5", "--arch_start_epoch", "0",
                                "--device", "cpu", "--output_dir", str(tmp_path / "progressive")])
    assert results(tmp_path / "progressive")["data"]["num_classes"] == 3
    darts_search.main(["--dataset", "folder", "--data", str(split), "--image_size", "32", *SEARCH_DARTS,
                       "--output_dir", str(tmp_path / "darts")])
    data = results(tmp_path / "darts")
    assert data["finished"] and data["data"]["num_classes"] == 3 and data["data"]["train_images"] == 60


def test_darts_train_on_a_folder_with_auxiliary_and_cutout(split, tmp_path):
    out = tmp_path / "train"
    darts_train.main(["--dataset", "folder", "--data", str(split), "--image_size", "32", *TRAIN_DARTS,
                      "--auxiliary", "--cutout", "--output_dir", str(out)])
    data = results(out)
    assert data["finished"] and 0 <= data["final_test_acc"] <= 100
    assert data["data"]["test_split"] == "val" and data["data"]["test_images"] == 15
    assert data["data"]["num_classes"] == 3
    model = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    assert model["classifier.weight"].shape[0] == 3 and model["auxiliary_head.classifier.weight"].shape[0] == 3


# ---------------------------------------------------------------- errors


def test_script_errors_are_one_line(single, tmp_path, capsys):
    base = [*SEARCH_201, "--output_dir", str(tmp_path / "run")]
    err = expect_one_line_error(capsys, search201.main, ["--dataset", "folder", "--data", str(tmp_path / "nope"),
                                                         *base])
    assert "does not exist" in err and str(tmp_path / "nope") in err and "--data DIR" in err
    err = expect_one_line_error(capsys, search201.main, ["--dataset", "folder", "--data", str(single), *base])
    assert "images have different sizes" in err and "37x29" in err and "50x41" in err and "--image_size N" in err
    err = expect_one_line_error(capsys, search201.main, ["--dataset", "synthetic", "--image_size", "32", *base])
    assert "--dataset folder only" in err
    err = expect_one_line_error(capsys, darts_train.main, ["--dataset", "folder", "--data", str(single),
                                                           "--image_size", "64", "--auxiliary", *TRAIN_DARTS,
                                                           "--output_dir", str(tmp_path / "train")])
    assert "--auxiliary" in err and "64x64" in err and "--image_size 32" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "train").exists()


def one_line_user_error(root, *needles, **options):
    with pytest.raises(UserError) as info:
        folder_data.read_folder(root, **options)
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)


def test_reader_errors_are_one_line_and_name_the_path(single, tmp_path):
    empty = make_dataset(tmp_path / "empty", "single", per_class=3)
    for path in (empty / "dog").iterdir():
        path.unlink()
    one_line_user_error(empty, str(empty / "dog"), "holds no images")
    one = make_dataset(tmp_path / "one", "single", per_class=3)
    for name in ("cat", "dog"):
        for path in (one / name).iterdir():
            path.unlink()
        (one / name).rmdir()
    one_line_user_error(one, "one class folder (bird)", "at least 2")
    (single / "cat" / "img03.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    one_line_user_error(single, "cannot be read", str(single / "cat" / "img03.png"), image_size=32)
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    one_line_user_error(nothing, str(nothing), "holds no images")
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.new("RGB", (8, 8)).save(loose / "a.png")
    one_line_user_error(loose, "holds images but no class folders")
    other = make_dataset(tmp_path / "other", "split", per_class=3, val_per_class=2)
    (other / "val" / "dog").rename(other / "val" / "wolf")
    one_line_user_error(other, "different class folders", "only in val: wolf", "only in train: dog", train=False)


# ---------------------------------------------------------------- streaming


def test_a_set_over_the_budget_streams_from_disk_with_the_same_evaluation_batches(single, tmp_path, monkeypatch):
    argv = ["--dataset", "folder", "--data", str(single), "--image_size", "32", *SEARCH_201]
    args = search201.build_parser().parse_args(argv)
    memory = folder_loaders.folder_search_loaders(args, torch.device("cpu"))
    monkeypatch.setattr(folder_loaders, "MEMORY_BUDGET", 100_000)  # 48 images of 32x32 need 147 kB
    monkeypatch.setattr(folder_loaders, "STREAM_WORKERS", 1)
    streamed = folder_loaders.folder_search_loaders(args, torch.device("cpu"))
    assert "more than the 0.1 MB budget: streaming from disk with 1 workers" in streamed.notes[0]
    assert not streamed.data["in_memory"] and streamed.data["mean"] == pytest.approx(memory.data["mean"])
    for (x, y), (x_ref, y_ref) in zip(streamed.evaluation, memory.evaluation, strict=True):
        assert torch.equal(y, y_ref) and torch.allclose(x, x_ref, atol=1e-5)
    x, y = next(iter(streamed.train))
    assert x.shape == (16, 3, 32, 32) and len(streamed.train) == 2 and len(streamed.arch) == 1

    out = tmp_path / "run"
    search201.main([*argv, "--output_dir", str(out)])
    assert results(out)["finished"] and not results(out)["data"]["in_memory"]
    assert "streaming from disk" in (out / "log.txt").read_text()


def test_a_streamed_training_reads_the_held_out_test_split(single, monkeypatch):
    args = darts_train.build_parser().parse_args(["--dataset", "folder", "--data", str(single), "--image_size",
                                                  "32", "--cutout", *TRAIN_DARTS])
    memory = folder_loaders.folder_training_loaders(args, torch.device("cpu"))
    monkeypatch.setattr(folder_loaders, "MEMORY_BUDGET", 0)
    monkeypatch.setattr(folder_loaders, "STREAM_WORKERS", 1)
    streamed = folder_loaders.folder_training_loaders(args, torch.device("cpu"))
    assert streamed.num_classes == 3 and streamed.data["test_images"] == 12
    assert streamed.train.num_images == 48 and len(streamed.train) == 3
    for (x, y), (x_ref, y_ref) in zip(streamed.evaluation, memory.evaluation, strict=True):
        assert torch.equal(y, y_ref) and torch.allclose(x, x_ref, atol=1e-5)
    x, _ = next(iter(streamed.train))
    assert x.shape == (16, 3, 32, 32) and (x == 0).any()  # cutout


def test_a_linked_folder_that_loops_or_leaves_its_class_is_refused_and_linked_files_are_read(tmp_path):
    root = make_dataset(tmp_path / "links", "single", per_class=4)
    (root / "cat" / "loop").symlink_to("..")  # the dataset root: dog images would be labelled cat
    with pytest.raises(UserError, match=r"cat/loop links to .*outside"):
        folder_data.scan(root)
    (root / "cat" / "loop").unlink()
    (root / "cat" / "sub").mkdir()
    (root / "cat" / "sub" / "back").symlink_to("..")  # the class folder itself: read twice
    with pytest.raises(UserError, match=r"already read \(a loop\)"):
        folder_data.scan(root)
    (root / "cat" / "sub" / "back").unlink()
    outside = tmp_path / "elsewhere.png"
    Image.new("RGB", (37, 29), (1, 2, 3)).save(outside)
    (root / "cat" / "linked.png").symlink_to(outside)  # a linked file (a sampled set of links) is read
    splits = folder_data.scan(root)
    assert sum(path.endswith("linked.png") for path, _ in splits.train + splits.test) == 1


def test_16_bit_grey_images_are_scaled_not_clipped(tmp_path):
    levels = np.array([[0, 257, 32896, 65535]], dtype=np.uint16).repeat(4, axis=0)
    Image.fromarray(levels).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode in folder_data.SIXTEEN_BIT + ("I",)
    pixels = np.array(folder_data.open_image(tmp_path / "grey16.png"))
    assert pixels.dtype == np.uint8 and pixels[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (pixels[..., 0] == pixels[..., 2]).all()
    Image.fromarray(np.full((4, 4), 1e6, dtype=np.float32)).save(tmp_path / "float.tiff")
    with pytest.raises(UserError, match="floating-point pixels"):
        folder_data.open_image(tmp_path / "float.tiff")
