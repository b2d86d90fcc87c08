"""Dataset shift for `bnn evaluate --shift`: the test images rotated by 0, 15, ..., 180 degrees,
the rotated-MNIST benchmark of Ovadia et al. (2019), "Can you trust your model's uncertainty?"."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bnn_cli.config import CHOICES

SHIFTS = CHOICES["evaluate.shift"]
ROTATION_ANGLES = tuple(range(0, 181, 15))


def rotate(images: np.ndarray, angle: float) -> np.ndarray:
    """(n, 28, 28) images rotated counter-clockwise by `angle` degrees about their centre,
    bilinear, in their own frame: what leaves the 28x28 square is cut, what enters it is black.
    Angle 0 gives the images unchanged."""
    from scipy import ndimage  # lazy: a quarter second to import, for rotated images only

    out = ndimage.rotate(images, angle, axes=(2, 1), reshape=False, order=1, mode="constant")
    return np.clip(out, 0.0, 1.0).astype(images.dtype, copy=False)


def shifted(name: str, images: np.ndarray) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (level, shifted images) for shift `name`: for `rotate`, each angle in degrees."""
    if name != "rotate":
        raise ValueError(f"unknown shift {name!r}; known: {', '.join(SHIFTS)}")
    for angle in ROTATION_ANGLES:
        yield angle, rotate(images, angle)
