"""IDX files that lie (data/idx.py, mnist.py): a gzip stream that inflates far past what its
header and trailer declare, a header declaring more than can be read, labels outside 0..9."""

import gzip
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from idx_files import write_idx

from lightning_vae.data import IDXError, MNISTDataModule, idx_mismatch, read_idx
from lightning_vae.data.idx import MAX_IDX_BYTES


def inflating_idx(path: Path, declared: int, inflated: int) -> Path:
    """A .gz whose IDX header declares ``declared`` bytes of uint8, whose gzip trailer (ISIZE)
    agrees, and whose stream inflates to ``inflated`` bytes of data."""
    header = bytes([0, 0, 0x08, 1]) + struct.pack(">I", declared)
    with gzip.open(path, "wb", compresslevel=1) as stream:
        stream.write(header)
        block = bytes(1 << 20)
        for _ in range(inflated // len(block)):
            stream.write(block)
    data = bytearray(path.read_bytes())
    data[-4:] = struct.pack("<I", (len(header) + declared) % 2**32)
    path.write_bytes(bytes(data))
    return path


def test_a_gzip_that_inflates_past_its_header_is_refused_without_inflating_it(tmp_path):
    path = inflating_idx(tmp_path / "bomb-idx1-ubyte.gz", declared=1000, inflated=64 << 20)
    assert idx_mismatch(path, (None,)) is None  # the cheap check cannot see it
    tracemalloc.start()
    try:
        with pytest.raises(IDXError, match=f"{path}: header declares shape \\(1000,\\) .* but "
                                           "the file holds more"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # the 64 MiB stream was never held


def test_a_header_declaring_more_than_the_limit_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 1 << 20, 1 << 10, 1 << 10))
    with pytest.raises(IDXError, match=f"more than the {MAX_IDX_BYTES} read from an IDX file"):
        read_idx(path)


def test_labels_outside_0_to_9_are_refused_naming_the_file(tiny_mnist_dir):
    labels = tiny_mnist_dir / "train-labels-idx1-ubyte.gz"
    write_idx(labels, (np.arange(256) % 12).astype(np.uint8))
    data = MNISTDataModule(str(tiny_mnist_dir), download=False, val_size=16)
    with pytest.raises(IDXError, match=f"{labels}: labels range over 0..11, but the MNIST "
                                       "family's classes are 0..9"):
        data.setup("fit")
