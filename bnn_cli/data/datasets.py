"""The dataset registry (MNIST, Fashion-MNIST), where the files live, and the train/val/test
splits the experiments use.

Both datasets share file names and format: 28x28 uint8 images and uint8 labels 0-9 in four
gzip-compressed IDX files, so one loader serves both.
"""

from __future__ import annotations

import functools
import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnn_cli.data.idx import read_idx
from bnn_cli.errors import ConfigError, DataError

log = logging.getLogger(__name__)

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset and the checksums that accept it.

    `sha256` is of the decompressed IDX bytes, so any re-compression of the right content is
    accepted; `gz_sha256` is of the `.gz` as published. Either may be None when unknown (not
    both).
    """

    name: str
    sha256: str | None
    gz_sha256: str | None = None

    def __post_init__(self) -> None:
        if self.sha256 is None and self.gz_sha256 is None:
            raise ValueError(f"{self.name}: at least one checksum is needed to verify it")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    files: tuple[FileSpec, ...]
    mirrors: tuple[str, ...]  # base URLs; a file's URL is the base followed by its name
    class_names: tuple[str, ...]
    image_shape: tuple[int, int] = (28, 28)

    def file(self, name: str) -> FileSpec:
        for spec in self.files:
            if spec.name == name:
                return spec
        raise KeyError(name)


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        files=(
            FileSpec(
                TRAIN_IMAGES,
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            ),
            FileSpec(
                TRAIN_LABELS,
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            ),
            FileSpec(
                TEST_IMAGES,
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            ),
            FileSpec(
                TEST_LABELS,
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ),
        ),
        # yann.lecun.com is left out on purpose: it has served HTML error pages for years.
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        class_names=tuple(str(digit) for digit in range(10)),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        files=(
            FileSpec(
                TRAIN_IMAGES,
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            ),
            FileSpec(
                TRAIN_LABELS,
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            ),
            FileSpec(
                TEST_IMAGES,
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            ),
            FileSpec(
                TEST_LABELS,
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            ),
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
}


def get_spec(dataset: str) -> DatasetSpec:
    """The registry entry for `dataset`; an unknown name is a usage error."""
    try:
        return DATASETS[dataset]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise ConfigError(f"unknown dataset '{dataset}' (known: {known})") from None


def resolve_data_dir(value: str | Path | None, recorded: str | None = None) -> Path:
    """`--data-dir`, else `$BNN_DATA_DIR`, else `recorded` (where a run's training data came
    from, when that folder still exists), else the user cache directory. Each dataset lives in
    a sub-folder named after it."""
    if value:
        return Path(value).expanduser()
    if os.environ.get("BNN_DATA_DIR"):
        return Path(os.environ["BNN_DATA_DIR"]).expanduser()
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    cache = os.environ.get("XDG_CACHE_HOME")
    return (Path(cache).expanduser() if cache else Path.home() / ".cache") / "bnn"


@dataclass(frozen=True)
class Splits:
    """Images float32 (n, 28, 28) scaled to [0, 1]; labels int64 (n,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_splits(
    dataset: str, data_dir: str | Path | None, train_size: int, val_size: int
) -> Splits:
    """Train = the first `train_size` training images, val = the last `val_size` ones (the
    original experiment: 50k + 10k of the 60k), test = the 10k test images."""
    spec = get_spec(dataset)
    if train_size < 1 or val_size < 0:
        raise ConfigError(
            f"train_size must be >= 1 and val_size >= 0, got {train_size} and {val_size}"
        )
    folder = _dataset_folder(spec, data_dir)
    x_train_all, y_train_all = _load_pair(spec, folder, TRAIN_IMAGES, TRAIN_LABELS)
    x_test, y_test = _load_pair(spec, folder, TEST_IMAGES, TEST_LABELS)
    available = len(x_train_all)
    if train_size + val_size > available:
        raise DataError(
            f"train_size + val_size = {train_size} + {val_size} exceeds the "
            f"{available} training images of {dataset} in '{folder}'"
        )
    val_start = available - val_size  # not `-val_size`: that slice is everything when 0
    return Splits(
        x_train=_scale(x_train_all[:train_size]),
        y_train=_labels(y_train_all[:train_size]),
        x_val=_scale(x_train_all[val_start:]),
        y_val=_labels(y_train_all[val_start:]),
        x_test=_scale(x_test),
        y_test=_labels(y_test),
    )


def load_ood_images(
    dataset: str, data_dir: str | Path | None, split: str, count: int
) -> np.ndarray:
    """Out-of-distribution images for a network trained on another dataset: for the test split
    the set's test images, for the validation split its last `count` training images (settings
    are chosen on those, never on the test images). Scaled like `load_splits`."""
    spec = get_spec(dataset)
    folder = _dataset_folder(spec, data_dir)
    if split == "test":
        images, _ = _load_pair(spec, folder, TEST_IMAGES, TEST_LABELS)
    else:
        images, _ = _load_pair(spec, folder, TRAIN_IMAGES, TRAIN_LABELS)
        images = images[len(images) - min(count, len(images)) :]
    return _scale(images)


def _dataset_folder(spec: DatasetSpec, data_dir: str | Path | None) -> Path:
    base = resolve_data_dir(data_dir)
    folder = base / spec.name
    if not folder.is_dir():
        if (base / TRAIN_IMAGES).is_file():  # a common slip: the dataset's folder itself
            raise DataError(
                f"no {spec.name} data in '{folder}'; '{base}' holds the files itself, so pass "
                f"its parent: --data-dir {shlex.quote(str(base.parent))}"
            )
        raise DataError(f"no {spec.name} data in '{folder}' ({_download_hint(spec, base)})")
    return folder


def _download_hint(spec: DatasetSpec, base: Path) -> str:
    dataset_option = "" if spec.name == "mnist" else f" --dataset {spec.name}"
    return (
        f"run 'bnn download-mnist{dataset_option} --data-dir {shlex.quote(str(base))}' "
        "first, or pass --data-dir pointing to the folder that holds "
        f"{spec.name}/"
    )


def _load_pair(
    spec: DatasetSpec, folder: Path, images_name: str, labels_name: str
) -> tuple[np.ndarray, np.ndarray]:
    images = _load_file(spec, folder / images_name)
    labels = _load_file(spec, folder / labels_name)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != spec.image_shape:
        raise DataError(
            f"'{folder / images_name}' holds {images.dtype} images of shape "
            f"{images.shape}; expected uint8 (n, {spec.image_shape[0]}, "
            f"{spec.image_shape[1]})"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"'{folder / labels_name}' holds {labels.dtype} labels of shape "
            f"{labels.shape}; expected uint8 (n,)"
        )
    if len(images) != len(labels):
        raise DataError(
            f"'{folder / images_name}' has {len(images)} images but "
            f"'{folder / labels_name}' has {len(labels)} labels"
        )
    classes = len(spec.class_names)
    if labels.size and int(labels.max()) >= classes:
        raise DataError(
            f"'{folder / labels_name}' has label {int(labels.max())}; {spec.name} "
            f"has {classes} classes (0 to {classes - 1})"
        )
    return images, labels


def _load_file(spec: DatasetSpec, path: Path) -> np.ndarray:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DataError(
            f"'{path}' is missing ({_download_hint(spec, path.parent.parent)})"
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read '{path}': {exc.strerror or exc}") from None
    # mtime and size in the key: a file replaced by a new download is read again.
    return _read_idx_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: str, mtime_ns: int, size: int) -> np.ndarray:
    """Decompressing the 47 MB training images costs about a second; tests and sweeps load the
    same files many times per process. Read-only, so no caller can alter the cached copy."""
    log.debug("reading %s (%d bytes)", path, size)
    array = read_idx(Path(path))
    array.setflags(write=False)
    return array


def _scale(images: np.ndarray) -> np.ndarray:
    scaled = images.astype(np.float32)
    scaled /= np.float32(255.0)
    return scaled


def _labels(labels: np.ndarray) -> np.ndarray:
    return labels.astype(np.int64)
