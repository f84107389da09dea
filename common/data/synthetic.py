"""The built-in synthetic dataset: CIFAR-shaped, learnable, no download (the README's demo).

The class is spatial structure only: the orientation and frequency of a stripe texture
(a grating). Colour, brightness, contrast and phase are random per image and independent
of the class, and the texture is made exactly zero-mean over each image, so the
per-channel mean of an image carries no class information: a parameter-free cell
(skip, pooling) on top of global average pooling cannot separate the classes, a
convolution can. That makes the demo a functional test of the search.
"""
import math

import torch

from common.errors import UserError
from common.data.imageset import ImageSet

# Measured on make_synthetic(20000, seed=0) and rounded; fixed so train and test
# sets (different seeds) share the same constants.
SYNTHETIC_MEAN = (0.5015, 0.5016, 0.5007)
SYNTHETIC_STD = (0.2146, 0.2141, 0.2139)

# Difficulty. A low signal-to-noise ratio (faint stripes, strong pixel noise) is what makes
# the demo search choose convolutions: the texture has to be dug out of the noise by learned
# filters over several epochs, during which the architecture gradient favours the conv ops.
# With clear stripes the network learns them within an epoch through its stem and reduction
# blocks alone, and the search settles on skip/pooling edges early (measured: 2-4 conv edges
# of 6 at contrast 0.15-0.35 and noise 0.08, 5-6 of 6 with the values below, seeds 0-2).
# A small conv net reaches ~50-60 % after one epoch, 10 % for a probe on channel means
# (tests/test_synthetic.py).
_LOW_FREQ, _HIGH_FREQ = 3.0, 6.5  # stripe frequencies, in cycles per image width
_ANGLE_JITTER = 0.5  # orientation jitter (uniform width), in units of the step between orientations
_FREQ_JITTER = 0.15  # frequency jitter (uniform width), relative
_CONTRAST = (0.05, 0.25)  # stripe amplitude, uniform
_BRIGHTNESS = (0.3, 0.7)  # grey level, uniform
_COLOUR_JITTER = 0.12  # per-channel offset of the grey level, uniform in +-this
_TINT = (0.4, 1.0)  # per-channel share of the stripe amplitude, uniform


def class_grid(num_classes: int) -> tuple[int, int]:
    """(orientations, frequencies) of the class grid: class = orientation + orientations * frequency."""
    n_freq = max(1, round(math.sqrt(num_classes / 2.5)))  # 10 classes: 5 orientations x 2 frequencies
    return -(-num_classes // n_freq), n_freq


def make_synthetic(num_images: int, seed: int, num_classes: int = 10, size: int = 32,
                   noise: float = 0.15) -> ImageSet:
    """A learnable CIFAR-shaped set: class = stripe orientation and frequency, nothing else.

    Orientations are folded over [0, 90] degrees (an angle and its mirror image are the
    same class, so the training loader's horizontal flip keeps the label right); per image:
    random mirror, orientation and frequency jitter, phase, grey level, colour, contrast,
    stripe tint and pixel noise. Deterministic for a seed (CPU generator, vectorised:
    ~0.2 s for 5000 images).
    """
    if num_images < 1 or num_classes < 2:
        raise UserError(f"synthetic data needs at least 1 image and 2 classes "
                        f"(got {num_images} and {num_classes})")
    g = torch.Generator().manual_seed(int(seed))
    n, f32 = num_images, torch.float32  # float32 and in-place ops keep it fast

    def uniform(low, high, *shape):
        return torch.rand(*shape, generator=g).mul_(high - low).add_(low)

    # balanced labels in a seed-dependent order
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    n_orient, n_freq = class_grid(num_classes)
    orient, freq_index = labels % n_orient, labels // n_orient
    # orientation of the wave vector: n_orient steps over [0, 90] degrees, mirrored at random
    step = (math.pi / 2) / max(n_orient - 1, 1)
    mirror = torch.randint(0, 2, (n,), generator=g).to(f32).mul_(2).sub_(1)
    angle = (orient.to(f32) * step + uniform(-0.5, 0.5, n) * (step * _ANGLE_JITTER)) * mirror
    # frequencies geometrically spaced between the two ends, in radians per pixel
    ratio = (_HIGH_FREQ / _LOW_FREQ) ** (1 / max(n_freq - 1, 1))
    cycles = _LOW_FREQ * ratio ** freq_index.to(f32) * uniform(1 - _FREQ_JITTER / 2, 1 + _FREQ_JITTER / 2, n)
    freq = cycles * (2 * math.pi / size)
    phase = uniform(0, 2 * math.pi, n)
    coord = torch.arange(size, dtype=f32)
    wx = (torch.cos(angle) * freq)[:, None, None]
    wy = (torch.sin(angle) * freq)[:, None, None]
    stripes = torch.sin(wx * coord[None, None, :] + wy * coord[None, :, None] + phase[:, None, None])
    # exactly zero-mean over the image: a non-integer number of cycles would otherwise leave a
    # frequency-dependent residue in the image mean
    stripes -= stripes.mean(dim=(1, 2), keepdim=True)
    # colour: grey level plus a per-channel offset; stripes: contrast times a per-channel tint
    level = uniform(*_BRIGHTNESS, n, 1) + uniform(-_COLOUR_JITTER, _COLOUR_JITTER, n, 3)
    amplitude = uniform(*_CONTRAST, n, 1) * uniform(*_TINT, n, 3)
    img = torch.randn(n, 3, size, size, generator=g).mul_(noise)
    img.add_(level[:, :, None, None]).addcmul_(amplitude[:, :, None, None], stripes[:, None])
    images = img.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    return ImageSet(images, labels.long(), num_classes, SYNTHETIC_MEAN, SYNTHETIC_STD, pad=4)


SYNTHETIC_TRAIN = (5000, 0)  # (images, seed)
SYNTHETIC_TEST = (1000, 1)
