"""A strict reader and writer for the IDX format of the MNIST files.

An IDX file is a 4-byte magic number (two zero bytes, a data-type code, the number of
dimensions), one big-endian uint32 size per dimension, then the values in C order, big-endian.
The reader checks every part of that and reports what is wrong as a `DataError` naming the file:
a damaged download must never turn into a silently wrong array.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from pathlib import Path

import numpy as np

from bnn_cli.atomic import atomic_write_bytes
from bnn_cli.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"

# IDX data-type code -> (big-endian numpy dtype, the name the format's spec uses).
IDX_TYPES: dict[int, tuple[np.dtype, str]] = {
    0x08: (np.dtype(">u1"), "ubyte"),
    0x09: (np.dtype(">i1"), "byte"),
    0x0B: (np.dtype(">i2"), "short"),
    0x0C: (np.dtype(">i4"), "int"),
    0x0D: (np.dtype(">f4"), "float"),
    0x0E: (np.dtype(">f8"), "double"),
}

# numpy's own limit on the number of dimensions (32 before numpy 2, 64 since).
MAX_DIMS = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32


class IdxError(DataError):
    """A malformed IDX or gzip file. `problem` is the reason without the file's name, so that
    the downloader can list it per mirror."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"cannot read '{name}': {problem}")
        self.name = name
        self.problem = problem


def parse_idx(data: bytes, name: str) -> np.ndarray:
    """Parse the (decompressed) bytes of an IDX file into a native-endian, writable array.

    Raises `IdxError` (a `DataError`) naming `name` for any malformed header or payload.
    """
    dtype, type_name, shape = _parse_header(data, name)
    header_len = 4 + 4 * len(shape)
    expected = _payload_bytes(shape, dtype)
    actual = len(data) - header_len
    if actual != expected:
        which = "short" if actual < expected else "long"
        raise IdxError(
            name,
            f"payload too {which}: the header declares shape {_fmt(shape)} of "
            f"{type_name} = {expected} bytes after the header, the file has "
            f"{actual}",
        )
    values = np.frombuffer(data, dtype=dtype, offset=header_len)
    try:
        return values.astype(dtype.newbyteorder("="), copy=True).reshape(shape)
    except ValueError as exc:  # a zero-size array whose other dimensions overflow numpy
        raise IdxError(name, f"unsupported shape {_fmt(shape)} ({exc})") from None


def _parse_header(data: bytes, name: str) -> tuple[np.dtype, str, tuple[int, ...]]:
    if len(data) < 4:
        raise IdxError(
            name, f"not an IDX file: {len(data)} bytes, shorter than the 4-byte magic number"
        )
    if data[0] != 0 or data[1] != 0:
        hint = " (it looks gzip-compressed)" if data[:2] == GZIP_MAGIC else ""
        raise IdxError(
            name,
            "not an IDX file: the magic number must start with two zero "
            f"bytes, found 0x{data[0]:02x} 0x{data[1]:02x}{hint}",
        )
    code, ndim = data[2], data[3]
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X} {t}" for c, (_, t) in IDX_TYPES.items())
        raise IdxError(name, f"unknown IDX data type code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise IdxError(name, "the header declares 0 dimensions (at least 1 is needed)")
    if ndim > MAX_DIMS:
        raise IdxError(
            name, f"the header declares {ndim} dimensions (at most {MAX_DIMS} are supported)"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IdxError(
            name,
            f"header truncated: {ndim} dimensions need a {header_len}-byte "
            f"header, the file has {len(data)} bytes",
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype, type_name = IDX_TYPES[code]
    return dtype, type_name, shape


def _payload_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    # Python integers: the product of uint32 sizes must not wrap around as numpy's would.
    count = 1
    for size in shape:
        count *= size
    return count * dtype.itemsize


def _fmt(shape: tuple[int, ...]) -> str:
    return str(tuple(shape))


def gunzip(data: bytes, name: str, limit: int | None = None) -> bytes:
    """Decompress a gzip stream; a truncated or corrupt stream, or one that expands beyond
    `limit` bytes (a guard against decompression bombs from a hostile mirror), is an `IdxError`."""
    if data[:2] != GZIP_MAGIC:
        raise IdxError(name, f"not a gzip file (starts with {data[:4]!r})")
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            result = stream.read() if limit is None else stream.read(limit + 1)
    except EOFError:
        raise IdxError(
            name,
            "truncated gzip stream (it ends before the end-of-stream "
            "marker; an interrupted download?)",
        ) from None
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise IdxError(name, f"corrupt gzip stream ({exc})") from None
    if limit is not None and len(result) > limit:
        raise IdxError(name, f"decompresses to more than {limit} bytes")
    return result


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw.

    Compression is recognised by the content, not the suffix: IDX files start with two zero
    bytes and gzip with 1f 8b, and some tools save a decompressed file under its `.gz` name.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read '{path}': {exc.strerror or exc}") from None
    if data[:2] == GZIP_MAGIC:
        data = gunzip(data, str(path))
    return parse_idx(data, str(path))


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of `array` (uint8, int8, int16, int32, float32 or float64)."""
    array = np.asarray(array)
    code = _idx_code(array.dtype)
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got an array with {array.ndim}")
    if any(size > 0xFFFFFFFF for size in array.shape):
        raise ValueError(f"IDX sizes must fit in 32 bits, got shape {array.shape}")
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, code, array.ndim, *array.shape)
    big_endian = IDX_TYPES[code][0]
    return header + np.ascontiguousarray(array, dtype=big_endian).tobytes()


def _idx_code(dtype: np.dtype) -> int:
    for code, (idx_dtype, _) in IDX_TYPES.items():
        if dtype.kind == idx_dtype.kind and dtype.itemsize == idx_dtype.itemsize:
            return code
    supported = ", ".join(str(d.newbyteorder("=")) for d, _ in IDX_TYPES.values())
    raise ValueError(f"IDX cannot store dtype {dtype} (supported: {supported})")


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write `array` as an IDX file, atomically; gzip it when `compress` is true (by default
    when the name ends in `.gz`). The gzip header carries no timestamp, so equal arrays give
    equal bytes."""
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    data = idx_bytes(array)
    if compress:
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(path, data)
