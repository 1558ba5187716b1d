"""read_idx: round trips, gzip by content, and clear errors for damaged files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from idx_files import write_idx

from lightning_vae.data.idx import IDXError, idx_mismatch, read_idx, read_idx_header

IMAGES = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_uint8_round_trip_gz_and_raw(tmp_path: Path, name: str) -> None:
    path = write_idx(tmp_path / name, IMAGES)
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, IMAGES)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_other_type_codes_come_back_native_endian(tmp_path: Path, dtype: type) -> None:
    array = (np.arange(12).reshape(3, 4) - 5).astype(dtype)
    out = read_idx(write_idx(tmp_path / "x.idx.gz", array))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_gzip_is_detected_by_content_not_extension(tmp_path: Path) -> None:
    gz = write_idx(tmp_path / "a.gz", IMAGES)
    misnamed = tmp_path / "gzipped-but-no-extension"
    misnamed.write_bytes(gz.read_bytes())
    plain_named_gz = tmp_path / "plain.gz"
    plain_named_gz.write_bytes(gzip.decompress(gz.read_bytes()))
    np.testing.assert_array_equal(read_idx(misnamed), IMAGES)
    np.testing.assert_array_equal(read_idx(plain_named_gz), IMAGES)


def test_array_is_writable(tmp_path: Path) -> None:
    out = read_idx(write_idx(tmp_path / "a.gz", IMAGES))
    out[0, 0, 0] = 7
    assert out.flags.writeable


def test_header_is_read_without_the_data(tmp_path: Path) -> None:
    header = read_idx_header(write_idx(tmp_path / "a.gz", IMAGES))
    assert header.shape == (3, 4, 5) and header.dtype == np.dtype(">u1")
    assert header.total_bytes == 4 + 3 * 4 + 60


def test_wrong_magic_number_names_file_expected_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(IDXError, match="two zero bytes") as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message and "0102" in message and "download=True" in message
    assert isinstance(info.value, ValueError)


def test_unknown_type_code_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad-type"
    path.write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x00")
    with pytest.raises(IDXError, match="type code 0x07"):
        read_idx(path)


def test_size_mismatch_reports_expected_and_actual_bytes(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "short-idx3-ubyte", IMAGES)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(IDXError, match=r"\(3, 4, 5\) \(60 data bytes\).* 50 data bytes"):
        read_idx(path)


def test_truncated_gzip_raises_idx_error_naming_the_file(tmp_path: Path) -> None:
    path = write_idx(
        tmp_path / "cut.gz", np.random.default_rng(0).integers(0, 255, (50, 28, 28), np.uint8)
    )
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(IDXError, match="ends early") as info:
        read_idx(path)
    assert str(path) in str(info.value) and "delete it" in str(info.value)


def test_corrupt_gzip_raises_idx_error(tmp_path: Path) -> None:
    path = write_idx(
        tmp_path / "bad.gz", np.random.default_rng(0).integers(0, 255, (50, 28, 28), np.uint8)
    )
    data = bytearray(path.read_bytes())
    data[-8:-4] = bytes(4)  # wrong CRC in the trailer
    path.write_bytes(bytes(data))
    with pytest.raises(IDXError, match="corrupt gzip"):
        read_idx(path)


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_idx_mismatch_accepts_the_right_file(tmp_path: Path, name: str) -> None:
    path = write_idx(tmp_path / name, IMAGES)
    assert idx_mismatch(path, (3, 4, 5)) is None
    assert idx_mismatch(path, (None, 4, 5)) is None


def test_idx_mismatch_explains_wrong_shape_and_dtype(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "a.gz", IMAGES)
    assert "expected uint8 (3, 28, 28)" in idx_mismatch(path, (3, 28, 28))
    assert "expected uint8 (N, 4)" in idx_mismatch(path, (None, 4))
    assert "expected int32" in idx_mismatch(path, (3, 4, 5), "i4")


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_idx_mismatch_notices_truncation_from_the_size(tmp_path: Path, name: str) -> None:
    array = np.random.default_rng(0).integers(0, 255, (50, 28, 28), np.uint8)
    path = write_idx(tmp_path / name, array)
    path.write_bytes(path.read_bytes()[:-100])
    assert "truncated" in idx_mismatch(path, (50, 28, 28))


def test_idx_mismatch_reports_unreadable_files_instead_of_raising(tmp_path: Path) -> None:
    path = tmp_path / "empty.gz"
    path.write_bytes(b"")
    assert "expected at least a 4-byte magic number" in idx_mismatch(path, (3,))
