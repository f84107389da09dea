"""common.data.imagenet_loader.streamed_search_loaders on CPU: the "workers" (PIL) and "decode"
(decode_jpeg + tensor ops) backends draw the same crops and flips and agree to one uint8
level; ordering, drop_last, replay, sharding, the decoder fallback and bad input. The CUDA
test (nvJPEG) runs where a GPU is present."""
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from common.data.device_loader import loader_images_per_second
from common.errors import UserError
from common.data.imagenet_data import STD, eval_transform, image_rng
from common.data.imagenet_loader import (DecodeLoader, ImageNetLoader, decode_batch, streamed_search_loaders,
                                    search_backend)
from imagenet_fixture import make_imagenet

# torchvision 0.29 deprecates its decoders in favour of TorchCodec; the warning is noise here

CPU = torch.device("cpu")
SIZES = [(40, 40), (48, 36), (36, 52)]  # mixed sizes and aspect ratios
SMALL = dict(image_size=32, eval_resize=36)
# one uint8 level in normalised units: PIL and torchvision's resamplers round differently now
# and then (the JPEG decoding itself is the same libjpeg-turbo, measured bit-identical)
ONE_LEVEL = 1 / 255 / min(STD) + 1e-4


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """12 training and 12 validation images (3 classes x 4)."""
    return make_imagenet(tmp_path_factory.mktemp("search"), train_per_class=4, val_per_class=4, size=SIZES)


def loaders(root, backend, batch_size=4, seed=3, **kwargs):
    """(train, arch, evaluation, num_classes)."""
    made = streamed_search_loaders(root, batch_size, CPU, seed, backend=backend, **{**SMALL, **kwargs})
    return made.train, made.arch, made.evaluation, made.num_classes


def epoch(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def same_batches(a, b):
    return len(a) == len(b) and all(torch.equal(xa, xb) and torch.equal(ya, yb)
                                    for (xa, ya), (xb, yb) in zip(a, b))


def test_backends_draw_the_same_crops_and_agree(imagenet):
    workers, decode = loaders(imagenet, "workers"), loaders(imagenet, "decode")
    assert isinstance(decode[0], DecodeLoader) and not isinstance(workers[0], DecodeLoader)
    assert workers[3] == decode[3] == 3
    for a, b in zip(workers[:3], decode[:3]):
        assert (len(a), a.num_images, a.batch_size) == (len(b), b.num_images, b.batch_size)
        for (xa, ya), (xb, yb) in zip(epoch(a), epoch(b)):
            assert xb.shape == xa.shape == (4, 3, 32, 32) and xb.dtype == xa.dtype == torch.float32
            assert xb.device == xa.device == CPU and xb.is_contiguous() and xa.is_contiguous()
            assert yb.dtype == ya.dtype == torch.long and torch.equal(ya, yb)
            # the same normalisation: per-channel statistics of the batch
            assert torch.allclose(xa.mean((0, 2, 3)), xb.mean((0, 2, 3)), atol=1e-3)
            assert torch.allclose(xa.std((0, 2, 3)), xb.std((0, 2, 3)), atol=1e-3)
            # the images are noise: a crop box off by a pixel or a different flip would differ by ~1
            assert (xa - xb).abs().max() <= ONE_LEVEL
            assert (xa - xb).abs().mean() < 0.005  # measured about 0.001 (train), 0.0004 (valid)


def test_crop_draws_come_from_the_cpu_generator_alone():
    seed = 12345
    before = torch.get_rng_state()
    with torch.device("meta"), image_rng(seed):  # even where factories default to another device
        drawn = torch.rand(1)
    assert drawn.device == CPU and torch.equal(torch.get_rng_state(), before)
    assert torch.equal(drawn, torch.rand(1, generator=torch.Generator().manual_seed(seed)))


def test_labels_follow_the_class_folders_and_valid_keeps_every_image_in_file_order(imagenet):
    for backend in ("workers", "decode"):
        _, _, valid, _ = loaders(imagenet, backend, batch_size=5)
        batches = epoch(valid)
        assert [len(y) for _, y in batches] == [5, 5, 2] and len(valid) == 3
        assert torch.cat([y for _, y in batches]).tolist() == [0] * 4 + [1] * 4 + [2] * 4
        folder = valid.dataset.folder
        expected = torch.stack([eval_transform(32, 36)(folder.loader(path)) for path, _ in folder.samples])
        assert (torch.cat([x for x, _ in batches]) - expected).abs().max() <= ONE_LEVEL


def test_train_and_arch_shuffle_drop_last_and_replay(imagenet):
    train, arch, _, _ = loaders(imagenet, "decode", batch_size=5)
    assert train.num_images == arch.num_images == 12
    assert (len(train), len(arch)) == (3, 2)  # the weight half ends with a partial batch, the arch stream does not
    before = torch.get_rng_state()
    first = epoch(train)
    assert torch.equal(torch.get_rng_state(), before)  # the crop draws leave the global RNG alone
    assert [len(y) for _, y in first] == [5, 5, 2]
    assert [len(y) for _, y in epoch(arch)] == [5, 5]  # 2 of 12 images wait for the next pass
    labels = torch.cat([y for _, y in first])
    assert sorted(labels.tolist()) != labels.tolist()  # shuffled
    assert not torch.equal(labels, torch.cat([y for _, y in epoch(arch)]))  # seed + 1: another order
    state = train.state_dict()
    second = epoch(train)
    assert not any(torch.equal(a, c) for (a, _), (c, _) in zip(first, second))  # a new epoch
    train.load_state_dict(state)
    assert same_batches(epoch(train), second)  # replayed exactly
    again, _, _, _ = loaders(imagenet, "decode", batch_size=5)
    assert same_batches(epoch(again), first)  # same seed, same batches
    other, _, _, _ = loaders(imagenet, "decode", batch_size=5, seed=4)
    assert not same_batches(epoch(other), first)


def test_two_replicas_cover_what_one_does(imagenet):
    def images(batches):
        return sorted(x.numpy().tobytes() for xs, _ in batches for x in xs)

    for which in (0, 2):  # the train loader (shuffled, augmented) and the valid loader
        single = loaders(imagenet, "decode", batch_size=3)[which]
        shards = [loaders(imagenet, "decode", batch_size=3, num_replicas=2, rank=r)[which] for r in (0, 1)]
        assert [s.num_images for s in shards] == [6, 6] and single.num_images == 12
        for _ in range(2):  # per epoch
            parts = [epoch(s) for s in shards]
            assert images(parts[0] + parts[1]) == images(epoch(single))
            assert images(parts[0]) != images(parts[1])


def test_decode_batches_do_not_depend_on_workers(imagenet):
    def two_epochs(workers):
        train, arch, valid, _ = loaders(imagenet, "decode", workers=workers)
        return [epoch(loader) for loader in (train, train, arch, valid)]

    a, b = two_epochs(0), two_epochs(2)
    assert all(same_batches(ea, eb) for ea, eb in zip(a, b))


def test_png_and_cmyk_files_decode_through_the_fallback(tmp_path, monkeypatch, caplog):
    import torchvision.io

    root = make_imagenet(tmp_path / "odd", train_per_class=2, val_per_class=2, size=SIZES)
    folder = root / "val" / "n01443537"
    Image.fromarray(np.full((30, 44, 3), (10, 200, 90), np.uint8)).save(folder / "png.JPEG", format="PNG")
    Image.new("CMYK", (38, 34), (0, 255, 40, 0)).save(folder / "cmyk.JPEG", quality=95)
    workers, decode = loaders(root, "workers"), loaders(root, "decode")
    log = logging.getLogger("drnas")
    log.addHandler(caplog.handler)
    try:
        for a, b in zip(workers[1:3], decode[1:3]):  # arch and valid read val/ (8 images)
            assert len(b) == 2
            for (xa, ya), (xb, yb) in zip(epoch(a), epoch(b)):
                assert xb.shape == xa.shape == (4, 3, 32, 32) and torch.equal(ya, yb)
                assert (xa - xb).abs().max() <= ONE_LEVEL  # every image, the odd two included
    finally:
        log.removeHandler(caplog.handler)
    # the PNG is the one file decode_jpeg refuses: counted by each loader that read it, logged once
    assert decode[1].cpu_decodes == 1 and decode[2].cpu_decodes == 1
    warned = {id(r) for r in caplog.records if "decoder refused" in r.getMessage()}
    assert len(warned) == 2  # once per loader

    cmyk, png = data = [torchvision.io.read_file(str(folder / name)) for name in ("cmyk.JPEG", "png.JPEG")]
    calls, real = [], torchvision.io.decode_jpeg

    def like_nvjpeg(input, **kwargs):  # as on the GPU: nvJPEG refuses CMYK, which the CPU decodes
        calls.append(len(input) if isinstance(input, list) else "one")
        if any(d is cmyk for d in (input if isinstance(input, list) else [input])):
            raise RuntimeError("unsupported JPEG")
        return real(input, **kwargs)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", like_nvjpeg)
    images, refused = decode_batch(data, CPU)
    assert calls == [2, "one", "one"]  # the batch first, then file by file (PNG: decode_jpeg fails)
    assert refused == 2  # both went to the CPU's general decoder
    expected = [torch.from_numpy(np.array(Image.open(folder / name).convert("RGB"))).permute(2, 0, 1)
                for name in ("cmyk.JPEG", "png.JPEG")]
    assert all(torch.equal(a, b) for a, b in zip(images, expected))


def test_channels_last(imagenet):
    for backend in ("workers", "decode"):
        for loader, plain in zip(loaders(imagenet, backend, memory_format=torch.channels_last)[:3],
                                 loaders(imagenet, backend)[:3]):
            (x, _), (y, _) = next(iter(loader)), next(iter(plain))
            assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
            assert torch.equal(x, y)


def test_backend_choice_and_throughput(imagenet):
    assert search_backend("auto", "cpu") == "workers" and search_backend("auto", "cuda:0") == "decode"
    assert search_backend("decode", "cpu") == "decode"
    train, _, _, _ = loaders(imagenet, "auto")
    assert type(train) is ImageNetLoader
    assert loader_images_per_second(train, 5) > 0  # 5 batches: more than one epoch of 3
    with pytest.raises(ValueError):
        loader_images_per_second(train, 0)


def test_bad_input_is_one_line(imagenet, tmp_path):
    def error(root, **kwargs):
        with pytest.raises(UserError) as info:
            loaders(root, kwargs.pop("backend", "decode"), **kwargs)
        message = str(info.value)
        assert "\n" not in message
        return message

    assert "does not exist" in error(tmp_path / "missing")
    assert "no train/ folder" in error(make_imagenet(tmp_path / "no_train", splits=("val",)))
    assert "no val/ folder" in error(make_imagenet(tmp_path / "no_val", splits=("train",)))
    differ = make_imagenet(tmp_path / "differ", splits=("train",))
    make_imagenet(differ, splits=("val",), classes=("n01440764", "n01443537", "n09999999"))
    assert "differ" in error(differ)
    train, arch, _, _ = loaders(imagenet, "decode", batch_size=13)  # 12 images: one partial batch each
    assert len(train) == len(arch) == 1
    limited, _, _, _ = loaders(imagenet, "workers", batch_size=7, limit=6)
    assert [len(y) for _, y in limited] == [6]
    assert "dali" in error(imagenet, backend="dali")


def make_smooth_imagenet(root):
    """Like make_imagenet, with smooth gradients (nvJPEG and libjpeg-turbo upsample the chroma
    of noise differently, not of gradients) in which a crop box or flip still shows."""
    for split in ("train", "val"):
        for c, name in enumerate(("n01440764", "n01443537", "n01484850")):
            (root / split / name).mkdir(parents=True)
            for i, (width, height) in enumerate(SIZES + SIZES[:1]):
                x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
                pixels = np.stack([x ** (1 + i), y, np.full_like(x, c / 2)], -1) * 255
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / name / f"{i}.JPEG", quality=95)
    return root


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (nvJPEG)")
def test_cuda_decode_matches_cpu_workers(tmp_path):
    root = make_smooth_imagenet(tmp_path / "gpu")
    Image.new("CMYK", (38, 34), (0, 255, 40, 0)).save(root / "val" / "n01440764" / "cmyk.JPEG")
    cuda = torch.device("cuda")
    cuda_rng = torch.cuda.get_rng_state()
    gpu = streamed_search_loaders(root, 4, cuda, 3, backend="auto", memory_format=torch.channels_last, **SMALL)
    cpu = streamed_search_loaders(root, 4, CPU, 3, backend="workers", memory_format=torch.channels_last, **SMALL)
    assert isinstance(gpu.train, DecodeLoader)
    for a, b in zip((cpu.train, cpu.arch, cpu.evaluation), (gpu.train, gpu.arch, gpu.evaluation)):
        for (xa, ya), (xb, yb) in zip(epoch(a), epoch(b)):
            assert xb.is_cuda and yb.is_cuda and xb.shape == xa.shape and xb.dtype == xa.dtype
            assert xb.is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(ya, yb.cpu())
            xb = xb.cpu()
            assert torch.allclose(xa.mean((0, 2, 3)), xb.mean((0, 2, 3)), atol=0.02)
            assert torch.allclose(xa.std((0, 2, 3)), xb.std((0, 2, 3)), atol=0.02)
            # nvJPEG's IDCT and chroma upsampling differ a little from libjpeg-turbo's; a wrong
            # crop box or flip of these gradients differs by about 1
            assert (xa - xb).abs().mean() < 0.1
    assert torch.equal(torch.cuda.get_rng_state(), cuda_rng)  # only the CPU generator draws


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (nvJPEG)")
def test_cuda_decoding_is_ordered_against_a_busy_stream(tmp_path):
    """Batches decoded while the main stream is kept busy (as the sync-free training loop keeps
    it) equal batches decoded with the GPU idle: nvJPEG never writes into memory that queued
    work still reads."""
    root = make_smooth_imagenet(tmp_path / "busy")
    cuda = torch.device("cuda")

    def batches(busy):
        loader = streamed_search_loaders(root, 4, cuda, 3, backend="decode", **SMALL).train
        kept, work = [], torch.randn(2048, 2048, device=cuda)
        for _ in range(3):  # epochs
            for x, y in loader:
                if busy:  # long work that reads the batch, queued before the next one is decoded
                    for _ in range(20):
                        work = torch.tanh(work @ work)  # bounded: 0 * work stays 0
                    x = x + 0 * work[:1, :1].sum()
                else:
                    torch.cuda.synchronize()
                kept.append((x.clone(), y.clone()))
        torch.cuda.synchronize()
        return [(x.cpu(), y.cpu()) for x, y in kept]

    assert same_batches(batches(busy=True), batches(busy=False))
