"""The strict IDX reader and writer: round trips, every malformed input, and a property test."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnn_cli.data.idx import IdxError, gunzip, idx_bytes, parse_idx, read_idx, write_idx
from bnn_cli.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
SHAPES = [(5,), (3, 4), (2, 3, 4), (0, 28, 28), (1, 1, 1, 2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("suffix", [".gz", ".idx"])
def test_write_then_read_round_trips(tmp_path, dtype, shape, suffix):
    array = (np.arange(np.prod(shape)) - 3).reshape(shape).astype(dtype)
    path = tmp_path / f"data{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)
    assert back.dtype.isnative
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)


def test_bytes_are_big_endian_with_the_documented_header():
    data = idx_bytes(np.array([[1, 2]], dtype="<i2"))
    assert data == b"\x00\x00\x0b\x02" + b"\x00\x00\x00\x01\x00\x00\x00\x02" + b"\x00\x01\x00\x02"


def test_compression_follows_the_suffix_unless_told(tmp_path):
    array = np.arange(4, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.idx", array)
    write_idx(tmp_path / "c.idx", array, compress=True)
    write_idx(tmp_path / "d.gz", array, compress=False)
    assert (tmp_path / "a.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "b.idx").read_bytes()[:2] == b"\x00\x00"
    assert (tmp_path / "c.idx").read_bytes()[:2] == b"\x1f\x8b"
    # A raw file under a .gz name (as some tools save it) is still read: by content, not suffix.
    np.testing.assert_array_equal(read_idx(tmp_path / "d.gz"), array)


def test_compressed_output_is_reproducible(tmp_path):
    array = np.arange(100, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros(3, dtype=np.int64), "IDX cannot store dtype int64"),
        (np.zeros(3, dtype=np.uint16), "IDX cannot store dtype uint16"),
        (np.array(5, dtype=np.uint8), "IDX needs 1 to 255 dimensions, got an array with 0"),
    ],
)
def test_writer_rejects_what_idx_cannot_hold(array, message):
    with pytest.raises(ValueError, match=message):
        idx_bytes(array)


def header(code: int, *sizes: int) -> bytes:
    return struct.pack(f">BBBB{len(sizes)}I", 0, 0, code, len(sizes), *sizes)


MALFORMED = [
    ("empty", b"", "not an IDX file: 0 bytes, shorter than the 4-byte magic number"),
    ("short header", b"\x00\x00\x08", "not an IDX file: 3 bytes, shorter than the 4-byte magic"),
    (
        "bad magic",
        b"\x01\x00\x08\x01" + b"\x00" * 8,
        "not an IDX file: the magic number must start with two zero bytes, found 0x01 0x00",
    ),
    ("gzip given to parse_idx", gzip.compress(b"x"), "found 0x1f 0x8b (it looks gzip-compressed)"),
    (
        "unknown dtype",
        b"\x00\x00\x07\x01\x00\x00\x00\x01x",
        "unknown IDX data type code 0x07 (known: 0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int, "
        "0x0D float, 0x0E double)",
    ),
    ("zero dims", b"\x00\x00\x08\x00", "the header declares 0 dimensions (at least 1 is needed)"),
    (
        "too many dims",
        b"\x00\x00\x08\xc8" + b"\x00" * 800,
        "the header declares 200 dimensions (at most",
    ),
    (
        "sizes cut off",
        header(0x08, 2, 3)[:9],
        "header truncated: 2 dimensions need a 12-byte header, the file has 9 bytes",
    ),
    (
        "payload too short",
        header(0x08, 2, 3) + b"\x00" * 5,
        "payload too short: the header declares shape (2, 3) of ubyte = 6 bytes after the "
        "header, the file has 5",
    ),
    (
        "payload too long",
        header(0x0C, 2) + b"\x00" * 9,
        "payload too long: the header declares shape (2,) of int = 8 bytes after the header, "
        "the file has 9",
    ),
    (
        "huge declared size",
        header(0x0E, 0xFFFFFFFF, 0xFFFFFFFF) + b"\x00" * 8,
        "payload too short: the header declares shape (4294967295, 4294967295) of double",
    ),
]


@pytest.mark.parametrize(
    ("data", "message"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_input_names_the_file_and_the_problem(data, message):
    with pytest.raises(DataError) as caught:
        parse_idx(data, "train-images-idx3-ubyte.gz")
    assert str(caught.value).startswith("cannot read 'train-images-idx3-ubyte.gz': ")
    assert message in str(caught.value)


def test_a_zero_size_array_with_an_impossible_shape_is_a_data_error():
    with pytest.raises(DataError, match=r"unsupported shape \(0, 4294967295, 4294967295"):
        parse_idx(header(0x08, 0, 0xFFFFFFFF, 0xFFFFFFFF), "f")


def test_truncated_gzip_is_named(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(path, np.arange(1000, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError) as caught:
        read_idx(path)
    assert str(caught.value) == (
        f"cannot read '{path}': truncated gzip stream (it ends before the end-of-stream "
        "marker; an interrupted download?)"
    )


def test_corrupt_gzip_is_named(tmp_path):
    path = tmp_path / "labels.gz"
    data = bytearray(gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32)), mtime=0))
    data[-8] ^= 0xFF  # the CRC-32 in the trailer
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"cannot read '{path}': corrupt gzip stream \(CRC"):
        read_idx(path)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read .*nope.gz': No such file or directory"):
        read_idx(tmp_path / "nope.gz")


def test_gunzip_refuses_a_decompression_bomb():
    with pytest.raises(IdxError, match="decompresses to more than 1000 bytes"):
        gunzip(gzip.compress(b"\x00" * 5000), "bomb.gz", limit=1000)


def test_gunzip_refuses_what_is_not_gzip():
    with pytest.raises(IdxError, match=r"not a gzip file \(starts with b'<htm'\)"):
        gunzip(b"<html></html>", "page.gz")


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_give_an_array_or_a_data_error(data):
    try:
        result = parse_idx(data, "fuzz")
    except DataError:
        return
    assert isinstance(result, np.ndarray)


@st.composite
def near_valid_idx(draw):
    """Well-formed headers with small sizes and payloads of about the right length, so the
    property test also explores the paths past the header checks."""
    code = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x0A, 0x00]))
    sizes = draw(st.lists(st.integers(0, 4), min_size=0, max_size=4))
    payload = draw(st.binary(max_size=8 * 4**3))
    return struct.pack(f">BBBB{len(sizes)}I", 0, 0, code, len(sizes), *sizes) + payload


@given(near_valid_idx())
@settings(max_examples=300, deadline=None)
def test_near_valid_bytes_give_an_array_or_a_data_error(data):
    try:
        result = parse_idx(data, "fuzz")
    except DataError:
        return
    assert result.ndim == data[3]
