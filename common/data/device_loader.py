"""The GPU-resident loader: a whole uint8 dataset moved to the device once, every batch made
there (crop, flip, cutout, normalise as batched tensor ops), so training never waits on
worker processes or per-batch host-to-device copies, and nothing synchronises with the host.

Under torchrun (`world_size` > 1) the loader shards itself: `--batch_size` stays the global
batch, step i takes global batch i of a permutation shared by all ranks and this rank keeps
its positions rank::world_size, so the ranks together see exactly the batches one process
would draw from that permutation. A shuffled loader follows DistributedSampler's convention
(drop_last=False): the permutation is padded by repeating its first images until its length
divides among the ranks, so every rank takes the same number of images and the epoch ends
with a partial batch; only a last batch of one image per rank is dropped (BatchNorm after a
1x1 map needs 2). A loader with `drop_last` keeps full global batches only; an evaluation
loader (no shuffle) keeps every image once (a rank may get an empty last batch, which it
skips). The permutation and each rank's augmentation are re-seeded per epoch from
(seed, epoch, pass, rank), so `--resume` needs no loader state there.
"""
from __future__ import annotations

import time
from typing import Iterator

import torch

from common.errors import UserError
from common.data.imageset import ImageSet, subset


class DeviceLoader:
    """Batches made on `device` from a uint8 dataset moved there once (see the module doc).

    One process: per epoch a permutation from the loader's own generator, which also draws
    the augmentation (crop with zero padding, flip, cutout after normalisation, as DARTS)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
                 mean, std, device, shuffle: bool = True, drop_last: bool = False,
                 pad: int = 0, flip: bool = False, cutout: int = 0, seed: int = 0,
                 memory_format=torch.contiguous_format, rank: int = 0, world_size: int = 1, cutout_prob: float = 1.0):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        n = int(images.shape[0])
        if n == 0 or (drop_last and n < batch_size):
            raise UserError(f"{n} images cannot fill one batch of {batch_size}: "
                            f"use more data (e.g. a larger --data_limit) or a smaller batch size")
        self.device = torch.device(device)
        self.images = images.to(self.device)  # the one host-to-device copy
        self.labels = labels.to(self.device, torch.long)
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), shuffle, drop_last
        self.pad, self.flip, self.cutout = int(pad), bool(flip), int(cutout)
        self.cutout_prob = float(cutout_prob)  # the chance an image is cut out (1: all, no extra draw)
        self.memory_format = memory_format  # of the batches: channels_last where the model is
        c = images.shape[1]
        dtype = torch.get_default_dtype()  # of the batches: float32 unless a float64 run asks
        self.mean = torch.tensor(mean, dtype=dtype, device=self.device).view(1, c, 1, 1)
        self.std = torch.tensor(std, dtype=dtype, device=self.device).view(1, c, 1, 1)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch, self._pass = 0, 0  # the sharded streams' position
        self.permutation = torch.Generator(device=self.device)
        self._current = None  # the pass in progress: {"order" or "pass", "next"}
        self._resume = None  # a pass to continue (from a mid-epoch checkpoint)
        h, w = images.shape[2], images.shape[3]
        self._rows = torch.arange(h, device=self.device)
        self._cols = torch.arange(w, device=self.device)
        self._chans = torch.arange(c, device=self.device)

    @classmethod
    def from_imageset(cls, imageset: ImageSet, indices=None, *, train: bool, batch_size: int,
                      device, seed: int, cutout: int = 0, drop_last: bool = False,
                      memory_format=torch.contiguous_format, rank: int = 0, world_size: int = 1,
                      cutout_prob: float = 1.0) -> "DeviceLoader":
        """Training loader (shuffle, crop, flip) or evaluation loader (none) of a set or a subset."""
        if indices is not None:
            imageset = subset(imageset, indices)  # select on CPU: only the subset travels
        return cls(imageset.images, imageset.labels, batch_size=batch_size, mean=imageset.mean,
                   std=imageset.std, device=device, shuffle=train, drop_last=drop_last,
                   pad=imageset.pad if train else 0, flip=train, cutout=cutout, seed=seed,
                   memory_format=memory_format, rank=rank, world_size=world_size, cutout_prob=cutout_prob)

    @property
    def num_images(self) -> int:
        return int(self.labels.shape[0])

    @property
    def sharded(self) -> bool:
        return self.world_size > 1

    def __len__(self) -> int:
        if not self.sharded:
            n, b = self.num_images, self.batch_size
            return n // b if self.drop_last else -(-n // b)
        full, last = divmod(self._padded_count(), self.batch_size)
        if self.drop_last or not last or (self.shuffle and last == self.world_size):
            return full
        return full + 1

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.sharded:
            yield from self._sharded_batches()
            return
        n, b = self.num_images, self.batch_size
        if self._resume is not None:
            order, start = self._resume["order"].to(self.device), self._resume["next"]
            self._resume = None
        else:
            order = (torch.randperm(n, generator=self.generator, device=self.device) if self.shuffle
                     else torch.arange(n, device=self.device))
            start = 0
        yield from self._steps(range(start, len(self)), lambda i: order[i * b:(i + 1) * b], {"order": order})

    def _steps(self, steps, indices, current):
        """The batches of `steps`, the pass's position kept in `current` (for `state_dict`); an
        abandoned pass (the search's architecture stream at the end of an epoch) stays current
        until the next pass starts."""
        self._current = current
        for i in steps:
            idx = indices(i)
            current["next"] = i + 1
            if idx.numel():
                yield self.batch(idx), self.labels[idx]
        if self._current is current:
            self._current = None

    # --- sharded over the ranks of a torchrun job ---------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """The epoch the sharded streams are drawn for (one process keeps one stream instead)."""
        self.epoch, self._pass = int(epoch), 0

    def _padded_count(self) -> int:
        n = self.num_images
        if not self.shuffle or self.drop_last:
            return n
        return -(-n // self.world_size) * self.world_size

    def _stream_seed(self, offset: int) -> int:
        # (epoch, pass within the epoch): a loader cycled within an epoch (the search's
        # architecture half) draws a new permutation on every pass
        return self.seed + offset + 1_000_003 * self.epoch + 1_000_000_007 * self._pass

    def shared_order(self) -> torch.Tensor:
        """This pass's order of the whole set, the same on every rank."""
        if not self.shuffle:
            return torch.arange(self.num_images, device=self.device)
        self.permutation.manual_seed(self._stream_seed(0))
        order = torch.randperm(self.num_images, generator=self.permutation, device=self.device)
        padded = self._padded_count()
        return order.repeat(-(-padded // len(order)))[:padded]

    def batch_indices(self) -> list[torch.Tensor]:
        """This rank's image indices, step by step, for the current pass (epoch, pass)."""
        order, b = self.shared_order(), self.batch_size
        return [order[i * b:(i + 1) * b][self.rank::self.world_size] for i in range(len(self))]

    def _sharded_batches(self):
        start = 0
        if self._resume is not None:  # the same pass, its augmentation stream where it was
            self.epoch, self._pass, start = self._resume["epoch"], self._resume["pass"], self._resume["next"]
            self.generator.set_state(self._resume["generator"].cpu())
            self._resume = None
        else:  # this rank's own augmentation stream, re-seeded per pass (a resume at an epoch needs no state)
            self.generator.manual_seed(self._stream_seed(7919 * (self.rank + 1)))
        indices, current = self.batch_indices(), {"epoch": self.epoch, "pass": self._pass}
        self._pass += 1
        yield from self._steps(range(start, len(indices)), indices.__getitem__, current)

    def first_batches(self, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The first `count` batches in the set's own order, for a diagnostic: no pass is started
        or abandoned and, from an evaluation loader (no augmentation), no random number drawn, so
        the run's own passes and a checkpoint's loader positions stay as they were."""
        b, n = self.batch_size, self.num_images
        indices = [torch.arange(i * b, min((i + 1) * b, n), device=self.device) for i in range(min(count, -(-n // b)))]
        return [(self.batch(idx), self.labels[idx]) for idx in indices]

    def _rand(self, high: int, size: int) -> torch.Tensor:
        return torch.randint(0, high, (size,), generator=self.generator, device=self.device)

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        """The augmented, normalised images at `idx` (a device index tensor), drawing this
        loader's random stream."""
        bsz = idx.shape[0]
        h, w = self.images.shape[2], self.images.shape[3]
        if self.pad or self.flip:
            x = self._crop_flip(idx, bsz, h, w)
        else:
            x = self.images[idx]
        # same op order as ToTensor + Normalize, so values match torchvision's
        x = x.to(self.mean.dtype).div_(255).sub_(self.mean).div_(self.std)
        if self.cutout > 0:
            x = self._apply_cutout(x, bsz, h, w)
        return x.contiguous(memory_format=self.memory_format)

    def _crop_flip(self, idx: torch.Tensor, bsz: int, h: int, w: int) -> torch.Tensor:
        """One gather does both: source pixel of output (r, c) is (oy+r-pad, ox+c'-pad)."""
        p = self.pad
        oy = self._rand(2 * p + 1, bsz) - p  # torchvision: offset in [0, 2*pad] of the padded image
        ox = self._rand(2 * p + 1, bsz) - p
        rows = oy[:, None] + self._rows[None, :]  # (B, H)
        cols = self._cols[None, :].expand(bsz, w)
        if self.flip:  # flip of the crop: output column c reads crop column W-1-c
            flipped = self._rand(2, bsz).bool()
            cols = torch.where(flipped[:, None], (w - 1) - cols, cols)
        cols = ox[:, None] + cols  # (B, W)
        x = self.images[idx[:, None, None, None], self._chans[None, :, None, None],
                        rows.clamp(0, h - 1)[:, None, :, None], cols.clamp(0, w - 1)[:, None, None, :]]
        # pixels read from outside the image are the zero padding (uint8 0, as RandomCrop pads)
        inside = (((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :])
        return x * inside[:, None].to(x.dtype)

    def _apply_cutout(self, x: torch.Tensor, bsz: int, h: int, w: int) -> torch.Tensor:
        """DARTS Cutout: zero [cy-L//2, cy+L//2) x [cx-L//2, cx+L//2), clipped at the border."""
        half = self.cutout // 2
        cy = self._rand(h, bsz)[:, None]
        cx = self._rand(w, bsz)[:, None]
        in_rows = (self._rows[None, :] >= cy - half) & (self._rows[None, :] < cy + half)
        in_cols = (self._cols[None, :] >= cx - half) & (self._cols[None, :] < cx + half)
        mask = in_rows[:, :, None] & in_cols[:, None, :]
        if self.cutout_prob < 1.0:  # --cutout_prob: each image cut out with this chance
            chosen = torch.rand(bsz, generator=self.generator, device=self.device) < self.cutout_prob
            mask &= chosen[:, None, None]
        return x.masked_fill_(mask[:, None], 0.0)

    def state_dict(self, mid_pass: bool = False) -> dict:
        """The generator state (CPU uint8): restoring it replays the next epoch exactly. With
        `mid_pass`, also the position in the pass in progress, which `load_state_dict` makes the
        next iteration continue from. A sharded loader saves its generator too, so that its
        checkpoint loads into one process, and ignores it on load at an epoch boundary: its
        streams are re-seeded every pass."""
        state = {"generator": self.generator.get_state().cpu().clone()}
        if mid_pass and self._current is not None:
            state["position"] = {key: value.cpu() if torch.is_tensor(value) else value
                                 for key, value in self._current.items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        position = state.get("position")
        if position is not None:
            self._resume = {**position, "generator": state["generator"]}
        if not self.sharded:
            self.generator.set_state(state["generator"].cpu())


def cycle(loader: DeviceLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches forever; each pass over `loader` is a new epoch (new permutation)."""
    if len(loader) == 0:
        raise UserError("the loader yields no batches: use more data or a smaller batch size")
    while True:
        yield from loader


def loader_images_per_second(loader, batches):
    """Images per second that `loader` delivers over `batches` batches (epochs restart as
    needed), after one untimed batch (worker start-up, decoder set-up); the clock is read
    once the device has finished the work queued for them."""
    if batches < 1:
        raise ValueError(f"batches must be at least 1, got {batches}")

    def synchronize(x):
        if x.is_cuda:
            torch.cuda.synchronize(x.device)

    stream = cycle(loader)
    x, _ = next(stream)
    synchronize(x)
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        x, _ = next(stream)
        images += len(x)
    synchronize(x)
    return images / (time.perf_counter() - start)
