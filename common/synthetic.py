"""The built-in synthetic dataset: CIFAR-shaped, learnable, no download (the README's demo)."""
import math

import torch

from common.errors import UserError
from common.imageset import ImageSet

# Measured on make_synthetic(20000, seed=0) and rounded; fixed so train and test
# sets (different seeds) share the same constants.
SYNTHETIC_MEAN = (0.3457, 0.3134, 0.3181)
SYNTHETIC_STD = (0.2932, 0.2791, 0.2886)


# Difficulty, tuned so a tiny conv net reaches ~60 % after one epoch on 5000 images
# and ~85-90 % after a few (neighbouring orientations overlap, colours are noisy):
# enough signal for a CPU demo, not so easy that every architecture saturates at once.
_ANGLE_JITTER = 1.5  # orientation jitter, in units of the step between class orientations
_COLOUR_JITTER = 0.2  # std of the per-image colour shift
# Five base colours shared by two classes each: colour alone gives at most ~50 %,
# the rest needs the stripe texture (orientation and frequency).
_PALETTE = torch.tensor([[0.85, 0.30, 0.30], [0.30, 0.80, 0.35], [0.30, 0.40, 0.90],
                         [0.85, 0.80, 0.30], [0.70, 0.35, 0.85]])


def make_synthetic(num_images: int, seed: int, num_classes: int = 10, size: int = 32,
                   noise: float = 0.25) -> ImageSet:
    """A learnable CIFAR-shaped set: class = stripe orientation/frequency + colour.

    Per image: random phase, orientation jitter, brightness, colour jitter and
    pixel noise, so that the task is not trivial. Deterministic for a seed (CPU
    generator, vectorised: ~0.2 s for 5000 images on 2 CPU cores).
    """
    if num_images < 1 or num_classes < 2:
        raise UserError(f"synthetic data needs at least 1 image and 2 classes "
                        f"(got {num_images} and {num_classes})")
    g = torch.Generator().manual_seed(int(seed))
    n, f32 = num_images, torch.float32  # float32 and in-place ops keep it fast
    # balanced labels in a seed-dependent order
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    # class texture: orientation spread over 180 degrees (jitter wider than the step, so
    # neighbouring classes overlap), three stripe frequencies
    step = math.pi / num_classes
    angle = labels.to(f32) * step + (torch.rand(n, generator=g) - 0.5) * (step * _ANGLE_JITTER)
    freq = (2.0 + 1.5 * (labels % 3).to(f32)) * (2 * math.pi / size)  # radians per pixel
    phase = torch.rand(n, generator=g) * (2 * math.pi)
    coord = torch.arange(size, dtype=f32)
    wx = (torch.cos(angle) * freq)[:, None, None]
    wy = (torch.sin(angle) * freq)[:, None, None]
    stripes = torch.sin(wx * coord[None, None, :] + wy * coord[None, :, None] + phase[:, None, None])
    # class colour with per-image jitter and brightness
    colour = _PALETTE[labels % len(_PALETTE)] + _COLOUR_JITTER * torch.randn(n, 3, generator=g)
    colour *= 0.75 + 0.45 * torch.rand(n, 1, generator=g)
    img = torch.randn(n, 3, size, size, generator=g).mul_(noise)
    img.add_(colour[:, :, None, None] * stripes.mul_(0.35).add_(0.55)[:, None])
    images = img.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    return ImageSet(images, labels.long(), num_classes, SYNTHETIC_MEAN, SYNTHETIC_STD, pad=4)


SYNTHETIC_TRAIN = (5000, 0)  # (images, seed)
SYNTHETIC_TEST = (1000, 1)
