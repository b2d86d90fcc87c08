"""Image files -> MNIST's format: the recipe (box, centre of mass, inversion), the file kinds, and
every kind of bad file as a one-line `DataError` naming it."""

import gzip

import numpy as np
import pytest
from PIL import Image

from bnn_cli.data.idx import idx_bytes, read_idx
from bnn_cli.data.images import BOX, MAX_PIXELS, read_images, to_mnist
from bnn_cli.errors import DataError


@pytest.fixture(scope="module")
def digits(request) -> tuple[np.ndarray, np.ndarray]:
    """The first 20 real MNIST test digits (uint8) and their labels."""
    from tests.conftest import REAL_DATA_DIR

    folder = REAL_DATA_DIR / "mnist"
    if not (folder / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST files not found in {folder}")
    images = read_idx(folder / "t10k-images-idx3-ubyte.gz")[:20]
    labels = read_idx(folder / "t10k-labels-idx1-ubyte.gz")[:20]
    return images, labels


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(image.shape)
    return (rows * image).sum() / image.sum(), (cols * image).sum() / image.sum()


def test_an_mnist_digit_saved_as_png_comes_back_as_it_was(digits, tmp_path):
    images, _ = digits
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        (read,) = read_images(tmp_path / f"{i}.png")
        assert read.name == f"{i}.png" and read.pixels.shape == (28, 28)
        assert read.pixels.dtype == np.float32 and 0 <= read.pixels.min() <= read.pixels.max() <= 1
        assert correlation(read.pixels, image) > 0.9, i


def test_dark_on_light_large_and_off_centre_is_inverted_fitted_and_centred(digits, tmp_path):
    """A black digit on white paper, 8 times larger, in the corner of a wide RGB JPEG."""
    image = digits[0][3]
    big = Image.fromarray(255 - image).resize((224, 224), Image.Resampling.BICUBIC)
    paper = Image.new("RGB", (900, 500), "white")
    paper.paste(big.convert("RGB"), (20, 30))
    paper.save(tmp_path / "paper.jpg", quality=90)
    (read,) = read_images(tmp_path / "paper.jpg")
    assert correlation(read.pixels, image) > 0.85
    rows, cols = centre_of_mass(read.pixels)
    assert abs(rows - 14) <= 0.5 and abs(cols - 14) <= 0.5
    ink_rows = np.flatnonzero(read.pixels.max(axis=1) > 0.05)
    assert ink_rows[-1] - ink_rows[0] + 1 <= BOX + 2  # Lanczos may ring one pixel further


def test_the_aspect_ratio_is_kept():
    """A tall bar, 100 x 20: fitted into 20 rows it is 4 columns wide, not 20."""
    gray = np.zeros((300, 200))
    gray[100:200, 90:110] = 1.0
    out = to_mnist(gray)
    rows = np.flatnonzero(out.max(axis=1) > 0.5)
    cols = np.flatnonzero(out.max(axis=0) > 0.5)
    assert len(rows) == BOX and len(cols) == 4


def test_transparency_counts_as_white_paper(digits, tmp_path):
    """A black digit drawn on a transparent background (alpha = the digit's ink)."""
    image = digits[0][0]
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)
    rgba[..., 3] = image
    Image.fromarray(rgba).save(tmp_path / "transparent.png")
    (read,) = read_images(tmp_path / "transparent.png")
    assert correlation(read.pixels, image) > 0.9


def test_npy_and_idx_files_are_taken_as_they_are(digits, tmp_path):
    images, _ = digits
    np.save(tmp_path / "three.npy", images[:3])
    read = read_images(tmp_path / "three.npy")
    assert [r.name for r in read] == ["three.npy[0]", "three.npy[1]", "three.npy[2]"]
    np.testing.assert_allclose(read[1].pixels, images[1] / 255.0, rtol=1e-6)
    np.save(tmp_path / "one.npy", images[4] / 255.0)
    (one,) = read_images(tmp_path / "one.npy")
    assert one.name == "one.npy"
    np.testing.assert_allclose(one.pixels, images[4] / 255.0, rtol=1e-6)
    (tmp_path / "digits-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images[:5])))
    (tmp_path / "digits-idx3-ubyte").write_bytes(idx_bytes(images[:2]))
    assert len(read_images(tmp_path / "digits-idx3-ubyte.gz")) == 5
    raw = read_images(tmp_path / "digits-idx3-ubyte")
    np.testing.assert_allclose(raw[1].pixels, images[1] / 255.0, rtol=1e-6)


def png_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


BAD_FILES = {
    "empty.png": (lambda: b"", "is empty (0 bytes)"),
    "text.png": (lambda: b"not a picture\n", "is not an image that Pillow can read"),
    "truncated.png": (lambda: _noise_png()[:2000], "is a corrupt or truncated image"),
    "huge.png": (
        lambda: png_bytes(Image.new("1", (7000, 7000))),
        f"is too large (7000x7000 pixels); bnn reads images of up to {MAX_PIXELS:,} pixels",
    ),
    "cmyk.jpg": (lambda: _jpeg(Image.new("CMYK", (40, 40))), "has image mode CMYK"),
    "sixteen.png": (
        lambda: png_bytes(Image.fromarray(np.full((40, 40), 300, dtype=np.uint16))),
        "has image mode I;16",
    ),
    "blank.png": (lambda: png_bytes(Image.new("L", (40, 40), 255)), "holds no digit"),
    "wrong.npy": (
        lambda: _npy(np.zeros((3, 32, 32), np.uint8)),
        "holds an array of shape (3, 32, 32); expected 28x28 images",
    ),
    "bright.npy": (lambda: _npy(np.full((28, 28), 2.0)), "holds values outside [0, 1]"),
    "objects.npy": (lambda: _npy(np.array([{}, 1], dtype=object)), "cannot read"),
}


def _noise_png() -> bytes:
    """Noise does not compress: half of its PNG lacks half of the pixels."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    return png_bytes(Image.fromarray(noise))


def _jpeg(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_bad_file_is_a_data_error_naming_it(tmp_path, name):
    make, expected = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(DataError) as caught:
        read_images(path)
    message = str(caught.value)
    assert f"'{path}'" in message and expected in message, message
    assert "\n" not in message


def test_a_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read .*No such file or directory"):
        read_images(tmp_path / "nowhere.png")
