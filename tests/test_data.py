"""Tests of common/data/datasets.py: readers on generated files in the real formats, the real
CIFAR-10 sample (skipped when absent), the synthetic set, the search split and the
device loader's augmentation, coverage and resumability (on CPU)."""
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from common.data import datasets, device_loader, imageset, synthetic
from common.errors import UserError

MINI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-mini"


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _planes(rng, n, side):
    """Random uint8 rows laid out as the files store them: R, G, B planes, row-major."""
    return rng.integers(0, 256, size=(n, 3 * side * side), dtype=np.uint8)


def _assert_one_line_error(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip() == msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def _denormalise(x, mean, std):
    """Loader output back to uint8 pixel values (exact after rounding)."""
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return ((x * s + m) * 255).round().to(torch.int64)


# ---------------------------------------------------------------- readers


def test_cifar10_reader_bytes_keys_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    train_rows, train_labels = [], []
    for i in range(1, 6):  # Python-2 style pickles: bytes keys
        rows = _planes(rng, 3, 32)
        labels = [int(v) for v in rng.integers(0, 10, size=3)]
        _dump(folder / f"data_batch_{i}", {b"data": rows, b"labels": labels, b"batch_label": b"x"})
        train_rows.append(rows)
        train_labels += labels
    test_rows = _planes(rng, 4, 32)
    test_rows[2, 1 * 1024 + 5 * 32 + 7] = 123  # channel G, row 5, column 7 of image 2
    _dump(folder / "test_batch", {b"data": test_rows, b"labels": [9, 0, 3, 1]})

    train = datasets.load_dataset("cifar10", tmp_path, train=True, download=False)
    assert train.images.shape == (15, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64 and train.labels.tolist() == train_labels
    expected = torch.from_numpy(np.concatenate(train_rows)).view(15, 3, 32, 32)
    assert torch.equal(train.images, expected)
    assert train.num_classes == 10 and train.pad == 4 and train.mean == datasets.CIFAR10_MEAN

    test = datasets.load_dataset("cifar10", str(tmp_path), train=False, download=False)
    assert test.labels.tolist() == [9, 0, 3, 1]
    assert test.images[2, 1, 5, 7].item() == 123
    assert test.images[3, 2, 31, 30].item() == test_rows[3, 2 * 1024 + 31 * 32 + 30]


def test_cifar100_reader_str_keys_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    rows = _planes(rng, 6, 32)
    rows[4, 0 * 1024 + 31 * 32 + 0] = 77  # R, bottom-left corner
    fine = [0, 99, 42, 17, 5, 63]
    _dump(folder / "train", {"data": rows, "fine_labels": fine, "coarse_labels": [1] * 6})
    _dump(folder / "test", {"data": rows[:2], "fine_labels": fine[:2], "coarse_labels": [1, 1]})
    train = datasets.load_dataset("cifar100", tmp_path, train=True, download=False)
    assert train.labels.tolist() == fine  # fine, not coarse, labels
    assert train.num_classes == 100 and train.mean == datasets.CIFAR100_MEAN
    assert train.images[4, 0, 31, 0].item() == 77
    assert torch.equal(train.images, torch.from_numpy(rows).view(6, 3, 32, 32))
    assert len(datasets.load_dataset("cifar100", tmp_path, train=False, download=False)) == 2


def test_real_cifar10_mini_sample():
    if not (MINI / "cifar-10-batches-py").is_dir():
        pytest.skip(f"real CIFAR-10 sample not present at {MINI}")
    train = datasets.load_dataset("cifar10", MINI, train=True, download=False)
    test = datasets.load_dataset("cifar10", MINI, train=False, download=False)
    assert train.images.shape == (5085, 3, 32, 32) and len(test) == 1017
    assert train.num_classes == 10
    assert sorted(train.labels.unique().tolist()) == list(range(10))
    # real photos: per-channel means close to the published CIFAR-10 constants
    means = train.images.float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(means, torch.tensor(datasets.CIFAR10_MEAN), atol=0.02)


def test_corrupt_cifar_pickle_is_user_error(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(b"\x80\x02not a pickle at all")
    with pytest.raises(UserError) as excinfo:
        datasets.load_dataset("cifar10", tmp_path, train=False, download=False)
    _assert_one_line_error(excinfo, "test_batch", "corrupt")


def test_imagenet16_filters_and_shifts_labels(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "imagenet16"
    kept_rows, kept_labels = [], []
    for i in range(1, 11):
        rows = _planes(rng, 4, 16)
        labels = [1, 120, 121, 1000] if i % 2 else [60, 500, 2, 999]
        _dump(folder / f"train_data_batch_{i}", {"data": rows, "labels": labels, "mean": np.zeros(768)})
        for r, lab in zip(rows, labels):
            if lab <= 120:
                kept_rows.append(r)
                kept_labels.append(lab - 1)
    val = _planes(rng, 3, 16)
    val[1, 2 * 256 + 3 * 16 + 9] = 201  # channel B, row 3, column 9
    _dump(folder / "val_data", {"data": val, "labels": [121, 7, 120]})

    train = datasets.load_dataset("imagenet16-120", tmp_path, train=True, download=False)
    assert train.images.shape == (20, 3, 16, 16) and train.num_classes == 120 and train.pad == 2
    assert train.labels.tolist() == kept_labels
    assert min(kept_labels) == 0 and max(kept_labels) == 119
    assert torch.equal(train.images, torch.from_numpy(np.stack(kept_rows)).view(20, 3, 16, 16))
    val_set = datasets.load_dataset("imagenet16-120", tmp_path, train=False)
    assert val_set.labels.tolist() == [6, 119]
    assert val_set.images[0, 2, 3, 9].item() == 201  # image 1 of the file is image 0 after filtering
    assert val_set.mean == pytest.approx((122.68 / 255, 116.66 / 255, 104.01 / 255))


def test_imagenet16_missing_is_user_error(tmp_path):
    (tmp_path / "imagenet16").mkdir()
    _dump(tmp_path / "imagenet16" / "val_data", {"data": _planes(np.random.default_rng(0), 1, 16), "labels": [1]})
    with pytest.raises(UserError) as excinfo:
        datasets.load_dataset("imagenet16-120", tmp_path, train=True)
    _assert_one_line_error(excinfo, "train_data_batch_1", str(tmp_path / "imagenet16"))


def test_svhn_mat_layout_and_label_ten(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(32, 32, 3, 5), dtype=np.uint8)  # H, W, C, N
    x[4, 6, 1, 2] = 99  # row 4, column 6, channel G of image 2
    y = np.array([[10], [1], [9], [10], [5]], dtype=np.uint8)
    scipy_io.savemat(str(tmp_path / "train_32x32.mat"), {"X": x, "y": y})
    svhn = datasets.load_dataset("svhn", tmp_path, train=True, download=False)
    assert svhn.images.shape == (5, 3, 32, 32) and svhn.images.dtype == torch.uint8
    assert svhn.labels.tolist() == [0, 1, 9, 0, 5]
    assert svhn.images[2, 1, 4, 6].item() == 99
    assert torch.equal(svhn.images, torch.from_numpy(x).permute(3, 2, 0, 1))
    assert svhn.mean == datasets.SVHN_MEAN and svhn.num_classes == 10


@pytest.mark.parametrize("name, cls_name, folder", [
    ("cifar10", "CIFAR10", "cifar-10-batches-py"),
    ("cifar100", "CIFAR100", "cifar-100-python"),
    ("svhn", "SVHN", "train_32x32.mat"),
])
def test_missing_dataset_download_fails_is_user_error(tmp_path, monkeypatch, name, cls_name, folder):
    import torchvision.datasets as tvd

    seen_timeouts = []

    def no_network(*args, **kwargs):
        seen_timeouts.append(socket.getdefaulttimeout())
        raise OSError("[Errno -3] Temporary failure in name resolution\nsecond line")

    monkeypatch.setattr(tvd, cls_name, no_network)
    before = socket.getdefaulttimeout()
    root = tmp_path / "data"
    with pytest.raises(UserError) as excinfo:
        datasets.load_dataset(name, root, train=True, download=True)
    _assert_one_line_error(excinfo, folder, str(root), "network")
    assert seen_timeouts == [datasets.DOWNLOAD_TIMEOUT_S]  # the download was tried, with a bound
    assert socket.getdefaulttimeout() == before  # and the global timeout restored


def test_missing_dataset_without_download_does_not_fetch(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def must_not_run(*args, **kwargs):
        raise AssertionError("download attempted although download=False")

    monkeypatch.setattr(tvd, "CIFAR10", must_not_run)
    with pytest.raises(UserError) as excinfo:
        datasets.load_dataset("cifar10", tmp_path, download=False)
    _assert_one_line_error(excinfo, "cifar-10-batches-py", "cifar-10-python.tar.gz")


def test_unknown_dataset_lists_known_names(tmp_path):
    with pytest.raises(UserError) as excinfo:
        datasets.load_dataset("mnist", tmp_path)
    _assert_one_line_error(excinfo, "mnist", *datasets.DATASETS)
    assert set(datasets.DATASETS) == {"cifar10", "cifar100", "svhn", "imagenet16-120", "synthetic", "folder"}


# ---------------------------------------------------------------- synthetic


def test_synthetic_deterministic_and_seed_dependent():
    a, b = synthetic.make_synthetic(300, seed=5), synthetic.make_synthetic(300, seed=5)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    c = synthetic.make_synthetic(300, seed=6)
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (300, 3, 32, 32) and a.images.dtype == torch.uint8
    assert a.labels.bincount().tolist() == [30] * 10  # balanced
    train = datasets.load_dataset("synthetic", "unused-root", train=True)
    test = datasets.load_dataset("synthetic", "unused-root", train=False)
    assert (len(train), len(test)) == (5000, 1000)
    assert not torch.equal(train.images[:1000], test.images)
    assert train.mean == synthetic.SYNTHETIC_MEAN and train.pad == 4


def _phase_free_features(s):
    """Per-channel mean colour plus the grey image's FFT magnitude (ignores stripe phase)."""
    x = s.images.float() / 255
    colour = x.mean(dim=(2, 3))
    spectrum = torch.fft.fft2(x.mean(dim=1) - x.mean(dim=(1, 2, 3))[:, None, None]).abs().flatten(1)
    return torch.cat([colour * 10, spectrum / spectrum.norm(dim=1, keepdim=True)], dim=1)


def test_synthetic_classes_are_learnable():
    train, test = synthetic.make_synthetic(2000, seed=0), synthetic.make_synthetic(500, seed=1)
    f_train, f_test = _phase_free_features(train), _phase_free_features(test)
    centroids = torch.stack([f_train[train.labels == k].mean(0) for k in range(10)])
    # the class-conditional means differ ...
    dists = torch.cdist(centroids, centroids)
    assert dists[~torch.eye(10, dtype=torch.bool)].min() > 0.1
    # ... enough for a nearest-centroid classifier to beat chance (10 %) by far
    pred = torch.cdist(f_test, centroids).argmin(1)
    accuracy = (pred == test.labels).float().mean().item()
    assert accuracy > 0.35, accuracy
    assert accuracy < 0.999  # and not trivially separable


# ---------------------------------------------------------------- search split


@pytest.mark.parametrize("n, portion, split", [(10, 0.5, 5), (11, 0.5, 5), (7, 0.3, 2), (50000, 0.5, 25000)])
def test_search_split(n, portion, split):
    weight, arch = datasets.search_split(n, portion)
    assert list(weight) == list(range(split))
    assert list(arch) == list(range(split, n))
    assert not set(weight) & set(arch) and len(weight) + len(arch) == n


def test_search_split_rejects_empty_side():
    with pytest.raises(UserError):
        datasets.search_split(10, 1.0)
    with pytest.raises(UserError):
        datasets.search_split(10, 0.05)


def test_subset_keeps_constants():
    s = synthetic.make_synthetic(20, seed=0)
    sub = imageset.subset(s, [3, 1, 7])
    assert torch.equal(sub.images, s.images[[3, 1, 7]]) and sub.labels.tolist() == s.labels[[3, 1, 7]].tolist()
    assert (sub.num_classes, sub.mean, sub.std, sub.pad) == (s.num_classes, s.mean, s.std, s.pad)


# ---------------------------------------------------------------- device loader

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def _indexed(n, side=32, seed=0):
    """Random images with labels = their own index, so a batch's y tells which images it holds."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=g), torch.arange(n)


def _batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_loader_shapes_and_exact_normalisation():
    images, labels = _indexed(37)
    loader = device_loader.DeviceLoader(images, labels, batch_size=8, mean=MEAN, std=STD, device="cpu", seed=3)
    assert len(loader) == 5
    batches = _batches(loader)
    assert [x.shape[0] for x, _ in batches] == [8, 8, 8, 8, 5]
    m, s = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    for x, y in batches:
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.is_contiguous()
        assert x.shape[1:] == (3, 32, 32)
        expected = images[y].float().div(255).sub(m).div(s)
        assert torch.equal(x, expected)
    order = torch.cat([y for _, y in batches])
    assert sorted(order.tolist()) == list(range(37))  # every image exactly once
    assert order.tolist() != list(range(37))  # shuffled


def test_loader_drop_last_and_no_shuffle():
    images, labels = _indexed(37)
    loader = device_loader.DeviceLoader(images, labels, batch_size=8, mean=MEAN, std=STD, device="cpu",
                            shuffle=False, drop_last=True)
    batches = _batches(loader)
    assert len(loader) == len(batches) == 4 and all(x.shape[0] == 8 for x, _ in batches)
    assert torch.cat([y for _, y in batches]).tolist() == list(range(32))


def _coded_images(n):
    """Channel 0 encodes the row, channel 1 the column, channel 2 is 255 inside the image."""
    rows = (torch.arange(32) * 8).view(32, 1).expand(32, 32)
    cols = (torch.arange(32) * 8).view(1, 32).expand(32, 32)
    img = torch.stack([rows, cols, torch.full((32, 32), 255)]).to(torch.uint8)
    return img.expand(n, 3, 32, 32).clone(), torch.arange(n)


def test_loader_crop_and_flip_match_torchvision_semantics():
    images, labels = _coded_images(200)
    loader = device_loader.DeviceLoader(images, labels, batch_size=50, mean=MEAN, std=STD, device="cpu",
                            pad=4, flip=True, seed=1)
    shifts, flips = set(), []
    for x, _ in loader:
        u = _denormalise(x, MEAN, STD)
        for img in u:
            inside = img[2] == 255
            assert torch.all(img[:, ~inside] == 0)  # padding is uint8 0 before normalising
            r, c = inside.nonzero(as_tuple=True)
            src_r, src_c = img[0][inside] // 8, img[1][inside] // 8
            dy = (src_r - r).unique()
            assert dy.numel() == 1 and -4 <= dy.item() <= 4  # a rigid shift of at most pad
            flipped = bool(((src_c + c).unique().numel() == 1))
            dx = (src_c + c).unique() - 31 if flipped else (src_c - c).unique()
            assert dx.numel() == 1 and -4 <= dx.item() <= 4
            # the visible window is exactly the part of the shifted image inside 0..31
            rows_ok = ((torch.arange(32) + dy) >= 0) & ((torch.arange(32) + dy) < 32)
            cols_src = (31 - torch.arange(32) if flipped else torch.arange(32)) + dx
            cols_ok = (cols_src >= 0) & (cols_src < 32)
            assert torch.equal(inside, rows_ok[:, None] & cols_ok[None, :])
            shifts.add((dy.item(), dx.item()))
            flips.append(flipped)
    assert len(shifts) > 30  # offsets vary over the 9 x 9 possibilities
    assert 0.35 < sum(flips) / len(flips) < 0.65  # p = 0.5


def test_loader_constant_image_padding_value():
    images = torch.full((64, 3, 32, 32), 200, dtype=torch.uint8)
    loader = device_loader.DeviceLoader(images, torch.zeros(64, dtype=torch.long), batch_size=64, mean=MEAN,
                            std=STD, device="cpu", pad=4, seed=0)
    (x, _), = list(loader)
    m, s = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    zero_value = ((0 - m) / s).expand(3, 32, 32)
    full_value = ((200 / 255 - m) / s).expand(3, 32, 32)
    is_pad = torch.isclose(x, zero_value.unsqueeze(0))
    assert torch.all(is_pad | torch.isclose(x, full_value.unsqueeze(0)))
    assert is_pad.any() and (~is_pad).any()


def test_loader_cutout_zeroes_a_clipped_square():
    images = torch.full((300, 3, 32, 32), 200, dtype=torch.uint8)
    loader = device_loader.DeviceLoader(images, torch.zeros(300, dtype=torch.long), batch_size=100, mean=MEAN,
                            std=STD, device="cpu", cutout=8, seed=2)
    full_sides = 0
    for x, _ in loader:
        zero = x == 0.0  # zeroed after normalisation: exactly 0, not the value of pixel 0
        assert torch.equal(zero[:, 0], zero[:, 1]) and torch.equal(zero[:, 0], zero[:, 2])
        for mask in zero[:, 0]:
            rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
            assert 4 <= rows.numel() <= 8 and 4 <= cols.numel() <= 8  # centre inside: >= half
            assert rows.numel() == rows[-1] - rows[0] + 1 and cols.numel() == cols[-1] - cols[0] + 1
            assert mask.sum() == rows.numel() * cols.numel()  # a filled rectangle
            touches = rows[0] == 0 or rows[-1] == 31 or cols[0] == 0 or cols[-1] == 31
            if rows.numel() < 8 or cols.numel() < 8:
                assert touches  # only clipping at the border shrinks it
            full_sides += int(rows.numel() == 8 and cols.numel() == 8)
    assert full_sides > 100


def test_loader_same_seed_same_batches_and_resume():
    images, labels = _indexed(50)
    make = lambda seed: device_loader.DeviceLoader(images, labels, batch_size=16, mean=MEAN, std=STD, device="cpu",
                                       pad=4, flip=True, cutout=6, seed=seed)
    a, b = make(7), make(7)
    for (xa, ya), (xb, yb) in zip(_batches(a), _batches(b)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other = _batches(make(8))
    assert not torch.equal(other[0][1], _batches(make(7))[0][1])

    state = a.state_dict()
    assert state["generator"].dtype == torch.uint8 and state["generator"].device.type == "cpu"
    epoch2 = _batches(a)
    epoch3 = _batches(a)
    assert not torch.equal(epoch2[0][1], epoch3[0][1])  # each epoch a new permutation
    a.load_state_dict(state)
    fresh = make(123)  # as after a restart: another loader, the saved state
    fresh.load_state_dict(pickle.loads(pickle.dumps(state)))
    for replay in (_batches(a), _batches(fresh)):
        for (x1, y1), (x2, y2) in zip(epoch2, replay):
            assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_from_imageset_train_and_eval():
    s = synthetic.make_synthetic(40, seed=0)
    ev = device_loader.DeviceLoader.from_imageset(s, range(10, 30), train=False, batch_size=8, device="cpu", seed=0)
    assert len(ev) == 3 and ev.num_images == 20
    x = torch.cat([x for x, _ in ev])
    y = torch.cat([y for _, y in ev])
    expected = device_loader.DeviceLoader(s.images[10:30], s.labels[10:30], batch_size=20, mean=s.mean, std=s.std,
                              device="cpu", shuffle=False)
    (xe, ye), = list(expected)
    assert torch.equal(x, xe) and torch.equal(y, ye)  # eval: in order, no augmentation
    tr = device_loader.DeviceLoader.from_imageset(s, train=True, batch_size=8, device="cpu", seed=0, cutout=4)
    assert (tr.pad, tr.flip, tr.shuffle, tr.cutout) == (4, True, True, 4)


def test_cycle_runs_past_one_epoch():
    images, labels = _indexed(10)
    loader = device_loader.DeviceLoader(images, labels, batch_size=4, mean=MEAN, std=STD, device="cpu", seed=0)
    stream = device_loader.cycle(loader)
    ys = [next(stream)[1] for _ in range(7)]
    assert sorted(torch.cat(ys[:3]).tolist()) == list(range(10))
    assert sorted(torch.cat(ys[3:6]).tolist()) == list(range(10))
    assert ys[6].shape == (4,)
    assert torch.cat(ys[:3]).tolist() != torch.cat(ys[3:6]).tolist()  # new permutation per epoch


def test_loader_rejects_too_little_data():
    images, labels = _indexed(5)
    with pytest.raises(UserError):
        device_loader.DeviceLoader(images, labels, batch_size=8, mean=MEAN, std=STD, device="cpu", drop_last=True)
