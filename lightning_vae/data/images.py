"""Image files → uint8 (C, H, W) arrays, and a once-per-setting cache of a whole list of them.

Decoding tens of thousands of JPEGs every epoch would cost more than training a small VAE on
them, so a data set is preprocessed once into a single uint8 ``.npy`` file (memory-mapped on
reading) whose name encodes every setting it depends on: a change of settings builds a new file,
the same settings reuse the old one, and an interrupted build leaves only a temporary file that
no later run trusts.
"""

import errno
import hashlib
import io
import json
import os
import shutil
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from lightning_vae.atomic import replacing
from lightning_vae.checks import check_number
from lightning_vae.imaging import fit_image

CACHE_FORMAT_VERSION = 3
"""Part of every cache key: bump it when `load_image` changes what it returns for a file."""

_CHUNK = 256
"""Images decoded per round of the thread pool: bounds the encoded bytes held in memory."""
MAX_IMAGE_PIXELS = 1 << 26
"""Most pixels an image file may declare (67 million: 8192x8192, beyond any photo a VAE is
trained on); more is refused before decoding, as a decompression bomb would be."""
CACHE_DIR_FIX = "pass a writable cache_dir (for example cache_dir='/tmp/lightning-vae-cache')"


@dataclass(frozen=True)
class ImageTransform:
    """How a file becomes a uint8 (channels, image_size, image_size) array.

    Args:
        image_size: side of the square output, in pixels.
        channels: 1 (grey, ITU-R 601 luma) or 3 (RGB). Transparent pixels are composited over
            black first, so what hides under them in the file does not matter.
        crop_size: side of the square cut from the centre of the image before resizing (left and
            top offsets ``(width - crop_size) // 2`` and ``(height - crop_size) // 2``). None cuts
            the largest centred square, so nothing is stretched.
        input_size: (width, height) every file must have, or None to accept any size. Data sets
            whose crop only makes sense at one input size (aligned CelebA: 178x218) set it, so
            a stray file fails loudly instead of being cropped somewhere else.
    """

    image_size: int
    channels: int = 3
    crop_size: int | None = None
    input_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        check_number("image_size", self.image_size, minimum=1)
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels!r}")
        if self.crop_size is not None:
            check_number("crop_size", self.crop_size, minimum=1)


def open_image(file: str | Path | bytes, *, name: str | None = None,
               upright: bool = True) -> Image.Image:
    """Decode one image file (a path or its bytes) whole, turned upright by its EXIF orientation
    unless not ``upright``. Refused with a ValueError naming it (``name``, default the path):
    anything Pillow cannot decode, and an image of more than ``MAX_IMAGE_PIXELS`` pixels, which
    is checked from the header before any pixel is decoded (a decompression bomb: a small file
    that would decode to gigabytes)."""
    where = name or (str(file) if not isinstance(file, bytes) else "<image bytes>")
    try:
        with Image.open(io.BytesIO(file) if isinstance(file, bytes) else file) as opened:
            width, height = opened.size
            if width * height > MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError(
                    f"it declares {width}x{height} pixels, more than the {MAX_IMAGE_PIXELS} "
                    "decoded per image (a decompression bomb?)")
            opened.load()
            return ImageOps.exif_transpose(opened) if upright else opened
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(
            f"{where}: cannot be decoded as an image ({error}); replace or remove this file"
        ) from error


def load_image(
    file: str | Path | bytes, transform: ImageTransform, *, name: str | None = None
) -> np.ndarray:
    """Decode one image file (any Pillow mode) into a uint8 array of shape (C, S, S).

    `file` is a path or the file's bytes; `name` is what errors call it (default: the path).
    The image is decoded by :func:`open_image` (bounded, turned upright by its EXIF
    orientation), converted to `transform.channels`, centre-cropped to `transform.crop_size`
    and resized (bilinear, antialiased) to `transform.image_size`.
    """
    where = name or (str(file) if not isinstance(file, bytes) else "<image bytes>")
    image = open_image(file, name=where)

    width, height = image.size
    if transform.input_size is not None and (width, height) != tuple(transform.input_size):
        want_w, want_h = transform.input_size
        raise ValueError(
            f"{where}: image is {width}x{height} (width x height), but every image here must be "
            f"{want_w}x{want_h}; replace this file with an original one"
        )
    crop = transform.crop_size or min(width, height)
    if crop > min(width, height):
        raise ValueError(
            f"{where}: crop_size={crop} does not fit in a {width}x{height} image; "
            f"use crop_size <= {min(width, height)}, or None for the largest centred square"
        )
    return fit_image(image, transform.channels, crop, transform.image_size, where)


def cache_file(
    names: Sequence[str], root: str | Path, cache_dir: str | Path, transform: ImageTransform,
    *, prefix: str,
) -> Path:
    """Where `build_uint8_cache` keeps the array for these files and settings.

    The name reads ``{prefix}-{C}x{S}x{S}-crop{crop}-{key}.npy``; `key` hashes the transform,
    `CACHE_FORMAT_VERSION` and the file list's fingerprint (names in order and a digest of each
    file's content, see `_fingerprint`). The fingerprint leaves `root` out, so moving the data,
    or swapping a folder for the same files in a .zip, keeps the cache.
    """
    settings = {
        "format": CACHE_FORMAT_VERSION,
        "transform": asdict(transform),
        "files": _fingerprint(names, Path(root)),
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    size, crop = transform.image_size, transform.crop_size or "max"
    return Path(cache_dir) / f"{prefix}-{transform.channels}x{size}x{size}-crop{crop}-{key}.npy"


def build_uint8_cache(
    names: Sequence[str], root: str | Path, cache_dir: str | Path, transform: ImageTransform,
    *, prefix: str, progress: bool = True, num_threads: int | None = None,
) -> np.ndarray:
    """Preprocess the files once into a uint8 (N, C, S, S) array on disk; return it memory-mapped.

    Args:
        names: files in the order the rows should have, as paths relative to `root`.
        root: a folder, or a ``.zip`` archive whose members are `names` (read without
            extracting it).
        cache_dir: folder for the ``.npy`` file (see `cache_file` for its name).
        transform: what `load_image` does to each file.
        prefix: start of the file name, saying what the data is (e.g. ``celeba-train``).
        progress: show a tqdm bar while building.
        num_threads: decoding threads (Pillow decodes and resizes without the GIL); default
            one per CPU core, at most 8.

    A file already there for the same settings is reused as is; one that is truncated or
    damaged is named in a warning and built again. A new one is written whole or
    not at all (:func:`~lightning_vae.atomic.replacing`), so an interrupted or failed build
    never leaves a file a later run would trust (a killed process may leave a hidden
    ``.*.partial`` file there: it is never read, and can be deleted).
    """
    if not names:
        raise ValueError(f"no image files to preprocess under {root}")
    target = cache_file(names, root, cache_dir, transform, prefix=prefix)
    shape = (len(names), transform.channels, transform.image_size, transform.image_size)
    if target.exists():
        try:
            return _read_cache(target, shape)
        except ValueError as error:
            warnings.warn(f"{error}; rebuilding it", stacklevel=2)
            target.unlink()
    _write_cache(names, Path(root), target, transform, progress, num_threads)
    return _read_cache(target, shape)


def _read_cache(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """The cache file memory-mapped (copy-on-write: writes never reach the file), refused with
    a ValueError naming it when it is truncated, damaged or of another shape."""
    try:
        array = np.load(path, mmap_mode="c")
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"the image cache {path} is damaged ({error})") from None
    if array.shape != shape or array.dtype != np.uint8:
        raise ValueError(f"the image cache {path} holds {array.dtype} {array.shape}, not uint8 "
                         f"{shape}: it is damaged")
    return array


def _fingerprint(names: Sequence[str], root: Path) -> str:
    """sha256 of the names in order, each with its file's size and CRC-32: of its content in a
    folder (read at each start, by threads; far cheaper than the decoding the cache saves), as
    the archive records it for a ``.zip`` member, so both give the same key. A file replaced by
    another of the same size thus gets a new cache."""
    if root.suffix == ".zip":
        try:
            archive = zipfile.ZipFile(root)
        except zipfile.BadZipFile as error:
            raise ValueError(
                f"{root}: not a readable zip archive ({error}); delete it and fetch it again"
            ) from error
        with archive:
            try:
                sums = [(info.file_size, info.CRC) for info in map(archive.getinfo, names)]
            except KeyError as error:
                raise FileNotFoundError(f"{root} has no member {error.args[0]}") from None
    else:
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            sums = list(pool.map(lambda name: _content_sum(root / name), names))
    digest = hashlib.sha256()
    for name, (size, crc) in zip(names, sums, strict=True):
        digest.update(f"{name}\0{size}\0{crc:08x}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _content_sum(path: Path) -> tuple[int, int]:
    """(size in bytes, CRC-32) of the file's content, read in 1 MiB blocks."""
    size, crc = 0, 0
    try:
        with open(path, "rb") as file:
            while block := file.read(1 << 20):
                size, crc = size + len(block), zlib.crc32(block, crc)
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path} does not exist") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror or error}); replace or "
                         "remove this file") from error
    return size, crc


def _write_cache(
    names: Sequence[str], root: Path, target: Path, transform: ImageTransform,
    progress: bool, num_threads: int | None,
) -> None:
    shape = (len(names), transform.channels, transform.image_size, transform.image_size)
    check_cache_dir(target.parent, needed_bytes=int(np.prod(shape)))
    threads = num_threads or min(8, os.cpu_count() or 1)
    is_zip = root.suffix == ".zip"

    def where(name: str) -> str:
        return f"{root}:{name}" if is_zip else str(root / name)

    def read(name: str) -> bytes:
        # An OSError here would read as the cache's own write failing (replacing() reports
        # every OSError of its block so), so a file that cannot be read is named instead.
        try:
            return archive.read(name) if is_zip else (root / name).read_bytes()
        except OSError as error:
            raise ValueError(f"{where(name)}: cannot be read ({error.strerror or error}); "
                             "replace or remove this file") from error

    def decode(name_and_bytes: tuple[str, bytes]) -> np.ndarray:
        name, data = name_and_bytes
        return load_image(data, transform, name=where(name))

    with (
        zipfile.ZipFile(root) if is_zip else nullcontext() as archive,
        replacing(target) as temporary,
        temporary.open("wb") as handle,
        ThreadPoolExecutor(threads) as pool,
        tqdm(total=len(names), desc=f"Preprocessing {target.name}", unit="img",
             disable=not progress) as bar,
    ):
        header = {"descr": "|u1", "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(handle, header)
        for start in range(0, len(names), _CHUNK):
            chunk = [(name, read(name)) for name in names[start:start + _CHUNK]]
            for array in pool.map(decode, chunk):
                handle.write(array.tobytes())
            bar.update(len(chunk))
        handle.flush()
        os.fsync(handle.fileno())


def check_cache_dir(folder: Path, needed_bytes: int = 0) -> None:
    """Make the cache folder `folder` if missing, and refuse one that cannot be written or has
    less than `needed_bytes` free, saying to pass another ``cache_dir``: checked before
    writing, so that the error names the folder and the fix."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as error:
        raise PermissionError(f"cannot write in the cache folder {folder} ({error.strerror}); "
                              f"{CACHE_DIR_FIX}") from error
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise OSError(
            f"the preprocessed image cache needs {needed_bytes / 1e9:.2f} GB but {folder} has "
            f"{free / 1e9:.2f} GB free; free some space or {CACHE_DIR_FIX}"
        )
