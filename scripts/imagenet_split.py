"""The per-class split of the direct ImageNet search's subset (scripts/sample_imagenet.py): which
files of every class go to the weights' half and which to the disjoint architecture half.

Per class the file names are sorted and a generator seeded from (seed, class name) draws a
permutation, so the split does not depend on the filesystem's order; the sizes are the
fractions of the class, rounded half up, each at least 1.
"""
import hashlib
import math

import numpy as np
# ImageFolder's own extensions (it compares them lower-case): the loader sees the same files
from torchvision.datasets.folder import IMG_EXTENSIONS

from common.errors import UserError

_EPS = 1e-9  # 25 * 0.1 is 2.5000000000000004 but 35 * 0.1 is 3.5000000000000004: round the decimal


def is_image(name):
    return name.lower().endswith(IMG_EXTENSIONS)


def check_fractions(weight_fraction, arch_fraction):
    for flag, value in (("--weight_fraction", weight_fraction), ("--arch_fraction", arch_fraction)):
        if not 0 < value < 1:
            raise UserError(f"{flag} {value} is not between 0 and 1 (exclusive)")
    if weight_fraction + arch_fraction > 1 + _EPS:
        raise UserError(f"--weight_fraction {weight_fraction} + --arch_fraction {arch_fraction} "
                        "is more than 1: the two halves must be disjoint")


def _round_half_up(x):
    return int(math.floor(x + 0.5 + _EPS))


def split_counts(n, weight_fraction, arch_fraction):
    """(train, val) sizes of a class of n images: rounded, each at least 1 when n >= 2."""
    train, val = _round_half_up(n * weight_fraction), _round_half_up(n * arch_fraction)
    if n >= 2:
        train, val = max(train, 1), max(val, 1)
    while train + val > n:  # the minimum of 1 (or rounding both up) overflowed a tiny class
        if train >= val:
            train -= 1
        else:
            val -= 1
    return train, val


def class_rng(seed, name):
    """A generator from (seed, class name); a stable digest, not the salted built-in hash()."""
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def sample_split(class_files, weight_fraction=0.1, arch_fraction=0.025, seed=0):
    """(train, val): for each class of `class_files` (name -> file names), the sorted file
    names of its weights' half and of its disjoint architecture half."""
    check_fractions(weight_fraction, arch_fraction)
    train, val = {}, {}
    for name in sorted(class_files):
        files = sorted(class_files[name])
        n_train, n_val = split_counts(len(files), weight_fraction, arch_fraction)
        order = class_rng(seed, name).permutation(len(files))
        train[name] = sorted(files[i] for i in order[:n_train])
        val[name] = sorted(files[i] for i in order[n_train:n_train + n_val])
    return train, val
