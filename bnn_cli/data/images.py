"""Image files -> MNIST-format arrays: float32 (28, 28) in [0, 1], a white digit on black.

Pictures (PNG, JPEG, anything Pillow reads) are made the way MNIST's digits were (LeCun et al.):
the digit is fitted into a 20x20 box keeping its aspect ratio, anti-aliased, and the box is placed
in the 28x28 image so that the digit's centre of mass lies at pixel (14, 14), where MNIST's
digits have it on average. Before that the picture becomes grayscale (transparent parts over
white, as a viewer shows them) and is inverted when its background (the border) is light, so that
a dark digit on paper reads like MNIST's white digit on black.

`.npy` and IDX files already hold 28x28 images in MNIST's format and are taken as they are.
Every problem with a file is a `DataError` naming it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from bnn_cli.data.idx import GZIP_MAGIC, IDX_TYPES, gunzip, parse_idx
from bnn_cli.errors import DataError

SIDE = 28  # MNIST's image
BOX = 20  # the box the digit is fitted into
CENTRE = 14.0  # where MNIST's centre of mass lies, in pixel indices (its test set's mean: 14.0)
MAX_PIXELS = 40_000_000  # "huge": more than 40 megapixels is refused before it is decoded
MIN_CONTRAST = 0.1  # darkest vs lightest ink below 10 % of the range: a blank image
INK = 0.1  # pixels above 10 % of the peak ink bound the digit's box
# 1-bit, 8-bit grayscale, palette, RGB, each with or without transparency. Others (CMYK, 16-bit
# or 32-bit integer, float, YCbCr, LAB, HSV) are refused rather than guessed at.
MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX")
NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class NamedImage:
    """One image to classify: `name` says where it came from (`file` or `file[i]`)."""

    name: str
    pixels: np.ndarray  # float32 (28, 28) in [0, 1], white digit on black


def read_images(path: Path) -> list[NamedImage]:
    """The images in one file: one for a picture, one or more for an `.npy` or IDX file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read '{path}': {exc.strerror or exc}") from None
    if not data:
        raise DataError(f"'{path}' is empty (0 bytes)")
    if data.startswith(NPY_MAGIC):
        return _named(path, _array_images(path, _load_npy(path, data)))
    if _looks_like_idx(path, data):
        if data[:2] == GZIP_MAGIC:
            data = gunzip(data, str(path), limit=MAX_PIXELS)
        return _named(path, _array_images(path, parse_idx(data, str(path))))
    return [NamedImage(path.name, to_mnist(_picture(path, data), path))]


def _looks_like_idx(path: Path, data: bytes) -> bool:
    """IDX starts with two zero bytes and a type code (or is gzipped, as MNIST ships it); an
    image format Pillow knows by the file's suffix goes to Pillow (ICO also starts 00 00)."""
    if path.suffix.lower() in Image.registered_extensions():
        return False
    return data[:2] == GZIP_MAGIC or (
        data[:2] == b"\0\0" and data[2:3] != b"" and data[2] in IDX_TYPES
    )


def _load_npy(path: Path, data: bytes) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"cannot read '{path}' as .npy: {exc}") from None


def _array_images(path: Path, array: np.ndarray) -> np.ndarray:
    """(28, 28) or (n, 28, 28): uint8 0-255 (or other integers in that range) or floats in
    [0, 1]; returns float32 (n, 28, 28) in [0, 1]."""
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (SIDE, SIDE) or len(array) == 0:
        raise DataError(
            f"'{path}' holds an array of shape {array.shape}; expected 28x28 images: "
            "(28, 28) or (n, 28, 28)"
        )
    if array.dtype.kind in "iu":
        if array.min() < 0 or array.max() > 255:
            raise DataError(f"'{path}' holds integers outside 0..255")
        return (array / 255.0).astype(np.float32)
    if array.dtype.kind == "f" or array.dtype == bool:
        array = array.astype(np.float32)
        if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
            raise DataError(f"'{path}' holds values outside [0, 1] (floats must lie in [0, 1])")
        return array
    raise DataError(f"'{path}' holds {array.dtype} values, not pixel intensities")


def _named(path: Path, images: np.ndarray) -> list[NamedImage]:
    if len(images) == 1:
        return [NamedImage(path.name, images[0])]
    return [NamedImage(f"{path.name}[{i}]", image) for i, image in enumerate(images)]


def _picture(path: Path, data: bytes) -> np.ndarray:
    """Decode with Pillow into float64 grayscale (h, w) in [0, 1]; the first frame of an
    animation."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return _grayscale(path, image)
    except UnidentifiedImageError:
        raise DataError(
            f"'{path}' is not an image that Pillow can read, nor an .npy or IDX file"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(_huge(path, "its size")) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or corrupt data
        raise DataError(f"'{path}' is a corrupt or truncated image ({exc})") from None


def _grayscale(path: Path, image: Image.Image) -> np.ndarray:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise DataError(_huge(path, f"{width}x{height} pixels"))
    if image.mode not in MODES:
        raise DataError(
            f"'{path}' has image mode {image.mode}; bnn reads 1-bit, 8-bit grayscale, palette, "
            "RGB and RGBA images (save it as an 8-bit grayscale or RGB PNG)"
        )
    image.load()  # decode now: a truncated file fails here
    if "A" in image.mode or "a" in image.mode or "transparency" in image.info:
        white = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(white, image.convert("RGBA"))
    return np.asarray(image.convert("L"), dtype=np.float64) / 255.0


def _huge(path: Path, what: str) -> str:
    return f"'{path}' is too large ({what}); bnn reads images of up to {MAX_PIXELS:,} pixels"


def to_mnist(gray: np.ndarray, path: Path | str = "image") -> np.ndarray:
    """A grayscale picture (h, w) in [0, 1] -> float32 (28, 28), MNIST's recipe (see above)."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    ink = background - gray if background > 0.5 else gray - background
    ink = np.clip(ink, 0.0, None)
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise DataError(f"'{path}' holds no digit: the image is blank")
    ink /= peak
    rows = np.flatnonzero(ink.max(axis=1) > INK)
    cols = np.flatnonzero(ink.max(axis=0) > INK)
    return _centre_by_mass(_fit_box(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]))


def _fit_box(digit: np.ndarray) -> np.ndarray:
    """Resize so the longer side is 20 pixels, keeping the aspect ratio (Lanczos: anti-aliased
    when shrinking)."""
    height, width = digit.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(digit.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _centre_by_mass(box: np.ndarray) -> np.ndarray:
    """Place `box` in 28x28 so its centre of mass is at (14, 14), to the nearest pixel; what
    would fall outside the image is cut off (only for very lopsided digits)."""
    mass = box.sum()
    rows, cols = np.indices(box.shape)
    top = round(CENTRE - (rows * box).sum() / mass)
    left = round(CENTRE - (cols * box).sum() / mass)
    out = np.zeros((SIDE, SIDE), dtype=np.float32)
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + box.shape[0], SIDE), min(left + box.shape[1], SIDE)
    out[r0:r1, c0:c1] = box[r0 - top : r1 - top, c0 - left : c1 - left]
    return out
