"""A whole image dataset in memory: what every reader returns and every loader takes."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageSet:
    """A whole dataset in memory: uint8 images (N, 3, H, W) and int64 labels (N,) on CPU."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pad: int  # random-crop padding used for training augmentation

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def subset(imageset: ImageSet, indices) -> ImageSet:
    """The images at `indices` (any int sequence or tensor), same constants."""
    idx = torch.as_tensor(indices, dtype=torch.long)
    return ImageSet(imageset.images[idx], imageset.labels[idx], imageset.num_classes,
                    imageset.mean, imageset.std, imageset.pad)
