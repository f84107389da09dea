"""scripts/sample_imagenet.py and scripts/imagenet_split.py: the per-class 10% / 2.5% ImageNet search subset."""
import json
import os
from pathlib import Path

import pytest

import imagenet_split
from common.errors import UserError
from imagenet_fixture import make_imagenet
from script_checks import expect_one_line_error, load_script

ROOT = Path(__file__).resolve().parents[1]


sample = load_script("sample_imagenet")

# class -> images: exact rounding (40 -> 4 + 1, 200 -> 20 + 5, 25 -> 3 (2.5 up) + 1 (0.625),
# 12 -> 1 + 1 (the minimum of one), 2 -> 1 + 1).
SIZES = {"n01": 40, "n02": 200, "n03": 25, "n04": 12, "n05": 2}
EXPECTED = {"n01": (4, 1), "n02": (20, 5), "n03": (3, 1), "n04": (1, 1), "n05": (1, 1)}
EXTENSIONS = (".JPEG", ".jpg", ".png", ".Webp", ".tiff")


def write_source(root, sizes=SIZES):
    """SOURCE/<class>/<class>_<i><ext> with a few bytes each (the sampler does not decode)."""
    root = Path(root)
    for name, n in sizes.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            (root / name / f"{name}_{i:03d}{EXTENSIONS[i % len(EXTENSIONS)]}").write_bytes(f"{name}{i}".encode())
    (root / "n01" / "notes.txt").write_text("not an image")
    return root


def snapshot(root):
    """Every path under root with its kind, size and mtime (to show SOURCE is untouched)."""
    out = {}
    for here, dirs, files in os.walk(root):
        for f in dirs + files:
            st = os.lstat(Path(here) / f)
            out[str(Path(here, f).relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def linked(dest, split):
    """{class: {file: link target}} of DEST/<split>."""
    out = {}
    for link in (Path(dest) / split).glob("*/*"):
        assert link.is_symlink()
        out.setdefault(link.parent.name, {})[link.name] = os.readlink(link)
    return out


@pytest.fixture
def source(tmp_path):
    return write_source(tmp_path / "imagenet" / "train")


def test_split_counts_round_and_keep_one_of_each():
    assert [imagenet_split.split_counts(n, 0.1, 0.025) for n in (40, 200, 25, 12, 2, 1300, 732)] == \
        [(4, 1), (20, 5), (3, 1), (1, 1), (1, 1), (130, 33), (73, 18)]
    assert imagenet_split.split_counts(2, 0.75, 0.25) == (1, 1)  # 1.5 -> 2 and 0.5 -> 1 would overlap
    assert imagenet_split.split_counts(10, 0.8, 0.2) == (8, 2)  # the whole class, still disjoint


def test_sample_split_is_disjoint_seeded_and_independent_of_order():
    files = {f"c{k}": [f"img_{i}.JPEG" for i in range(100)] for k in range(4)}
    train, val = imagenet_split.sample_split(files, 0.1, 0.025, seed=3)
    for name, names in files.items():
        assert (len(train[name]), len(val[name])) == (10, 3)
        assert not set(train[name]) & set(val[name])
        assert set(train[name]) | set(val[name]) <= set(names)
    shuffled = {name: list(reversed(names)) for name, names in reversed(list(files.items()))}
    assert imagenet_split.sample_split(shuffled, 0.1, 0.025, seed=3) == (train, val)
    other = imagenet_split.sample_split(files, 0.1, 0.025, seed=4)
    assert other[0] != train and other[1] != val
    assert train["c0"] != train["c1"]  # each class draws its own permutation
    with pytest.raises(UserError, match="more than 1"):
        imagenet_split.sample_split(files, 0.9, 0.2, seed=0)


def test_symlink_mode_writes_the_split_and_leaves_source_alone(source, tmp_path, capsys):
    before = snapshot(source)
    dest = tmp_path / "search"
    sample.main([str(source), str(dest)])
    out = capsys.readouterr().out
    assert snapshot(source) == before
    assert "train: 29 images" in out and "1-20 per class" in out and "val: 9 images" in out and str(dest) in out
    train, val = linked(dest, "train"), linked(dest, "val")
    assert sorted(train) == sorted(val) == sorted(SIZES)
    for name, (n_train, n_val) in EXPECTED.items():
        assert (len(train[name]), len(val[name])) == (n_train, n_val)
        assert not set(train[name]) & set(val[name])
        for split in (train, val):
            for f, target in split[name].items():
                assert target == str(source.resolve() / name / f) and Path(target).is_file()
                assert (dest / ("train" if split is train else "val") / name / f).read_bytes() == \
                    (source / name / f).read_bytes()
    assert not any(f.endswith(".txt") for split in (train, val) for files in split.values() for f in files)
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["source"] == str(source.resolve()) and manifest["mode"] == "symlink"
    assert manifest["classes"] == sorted(SIZES) and manifest["seed"] == 0 and manifest["version"] == 1
    assert (manifest["weight_fraction"], manifest["arch_fraction"]) == (0.1, 0.025)
    assert manifest["totals"] == {"train": 29, "val": 9}
    assert manifest["counts"]["train"] == {k: v[0] for k, v in EXPECTED.items()}
    assert manifest["counts"]["val"] == {k: v[1] for k, v in EXPECTED.items()}


def test_same_seed_same_sample_other_seed_other(source, tmp_path, capsys):
    sample.main([str(source), str(tmp_path / "a")])
    sample.main([str(source), str(tmp_path / "b")])
    sample.main([str(source), str(tmp_path / "c"), "--seed", "1"])
    capsys.readouterr()
    a, b, c = ({s: linked(tmp_path / d, s) for s in ("train", "val")} for d in "abc")
    assert a == b
    assert a != c and a["train"]["n02"] != c["train"]["n02"]


def test_rerun_is_a_no_op_and_other_settings_need_force(source, tmp_path, capsys):
    dest = tmp_path / "search"
    sample.main([str(source), str(dest)])
    capsys.readouterr()
    marker = dest / "train" / "n01"
    stamp = (dest / "manifest.json").stat().st_mtime_ns, marker.stat().st_mtime_ns
    sample.main([str(source), str(dest)])
    assert "already sampled" in capsys.readouterr().out
    assert ((dest / "manifest.json").stat().st_mtime_ns, marker.stat().st_mtime_ns) == stamp

    err = expect_one_line_error(capsys, sample.main, [str(source), str(dest), "--seed", "5"])
    assert "other settings" in err and "seed" in err and "--force" in err
    assert json.loads((dest / "manifest.json").read_text())["seed"] == 0
    (dest / "notes.md").write_text("keep me")
    sample.main([str(source), str(dest), "--seed", "5", "--force"])
    assert "already" not in capsys.readouterr().out
    assert json.loads((dest / "manifest.json").read_text())["seed"] == 5
    assert linked(dest, "train") != {}
    assert (dest / "notes.md").read_text() == "keep me"
    # switching to list mode removes the links
    sample.main([str(source), str(dest), "--seed", "5", "--mode", "list", "--force"])
    assert not (dest / "train").exists() and (dest / "train.txt").is_file()


def test_changed_or_unfinished_dest_is_detected(source, tmp_path, capsys):
    dest = tmp_path / "search"
    sample.main([str(source), str(dest)])
    capsys.readouterr()
    next((dest / "val" / "n02").iterdir()).unlink()  # a damaged sample with the same settings
    err = expect_one_line_error(capsys, sample.main, [str(source), str(dest)])
    assert "does not match" in err and "--force" in err
    (dest / "manifest.json").unlink()  # as if interrupted before the manifest
    err = expect_one_line_error(capsys, sample.main, [str(source), str(dest)])
    assert "unfinished" in err and "--force" in err
    sample.main([str(source), str(dest), "--force"])
    assert len(linked(dest, "val")["n02"]) == 5
    assert json.loads((dest / "manifest.json").read_text())["totals"]["val"] == 9


def test_force_never_deletes_real_files(source, tmp_path, capsys):
    dest = tmp_path / "search"
    (dest / "train" / "n01").mkdir(parents=True)
    (dest / "train" / "n01" / "real.JPEG").write_bytes(b"data")
    err = expect_one_line_error(capsys, sample.main, [str(source), str(dest)])
    assert "unfinished" in err
    err = expect_one_line_error(capsys, sample.main, [str(source), str(dest), "--force"])
    assert "regular file" in err
    assert (dest / "train" / "n01" / "real.JPEG").read_bytes() == b"data"


def test_dest_with_other_files_is_refused(source, tmp_path, capsys):
    dest = tmp_path / "search"
    dest.mkdir()
    (dest / "mine.txt").write_text("x")
    err = expect_one_line_error(capsys, sample.main, [str(source), str(dest)])
    assert "other files" in err and "mine.txt" in err
    sample.main([str(source), str(dest), "--force"])
    assert (dest / "manifest.json").is_file() and (dest / "mine.txt").read_text() == "x"


def test_list_mode_files_parse_and_match(source, tmp_path, capsys):
    before = snapshot(source)
    dest = tmp_path / "lists"
    manifest = sample.main([str(source), str(dest), "--mode", "list", "--seed", "2"])
    capsys.readouterr()
    assert snapshot(source) == before
    assert not (dest / "train").exists() and not (dest / "val").exists()
    classes = sorted(SIZES)
    rows = {}
    for split in ("train", "val"):
        rows[split] = {}
        for line in (dest / f"{split}.txt").read_text().splitlines():
            rel, index = line.split("\t")
            name = rel.split("/")[0]
            assert classes[int(index)] == name and (source / rel).is_file()
            rows[split].setdefault(name, []).append(rel.split("/", 1)[1])
    assert manifest["mode"] == "list" and json.loads((dest / "manifest.json").read_text()) == manifest
    for name, (n_train, n_val) in EXPECTED.items():
        assert (len(rows["train"][name]), len(rows["val"][name])) == (n_train, n_val)
        assert not set(rows["train"][name]) & set(rows["val"][name])
    # the same selection as symlink mode with the same seed
    sample.main([str(source), str(tmp_path / "links"), "--seed", "2"])
    assert {name: sorted(files) for name, files in linked(tmp_path / "links", "train").items()} == \
        {name: sorted(files) for name, files in rows["train"].items()}
    sample.main([str(source), str(dest), "--mode", "list", "--seed", "2"])
    assert "already sampled" in capsys.readouterr().out


def test_fixture_jpegs_and_search_loader_layout(tmp_path, capsys):
    root = make_imagenet(tmp_path / "in", train_per_class=40, splits=("train",))
    dest = tmp_path / "search"
    sample.main([str(root / "train"), str(dest)])
    assert "train: 12 images" in capsys.readouterr().out
    from torchvision.datasets import ImageFolder
    train, val = ImageFolder(str(dest / "train")), ImageFolder(str(dest / "val"))
    assert train.classes == val.classes == sorted(os.listdir(root / "train"))
    assert len(train) == 12 and len(val) == 3
    assert train[0][0].size == (40, 40)  # the links decode as the source images


def test_wrong_source_layouts_are_one_line_errors(tmp_path, capsys):
    dest = str(tmp_path / "out")
    err = expect_one_line_error(capsys, sample.main, [str(tmp_path / "missing"), dest])
    assert "does not exist" in err and "<class>" in err
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.JPEG").write_bytes(b"x")
    (flat / "n01").mkdir()
    err = expect_one_line_error(capsys, sample.main, [str(flat), dest])
    assert "images directly" in err and "a.JPEG" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no class sub-folders" in expect_one_line_error(capsys, sample.main, [str(empty), dest])
    (empty / "n01").mkdir()
    (empty / "n01" / "readme.txt").write_text("x")
    (empty / "n02").mkdir()
    (empty / "n02" / "a.jpg").write_bytes(b"x")
    (empty / "n02" / "b.jpg").write_bytes(b"x")
    err = expect_one_line_error(capsys, sample.main, [str(empty), dest])
    assert "hold no images" in err and "n01" in err and "n02" not in err
    root = make_imagenet(tmp_path / "root", train_per_class=2, val_per_class=2)
    err = expect_one_line_error(capsys, sample.main, [str(root), dest])
    assert "pass" in err and str((root / "train").resolve()) in err
    assert not Path(dest).exists()


def test_bad_arguments_are_one_line_errors(source, tmp_path, capsys):
    dest = str(tmp_path / "out")
    assert "--weight_fraction" in expect_one_line_error(capsys, sample.main,
                                                        [str(source), dest, "--weight_fraction", "1.5"])
    assert "--arch_fraction" in expect_one_line_error(capsys, sample.main, [str(source), dest, "--arch_fraction", "0"])
    assert "more than 1" in expect_one_line_error(capsys, sample.main,
                                                  [str(source), dest, "--weight_fraction", "0.8",
                                                   "--arch_fraction", "0.3"])
    assert "invalid choice" in expect_one_line_error(capsys, sample.main, [str(source), dest, "--mode", "copy"])
    inside = str(source / "n01" / "sample")
    assert "inside SOURCE" in expect_one_line_error(capsys, sample.main, [str(source), inside])
    assert "inside DEST" in expect_one_line_error(capsys, sample.main, [str(source), str(source.parent)])
    assert not Path(dest).exists() and not Path(inside).exists()
