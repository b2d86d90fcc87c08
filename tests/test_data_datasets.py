"""The dataset registry, the data directory's resolution, and the train/val/test splits."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest

from bnn_cli.config import CHOICES, DATASET_NAMES
from bnn_cli.data.datasets import (
    DATASETS,
    Splits,
    load_ood_images,
    load_splits,
    resolve_data_dir,
)
from bnn_cli.data.idx import write_idx
from bnn_cli.errors import ConfigError, DataError


def test_registry_lists_both_datasets_with_four_files_and_mirrors():
    names = [f.name for f in DATASETS["mnist"].files]
    assert names == [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    assert [f.name for f in DATASETS["fashion-mnist"].files] == names
    assert all(f.sha256 and f.gz_sha256 for f in DATASETS["mnist"].files)
    assert all(f.sha256 and f.gz_sha256 for f in DATASETS["fashion-mnist"].files)
    assert DATASETS["mnist"].mirrors[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert len(DATASETS["fashion-mnist"].class_names) == 10


def test_every_dataset_a_config_may_name_has_its_spec_and_no_other():
    assert tuple(DATASETS) == DATASET_NAMES
    assert CHOICES["data.dataset"] == CHOICES["evaluate.ood"] == DATASET_NAMES


def test_data_dir_option_then_environment_then_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("BNN_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir(str(tmp_path / "opt")) == tmp_path / "opt"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("BNN_DATA_DIR")
    assert resolve_data_dir(None) == tmp_path / "xdg" / "bnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir(None) == tmp_path / "home" / ".cache" / "bnn"


def test_splits_have_the_documented_shapes_types_and_ranges(tmp_path, make_synthetic_dataset):
    make_synthetic_dataset(tmp_path / "mnist", n_train=30, n_test=12)
    splits = load_splits("mnist", tmp_path, train_size=20, val_size=6)
    assert isinstance(splits, Splits)
    for x, y, n in (
        (splits.x_train, splits.y_train, 20),
        (splits.x_val, splits.y_val, 6),
        (splits.x_test, splits.y_test, 12),
    ):
        assert x.shape == (n, 28, 28) and x.dtype == np.float32
        assert y.shape == (n,) and y.dtype == np.int64
        assert 0.0 <= x.min() and x.max() <= 1.0
    # Pixel [0, 0] of image i is i / 255: train is the first 20, val the LAST 6 of 30.
    np.testing.assert_allclose(splits.x_train[:, 0, 0] * 255, np.arange(20), atol=1e-4)
    np.testing.assert_allclose(splits.x_val[:, 0, 0] * 255, np.arange(24, 30), atol=1e-4)
    np.testing.assert_array_equal(splits.y_val, np.arange(24, 30) % 10)
    np.testing.assert_array_equal(splits.y_test, np.arange(12) % 10)


def test_an_empty_validation_split_is_empty_not_everything(tmp_path, make_synthetic_dataset):
    make_synthetic_dataset(tmp_path / "mnist")
    splits = load_splits("mnist", tmp_path, train_size=30, val_size=0)
    assert splits.x_val.shape == (0, 28, 28) and splits.y_val.shape == (0,)


def test_returned_arrays_are_fresh_copies(tmp_path, make_synthetic_dataset):
    make_synthetic_dataset(tmp_path / "mnist")
    first = load_splits("mnist", tmp_path, train_size=10, val_size=5)
    first.x_train[:] = 0
    first.y_train[:] = 0
    second = load_splits("mnist", tmp_path, train_size=10, val_size=5)
    assert second.x_train[1, 0, 0] > 0 and second.y_train[1] == 1


def test_a_replaced_file_is_read_again(tmp_path, make_synthetic_dataset):
    make_synthetic_dataset(tmp_path / "mnist", n_test=12)
    assert len(load_splits("mnist", tmp_path, 10, 5).x_test) == 12
    make_synthetic_dataset(tmp_path / "mnist", n_test=7)
    assert len(load_splits("mnist", tmp_path, 10, 5).x_test) == 7


def test_a_missing_data_dir_says_how_to_download(tmp_path):
    with pytest.raises(DataError) as caught:
        load_splits("mnist", tmp_path, 10, 5)
    assert str(caught.value) == (
        f"no mnist data in '{tmp_path / 'mnist'}' (run 'bnn download-mnist --data-dir "
        f"{tmp_path}' first, or pass --data-dir pointing to the folder that holds mnist/)"
    )


def test_pointing_at_the_dataset_folder_itself_suggests_its_parent(
    tmp_path, make_synthetic_dataset
):
    make_synthetic_dataset(tmp_path / "mnist")
    with pytest.raises(DataError) as caught:
        load_splits("mnist", tmp_path / "mnist", 10, 5)
    assert str(caught.value) == (
        f"no mnist data in '{tmp_path / 'mnist' / 'mnist'}'; '{tmp_path / 'mnist'}' holds the "
        f"files itself, so pass its parent: --data-dir {tmp_path}"
    )


def test_the_hint_names_the_dataset_when_not_mnist(tmp_path):
    with pytest.raises(DataError, match="run 'bnn download-mnist --dataset fashion-mnist "):
        load_splits("fashion-mnist", tmp_path, 10, 5)


def test_a_missing_file_is_named(tmp_path, make_synthetic_dataset):
    make_synthetic_dataset(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as caught:
        load_splits("mnist", tmp_path, 10, 5)
    assert str(caught.value).startswith(
        f"'{tmp_path / 'mnist' / 't10k-labels-idx1-ubyte.gz'}' is missing (run 'bnn "
        f"download-mnist --data-dir {tmp_path}' first"
    )


def test_mismatched_counts_name_both_files(tmp_path, make_synthetic_dataset):
    folder = tmp_path / "mnist"
    make_synthetic_dataset(folder, n_train=30)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(29, dtype=np.uint8))
    with pytest.raises(DataError) as caught:
        load_splits("mnist", tmp_path, 10, 5)
    assert str(caught.value) == (
        f"'{folder / 'train-images-idx3-ubyte.gz'}' has 30 images but "
        f"'{folder / 'train-labels-idx1-ubyte.gz'}' has 29 labels"
    )


def test_a_wrong_image_shape_is_named(tmp_path, make_synthetic_dataset):
    folder = tmp_path / "mnist"
    make_synthetic_dataset(folder, image_shape=(8, 8))
    with pytest.raises(DataError) as caught:
        load_splits("mnist", tmp_path, 10, 5)
    assert str(caught.value) == (
        f"'{folder / 'train-images-idx3-ubyte.gz'}' holds uint8 images of shape (30, 8, 8); "
        "expected uint8 (n, 28, 28)"
    )


def test_a_label_out_of_range_is_named(tmp_path, make_synthetic_dataset):
    folder = tmp_path / "mnist"
    make_synthetic_dataset(folder, n_test=12)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.full(12, 10, dtype=np.uint8))
    with pytest.raises(
        DataError,
        match=r"t10k-labels-idx1-ubyte.gz' has label 10; mnist has "
        r"10 classes \(0 to 9\)",
    ):
        load_splits("mnist", tmp_path, 10, 5)


def test_a_corrupt_file_is_a_data_error(tmp_path, make_synthetic_dataset):
    folder = tmp_path / "mnist"
    make_synthetic_dataset(folder)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=f"cannot read '{path}': truncated gzip stream"):
        load_splits("mnist", tmp_path, 10, 5)


def test_asking_for_more_images_than_exist(tmp_path, make_synthetic_dataset):
    make_synthetic_dataset(tmp_path / "mnist", n_train=30)
    with pytest.raises(DataError) as caught:
        load_splits("mnist", tmp_path, 25, 10)
    assert str(caught.value) == (
        "train_size + val_size = 25 + 10 exceeds the 30 training images of mnist in "
        f"'{tmp_path / 'mnist'}'"
    )


@pytest.mark.parametrize(("train_size", "val_size"), [(0, 5), (10, -1)])
def test_nonsense_sizes_are_a_configuration_error(tmp_path, train_size, val_size):
    with pytest.raises(ConfigError, match="train_size must be >= 1 and val_size >= 0"):
        load_splits("mnist", tmp_path, train_size, val_size)


def test_an_unknown_dataset_is_a_configuration_error(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"unknown dataset 'cifar' \(known: fashion-mnist, "
        r"mnist\)",
    ):
        load_splits("cifar", tmp_path, 10, 5)


def test_the_real_mnist_files_give_the_original_experiments_splits(real_data_dir):
    splits = load_splits("mnist", real_data_dir, train_size=50_000, val_size=10_000)
    assert splits.x_train.shape == (50_000, 28, 28)
    assert splits.x_val.shape == (10_000, 28, 28)
    assert splits.x_test.shape == (10_000, 28, 28)
    assert splits.x_train.min() == 0.0 and splits.x_train.max() == 1.0
    # The well-known first labels: training starts 5, 0, 4, 1; the test set 7, 2, 1, 0.
    assert splits.y_train[:4].tolist() == [5, 0, 4, 1]
    assert splits.y_test[:4].tolist() == [7, 2, 1, 0]
    assert np.bincount(splits.y_test).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]


def test_ood_images_are_the_test_images_or_the_last_training_ones(tmp_path, make_synthetic_dataset):
    make_synthetic_dataset(tmp_path / "fashion-mnist", n_train=30, n_test=12)
    test = load_ood_images("fashion-mnist", tmp_path, "test", 5)
    assert test.shape == (12, 28, 28) and test.dtype == np.float32
    val = load_ood_images("fashion-mnist", tmp_path, "val", 8)
    np.testing.assert_allclose(val[:, 0, 0] * 255, np.arange(22, 30), atol=1e-4)


def test_a_missing_ood_set_says_how_to_fetch_it(tmp_path):
    with pytest.raises(DataError, match="run 'bnn download-mnist --dataset fashion-mnist "):
        load_ood_images("fashion-mnist", tmp_path, "test", 10)


def test_the_real_fashion_files_match_the_registry_checksums(real_fashion_dir):
    for spec in DATASETS["fashion-mnist"].files:
        content = gzip.decompress((real_fashion_dir / "fashion-mnist" / spec.name).read_bytes())
        assert hashlib.sha256(content).hexdigest() == spec.sha256, spec.name
