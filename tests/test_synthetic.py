"""The synthetic set (common/data/synthetic.py): the class is spatial structure only.

Its classes differ in the orientation and frequency of a stripe texture, at random colour,
brightness, contrast and phase, so that a per-channel mean (what a parameter-free cell
followed by global average pooling sees) carries no class information and a convolution is
needed: the README's demo search must then choose convolutions. The figures in the comments
were measured with torch 2.14 on CPU, one thread.
"""
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common.data import datasets, synthetic

CHANCE = 0.1


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sets():
    return synthetic.make_synthetic(*synthetic.SYNTHETIC_TRAIN), synthetic.make_synthetic(*synthetic.SYNTHETIC_TEST)


def normalised(s):
    mean, std = torch.tensor(s.mean)[:, None, None], torch.tensor(s.std)[:, None, None]
    return (s.images.float() / 255 - mean) / std


def test_deterministic_shapes_dtype_balanced():
    a, b = synthetic.make_synthetic(500, seed=3), synthetic.make_synthetic(500, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    c = synthetic.make_synthetic(500, seed=4)
    assert not torch.equal(a.images, c.images) and not torch.equal(a.labels, c.labels)
    assert a.images.shape == (500, 3, 32, 32) and a.images.dtype == torch.uint8
    assert a.labels.shape == (500,) and a.labels.dtype == torch.int64
    assert a.labels.bincount().tolist() == [50] * 10
    assert (a.num_classes, a.pad, a.mean, a.std) == (10, 4, synthetic.SYNTHETIC_MEAN, synthetic.SYNTHETIC_STD)
    odd = synthetic.make_synthetic(70, seed=0, num_classes=7, size=24)
    assert odd.images.shape == (70, 3, 24, 24) and odd.labels.bincount().tolist() == [10] * 7


def test_fast_and_the_constants_match_the_data():
    start = time.perf_counter()
    s = synthetic.make_synthetic(5000, seed=0)
    assert time.perf_counter() - start < 1.0  # ~0.2 s on one thread
    x = s.images.float() / 255
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))
    # the constants are measured on 20000 images; 5000 agree to well within 0.01
    assert torch.allclose(mean, torch.tensor(synthetic.SYNTHETIC_MEAN), atol=0.01), mean
    assert torch.allclose(std, torch.tensor(synthetic.SYNTHETIC_STD), atol=0.01), std
    # little clipping (measured: 1.0 % of the pixels at 0, 1.0 % at 255)
    assert (s.images == 0).float().mean() < 0.02 and (s.images == 255).float().mean() < 0.02


def test_channel_means_carry_no_class_information(sets):
    train, test = sets
    f_train = (train.images.float() / 255).mean(dim=(2, 3))
    f_test = (test.images.float() / 255).mean(dim=(2, 3))
    # class-conditional averages of the channel means all agree with the overall one to within
    # sampling noise (measured: largest deviation 0.012 = 2.0 standard errors of a class's
    # average; the channel means themselves spread by 0.13 between images; 1.9 standard
    # errors on 100000 images)
    centroids = torch.stack([f_train[train.labels == k].mean(0) for k in range(10)])
    standard_error = f_train.std(0) / (len(train) / 10) ** 0.5
    z = ((centroids - f_train.mean(0)).abs() / standard_error).max().item()
    assert z < 4.0, f"a class shifts the channel means by {z:.1f} standard errors (measured 2.0)"
    # a multinomial logistic regression on the 3 channel means is at chance
    # (measured: 9.5 % on the 1000 test images, 10.7 % on the training images; 8.1 % with the
    # 3 per-channel standard deviations added)
    mu, sd = f_train.mean(0), f_train.std(0)
    f_train, f_test = (f_train - mu) / sd, (f_test - mu) / sd
    torch.manual_seed(0)
    probe = nn.Linear(3, 10)
    opt = torch.optim.LBFGS(probe.parameters(), lr=1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(probe(f_train), train.labels)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        accuracy = (probe(f_test).argmax(1) == test.labels).float().mean().item()
    assert accuracy <= CHANCE + 0.10, f"linear probe on channel means: {accuracy:.1%} (measured 9.5 %)"


def _spectrum(s, flip=False):
    """Normalised FFT magnitude of the grey image: phase- and colour-free texture features."""
    x = s.images.float().mean(dim=1)
    if flip:
        x = x.flip(-1)
    x = x - x.mean(dim=(1, 2), keepdim=True)
    spectrum = torch.fft.fft2(x).abs().flatten(1)
    return spectrum / spectrum.norm(dim=1, keepdim=True)


def test_classes_survive_the_horizontal_flip_of_training(sets):
    # the loader flips training images: an orientation and its mirror image are one class
    train, test = sets
    f_train = _spectrum(train)
    centroids = torch.stack([f_train[train.labels == k].mean(0) for k in range(10)])
    plain = (torch.cdist(_spectrum(test), centroids).argmin(1) == test.labels).float().mean().item()
    flipped = (torch.cdist(_spectrum(test, flip=True), centroids).argmin(1) == test.labels).float().mean().item()
    # measured: 99.5 % both (a nearest-centroid classifier on the spectrum)
    assert plain > 0.9 and abs(plain - flipped) < 0.03, (plain, flipped)


def test_a_small_conv_net_learns_it_in_one_epoch(sets):
    train, test = sets
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = normalised(train), train.labels
    for batch in torch.randperm(len(y)).split(64):
        opt.zero_grad()
        F.cross_entropy(net(x[batch]), y[batch]).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(normalised(test)).argmax(1) == test.labels).float().mean().item()
    # measured: 61.3 % (52-61 % over torch seeds 0-3), against 9.5 % for the linear probe above
    assert accuracy >= CHANCE + 0.30, f"conv net after 1 epoch: {accuracy:.1%} (measured 61.3 %)"


def test_the_dataset_reader_serves_it():
    train = datasets.load_dataset("synthetic", "unused-root", train=True)
    assert len(train) == synthetic.SYNTHETIC_TRAIN[0] and train.mean == synthetic.SYNTHETIC_MEAN
