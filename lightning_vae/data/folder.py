"""Your own images as a LightningDataModule: any folder tree of PNG, JPEG, WebP and BMP files.

- Files: every ``.png``, ``.jpg``, ``.jpeg``, ``.webp`` and ``.bmp`` under ``data_dir``, at any
  depth, of any size and mode (names starting with a dot are skipped). Only regular files are
  read: FIFOs, devices, symlink loops, dangling symlinks and names that are not UTF-8 are
  skipped and named (:func:`list_images`), and an image declaring more than
  ``images.MAX_IMAGE_PIXELS`` pixels is refused before it is decoded. When every image lies in
  a subfolder, the first-level subfolder names, sorted, are the classes and each image's label is
  its class's index; otherwise every label is 0.
- Preprocessing: each file is decoded once by :func:`~.images.load_image` (EXIF orientation,
  ``channels``, centred ``crop_size`` square, resize to ``image_size``) into the uint8 ``.npy``
  cache of the built-in data sets (:mod:`.images`), with a progress bar. A first pass decodes
  every file to find those that cannot be used (truncated, not an image, smaller than
  ``crop_size``, ...): they are listed with the reason and skipped, or fail the run with
  ``strict=True``. Its verdicts are kept beside the cache, keyed like it by the files' names and
  contents and the settings, so only a new or changed folder is checked again (each file is
  then decoded twice). A damaged cache or verdicts file is named in a warning and rebuilt.
- Split: the images, in path order, are shuffled with the fixed ``SPLIT_SEED`` whatever
  ``seed`` is, then cut into validation (``val_fraction``), test (``test_fraction``) and train,
  so every run validates on the same images.
- Batches are ``(images, labels)``: float32 (B, C, S, S) in [0, 1] (or binarized as for MNIST,
  ``binarize``) and int64 (B,), drawn on the training device when they fit the memory budget
  (:mod:`.device_loader`), else by a ``DataLoader``.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_info, rank_zero_warn
from tqdm.auto import tqdm

from lightning_vae.atomic import replacing
from lightning_vae.checks import check_bool, check_number
from lightning_vae.data.base import ImageDataModule
from lightning_vae.data.device_loader import LoaderKind
from lightning_vae.data.images import (
    ImageTransform,
    build_uint8_cache,
    cache_file,
    check_cache_dir,
    load_image,
)
from lightning_vae.imaging import Binarize

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CACHE_DIR_NAME = ".lightning-vae-cache"
"""Default cache folder, inside ``data_dir``; hidden, so it is never read as data."""
SHOWN_SKIPPED = 20
"""Skipped files named in the warning; the verdicts file lists them all."""


def list_images(folder: Path) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(image files, other files, unreadable entries) under `folder`, as sorted POSIX paths
    relative to it; hidden files and folders are left out, symlinked folders not entered.

    An entry with an image extension is read only when it is a regular file (a symlink to one
    counts): a FIFO would block the reader for ever, a device or socket is no image. Those, and
    symlink loops, dangling symlinks and names that are not UTF-8 (which no message, cache key
    or JSON file can hold), are the unreadable entries, each with the reason it is skipped."""
    images, others, unreadable = [], [], []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            relative = (Path(parent) / name).relative_to(folder).as_posix()
            if Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                others.append(relative)
            elif reason := _unreadable(Path(parent) / name, relative):
                unreadable.append((printable(relative), reason))
            else:
                images.append(relative)
    return sorted(images), sorted(others), sorted(unreadable)


def printable(name: str) -> str:
    """A file name as messages show it: bytes that are not UTF-8 as ``\\xff`` escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _unreadable(path: Path, relative: str) -> str | None:
    """Why the image entry `path` is not read (see :func:`list_images`), or None."""
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not valid UTF-8: rename it"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a symbolic link to nothing (dangling): remove it or restore its target"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a symbolic link loop: remove it"
        return f"cannot be read ({error.strerror})"
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else
                "a socket" if stat.S_ISSOCK(mode) else "a device")
        return f"not a regular file but {kind}: remove it"
    return None


def check_images(names: list[str], root: Path, transform: ImageTransform, *,
                 progress: bool = True) -> list[tuple[str, str]]:
    """(name, reason) for each file `load_image` cannot turn into an array with `transform`.

    Any error counts: damaged files raise many kinds (OSError, SyntaxError from a broken PNG,
    Pillow's DecompressionBombError, ...), and each would otherwise stop the cache build."""

    def verdict(name: str) -> tuple[str, str] | None:
        try:
            load_image(root / name, transform, name=name)
        except Exception as error:
            reason = str(error).removeprefix(f"{name}: ")
            return name, reason if isinstance(error, ValueError) else (
                f"{type(error).__name__}: {reason}")
        return None

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        verdicts = list(tqdm(pool.map(verdict, names), total=len(names), unit="img",
                             desc=f"Checking images in {root}", disable=not progress))
    return [found for found in verdicts if found is not None]


class ImageFolderDataModule(ImageDataModule):
    """A folder of your own images, square-cropped, resized and split (see the module docstring).

    Args:
        data_dir: the folder holding the images (flat, or one subfolder per class).
        image_size: side of the square images, in pixels.
        channels: 1 (grey, ITU-R 601 luma) or 3 (RGB); transparency is composited over black.
        crop_size: side of the centred square cut from each image before resizing, in pixels;
            None cuts the largest centred square, so nothing is stretched. Images smaller than
            ``crop_size`` are skipped like unreadable ones.
        val_fraction: share of the images held out for validation (at least one when positive).
        test_fraction: share held out for testing (at least one when positive).
        batch_size: training batch size.
        binarize: ``"none"`` (grey levels), ``"dynamic"`` or ``"static"``, as for MNIST.
        strict: fail, listing the files that cannot be used, instead of skipping them.
        seed: seed of the training order and the dynamic binarization (not of the split).
        loader: ``"auto"`` (device-resident when the images fit the memory budget),
            ``"device"`` or ``"dataloader"``.
        cache_dir: folder for the preprocessed ``.npy`` file and the verdicts (default:
            ``.lightning-vae-cache`` in ``data_dir``); point it elsewhere when that is read-only.
        drop_last: drop the last incomplete training batch.
        eval_batch_size: validation/test batch size (default: ``batch_size``).
        progress: show progress bars while checking and preprocessing.
    """

    dataset_name = None
    """Your own data has no public name for the model card to link; give one to
    ``lightning-vae export --dataset``."""

    def __init__(
        self,
        data_dir: str,
        image_size: int = 64,
        channels: int = 3,
        crop_size: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        batch_size: int = 128,
        binarize: Binarize = "none",
        strict: bool = False,
        seed: int = 0,
        loader: LoaderKind = "auto",
        cache_dir: str | None = None,
        drop_last: bool = False,
        eval_batch_size: int | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__(data_dir=data_dir, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         seed=seed, loader=loader, drop_last=drop_last, binarize=binarize,
                         progress=progress)
        check_bool("strict", strict)
        for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            check_number(name, fraction, integer=False)
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1
                and val_fraction + test_fraction < 1):
            raise ValueError(
                f"val_fraction={val_fraction} and test_fraction={test_fraction} must each lie in "
                "[0, 1) and leave images to train on (their sum below 1)"
            )
        self.transform = ImageTransform(image_size, channels, crop_size)
        self.strict, self.val_fraction, self.test_fraction = strict, val_fraction, test_fraction
        self.cache_dir = Path(cache_dir) if cache_dir else self.data_dir / CACHE_DIR_NAME
        self.image_shape = (channels, image_size, image_size)
        self.classes: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        """(file, reason) for each file that could not be used."""
        self.files: dict[str, list[str]] = {}
        """Split name → its image files, relative to ``data_dir``, in row order."""

    @property
    def preprocessing(self) -> dict[str, object]:
        """The input convention a model trained on this data keeps (``lightning_vae.preprocess``):
        the centred ``crop_size`` square of every image, binarized as ``binarize`` says."""
        return {"binarize": self.binarize, "crop_size": self.transform.crop_size,
                "input_size": None}

    def prepare_data(self) -> None:
        """Check the files and build the cache (Lightning calls this on rank zero only)."""
        self._cached_images(self._usable_files(warn=False))

    def _build_splits(self) -> None:
        """Load the cached images (building them if needed), label them and split them."""
        names = self._usable_files(warn=True)
        grey = torch.from_numpy(self._cached_images(names))
        labels = torch.zeros(len(names), dtype=torch.int64)
        if all("/" in name for name in names):
            self.classes = sorted({name.split("/", 1)[0] for name in names})
            index = {name: i for i, name in enumerate(self.classes)}
            labels = torch.tensor([index[name.split("/", 1)[0]] for name in names])
        images = self._fixed_draw(grey)  # one fixed draw: evaluation, and "static" training
        order = self._split_order(len(names))
        n_val, n_test = (_share(fraction, len(names))
                         for fraction in (self.val_fraction, self.test_fraction))
        if n_val + n_test >= len(names):
            raise ValueError(
                f"{self.data_dir} has {len(names)} usable images: too few to hold out {n_val} "
                f"for validation and {n_test} for testing and still train; add images or lower "
                "val_fraction / test_fraction"
            )
        rows = {"val": order[:n_val], "test": order[n_val:n_val + n_test],
                "train": order[n_val + n_test:]}
        self.files = {split: [names[i] for i in idx.tolist()] for split, idx in rows.items()}
        self.splits = {split: (images[idx], labels[idx]) for split, idx in rows.items()}
        if self.binarize == "dynamic":  # fresh draws of the grey levels at every training batch
            self.splits["train"] = (grey[rows["train"]], labels[rows["train"]])
        rank_zero_info(
            f"{type(self).__name__}: {len(names)} images in {self.data_dir}"
            + (f", {len(self.classes)} classes" if self.classes else "")
            + f"; {len(rows['train'])} train, {n_val} validation, {n_test} test"
        )

    def _usable_files(self, warn: bool) -> list[str]:
        """The image files under ``data_dir`` that can be used; lists the others in a warning
        (when `warn`) or, when strict or when none is left, in an error."""
        if not self.data_dir.is_dir():
            raise FileNotFoundError(
                f"no folder at {self.data_dir}: point data_dir (--data.data_dir) at "
                "the folder of your images"
            )
        names, others, unreadable = list_images(self.data_dir)
        if not names and not unreadable:
            found = (f"; it holds {len(others)} other files, e.g. {', '.join(others[:3])}"
                     if others else "")
            raise ValueError(
                f"{self.data_dir} holds no image files ({', '.join(IMAGE_EXTENSIONS)}) at any "
                f"depth{found}; point data_dir at a folder of images"
            )
        verdicts = self._verdicts_file(names) if names else self.cache_dir
        self.skipped = unreadable + (self._verdicts(names, verdicts) if names else [])
        bad = {name for name, _ in self.skipped}
        usable = [name for name in names if name not in bad]
        if not usable:
            raise ValueError(
                f"none of the {len(names)} image files in {self.data_dir} can be used:\n"
                f"{_listing(self.skipped, self.data_dir, verdicts)}\n"
                "Fix or replace these files, or point data_dir at a folder of images.")
        if self.skipped:
            listing = (f"{len(self.skipped)} image files in {self.data_dir} cannot be used:\n"
                       + _listing(self.skipped, self.data_dir, verdicts))
            if self.strict:
                raise ValueError(f"{listing}\nFix or remove these files, or pass strict=False "
                                 "(--data.strict false) to train without them.")
            if warn:
                rank_zero_warn(f"{listing}\nThese files are skipped.")
        return usable

    def _verdicts_file(self, names: list[str]) -> Path:
        """Where the unusable files among `names` are listed, for these settings."""
        return cache_file(names, self.data_dir, self.cache_dir, self.transform,
                          prefix="folder-check").with_suffix(".json")

    def _verdicts(self, names: list[str], path: Path) -> list[tuple[str, str]]:
        """The unusable files among `names`, read from `path`, else found by
        :func:`check_images` and written there."""
        if path.is_file():
            try:
                return [(str(name), str(reason))
                        for name, reason in json.loads(path.read_text())["skipped"]]
            except (ValueError, KeyError, TypeError, RecursionError) as error:
                rank_zero_warn(f"the image check cache {path} is damaged ({error!r}); "
                               "checking the images again")
        skipped = check_images(names, self.data_dir, self.transform, progress=self.progress)
        check_cache_dir(path.parent)
        with replacing(path) as temporary:
            temporary.write_text(json.dumps({"skipped": skipped}, indent=1))
        return skipped

    def _cached_images(self, names: list[str]) -> np.ndarray:
        return build_uint8_cache(names, self.data_dir, self.cache_dir, self.transform,
                                 prefix="folder", progress=self.progress)


def _share(fraction: float, total: int) -> int:
    """round(fraction × total), at least 1 when fraction is positive."""
    return max(1, round(fraction * total)) if fraction > 0 else 0


def _listing(skipped: list[tuple[str, str]], root: Path, verdicts: Path) -> str:
    """One line per unusable file, with the reason: the first ``SHOWN_SKIPPED``, then how many
    more and the verdicts file that lists them all."""
    lines = [f"  {root / name}: {reason}" for name, reason in skipped[:SHOWN_SKIPPED]]
    if len(skipped) > SHOWN_SKIPPED:
        lines.append(f"  ... and {len(skipped) - SHOWN_SKIPPED} more, all listed in {verdicts}")
    return "\n".join(lines)
