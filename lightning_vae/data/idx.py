"""Read IDX files (the MNIST family's format), gzipped or not, and check them cheaply.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the array in C order, big-endian.

Files are recognised by content, not by hash: the same IDX bytes can sit in ``.gz`` files whose
MD5 differs (Debian's and our packaged MNIST/Fashion-MNIST were recompressed), so
:func:`idx_mismatch` compares the header and the uncompressed size instead. For a ``.gz`` that
size is read from the gzip trailer, so the check costs two small reads, not a decompression.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"
MAX_HEADER_BYTES = 4 + 4 * 255
MAX_IDX_BYTES = 1 << 31
"""Largest IDX payload read (2 GiB; MNIST's training images are 47 MB): a header declaring more
is refused before anything is decompressed."""

# IDX type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


REFETCH = ("delete it and download it again (pass download=True to the datamodule, or fetch "
           "it from a mirror by hand).")
"""What to do with a damaged file, when nothing more is known about it; a datamodule, which
knows its data set and its ``download`` option, says more (``sources.refetch_advice``)."""


class IDXError(ValueError):
    """An IDX file that cannot be read: corrupt, truncated or not IDX at all."""

    def __init__(self, path: str | Path, problem: str, fix: str = REFETCH) -> None:
        self.path, self.problem = Path(path), problem
        # The message without the path, for messages that name the file already.
        self.reason = f"{problem}. The file is damaged or not an IDX file: {fix}"
        super().__init__(f"{path}: {self.reason}")


@dataclass(frozen=True)
class IDXHeader:
    """What an IDX header declares: element type and shape, and the header's length."""

    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def header_bytes(self) -> int:
        return 4 + 4 * len(self.shape)

    @property
    def payload_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def total_bytes(self) -> int:
        """Size of the uncompressed file this header describes."""
        return self.header_bytes + self.payload_bytes


def is_gzip(path: str | Path) -> bool:
    """True when the file starts with the gzip magic bytes (whatever its extension)."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def _parse_header(path: str | Path, head: bytes) -> IDXHeader:
    """Parse the magic number and dimensions from the first bytes of an uncompressed IDX file."""
    if len(head) < 4:
        raise IDXError(path, f"only {len(head)} bytes, expected at least a 4-byte magic number")
    zero, code, ndim = head[:2], head[2], head[3]
    if zero != b"\x00\x00":
        raise IDXError(
            path, f"bad magic number {head[:4].hex()}: expected two zero bytes, got {zero.hex()}"
        )
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise IDXError(path, f"unknown IDX type code 0x{code:02x} (expected one of {known})")
    if ndim == 0:
        raise IDXError(path, "magic number declares 0 dimensions, expected at least 1")
    if len(head) < 4 + 4 * ndim:
        raise IDXError(
            path, f"header declares {ndim} dimensions but the file has only {len(head)} bytes"
        )
    shape = struct.unpack(f">{ndim}I", head[4 : 4 + 4 * ndim])
    return IDXHeader(dtype=IDX_DTYPES[code], shape=tuple(int(s) for s in shape))


def read_idx_header(path: str | Path) -> IDXHeader:
    """Read only the header of an IDX file (gzipped or not)."""
    opener = gzip.open if is_gzip(path) else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) == 4:
                head += f.read(4 * head[3])
    except (OSError, EOFError, zlib.error) as err:
        raise IDXError(path, f"cannot decompress the header ({err})") from err
    return _parse_header(path, head)


def _stored_size(path: Path) -> int:
    """Uncompressed size: the file size, or for gzip the trailer's ISIZE (size mod 2**32)."""
    if not is_gzip(path):
        return path.stat().st_size
    with open(path, "rb") as f:
        f.seek(-4, 2)
        return struct.unpack("<I", f.read(4))[0]


def idx_mismatch(
    path: str | Path, shape: tuple[int | None, ...], dtype: np.dtype | str = "u1"
) -> str | None:
    """Say why ``path`` is not an IDX file of ``shape`` and ``dtype``, or None when it is.

    ``None`` in ``shape`` matches any length (``(None, 28, 28)``: any number of 28x28 images).
    Cheap (header and size only), so it can scan candidate folders. A gzip file's size comes
    from its trailer, which catches most truncations; :func:`read_idx` checks everything.
    """
    path = Path(path)
    try:
        header = read_idx_header(path)
        size = _stored_size(path)
    except IDXError as err:
        return err.reason
    except OSError as err:
        return err.strerror or str(err)
    have, want = header.dtype.newbyteorder("="), np.dtype(dtype).newbyteorder("=")
    shape_ok = len(header.shape) == len(shape) and all(
        want_n is None or want_n == n for n, want_n in zip(header.shape, shape, strict=True)
    )
    if not shape_ok or have != want:
        wanted = "(" + ", ".join("N" if n is None else str(n) for n in shape) + ")"
        return f"header declares {have} {header.shape}, expected {want} {wanted}"
    if size != header.total_bytes % 2**32:
        return (
            f"uncompressed size is {size} bytes, expected {header.total_bytes} for shape "
            f"{header.shape} (truncated?)"
        )
    return None


def read_idx_bytes(path: str | Path, limit: int | None = None) -> bytes:
    """The uncompressed bytes of an IDX file, gzipped (detected from its content) or not; at
    most ``limit`` + 1 bytes are read (decompressed), so a gzip stream that inflates past what
    its header declares (a decompression bomb) costs no more memory than a true file.

    Raises :class:`IDXError` naming the file when the gzip stream is corrupt or truncated.
    """
    path = Path(path)
    size = -1 if limit is None else limit + 1
    try:
        if is_gzip(path):
            with gzip.open(path, "rb") as f:
                return f.read(size)
        with open(path, "rb") as f:
            return f.read(size)
    except EOFError as err:
        raise IDXError(path, f"the gzip stream ends early, the download was cut ({err})") from err
    except (OSError, zlib.error) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise IDXError(path, f"corrupt gzip stream ({err})") from err


def read_idx(path: str | Path) -> np.ndarray:
    """Read a whole IDX file (gzip detected from its content) into a native-endian array.

    Raises :class:`IDXError` (a ValueError) naming the file when the gzip stream is corrupt or
    truncated, the magic number is wrong, the data length differs from the header's shape, or
    the header declares more than ``MAX_IDX_BYTES``. No more than the header declares is ever
    decompressed.
    """
    path = Path(path)
    header = read_idx_header(path)
    if header.payload_bytes > MAX_IDX_BYTES:
        raise IDXError(path, f"header declares shape {header.shape} ({header.payload_bytes} "
                       f"data bytes), more than the {MAX_IDX_BYTES} read from an IDX file")
    data = read_idx_bytes(path, limit=header.total_bytes)
    actual = len(data) - header.header_bytes
    if actual > header.payload_bytes:
        raise IDXError(path, f"header declares shape {header.shape} ({header.payload_bytes} "
                       "data bytes) but the file holds more (reading stopped there)")
    if actual != header.payload_bytes:
        raise IDXError(
            path,
            f"header declares shape {header.shape} ({header.payload_bytes} data bytes) "
            f"but the file holds {actual} data bytes",
        )
    array = np.frombuffer(data, dtype=header.dtype, offset=header.header_bytes)
    return array.reshape(header.shape).astype(header.dtype.newbyteorder("="))
