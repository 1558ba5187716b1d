"""dSprites (Matthey et al. 2017) as a LightningDataModule: 64 × 64 binary sprites with their
known generative factors, for measuring disentanglement.

- Files: the official ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``, looked for in
  ``data_dir``, ``data_dir/dsprites`` and the same under ``$LIGHTNING_VAE_DATA``; with
  ``download=True`` fetched from the official repository and checked against its MD5. Its array
  names, shapes, dtypes and factor grid are verified on reading (only ``imgs``,
  ``latents_values`` and ``latents_classes`` are read: ``metadata`` needs unpickling).
- Without it (``source="auto"``), or with ``source="rendered"``, the images are a
  *re-rendering* of the same factor grid (:mod:`.dsprites_render`: the official factor values,
  our own pixels), cached in ``data_dir/dsprites`` as a memory-mapped ``.npy``.
- ``size`` takes a fixed random subset of the grid (``SPLIT_SEED``): tests and quick runs.
- Splits: ``test_size`` then ``val_size`` images of a fixed permutation (``SPLIT_SEED``), the
  rest for training; batches ``(images, factors)``: float32 (B, 1, 64, 64) of 0/1 and the
  factor classes int64 (B, 5), columns :data:`FACTOR_NAMES` (color, constant, is left out),
  drawn on the device and sharded under DDP by the base :class:`ImageDataModule`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_warn

from lightning_vae.atomic import replacing
from lightning_vae.checks import check_number
from lightning_vae.data.base import ImageDataModule
from lightning_vae.data.device_loader import LoaderKind, check_choice
from lightning_vae.data.download import download_file
from lightning_vae.data.dsprites_render import (
    IMAGE_SIZE,
    LATENT_SIZES,
    NUM_IMAGES,
    latent_classes,
    latent_values,
    render_images,
    write_rendered_grid,
)
from lightning_vae.data.sources import DATA_ENV
from lightning_vae.seeding import SPLIT_SEED

Source = Literal["auto", "official", "rendered"]
OFFICIAL_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
OFFICIAL_URL = ("https://github.com/google-deepmind/dsprites-dataset/raw/"
                f"fa310c66517cfc1939d77fe17c725154efc97127/{OFFICIAL_FILE}")
OFFICIAL_MD5 = "7da33b31b13a06f4b04a70402ce90c2e"
"""MD5 of the official file, as published with the loaders of several libraries (each pinned to
the same GitHub file). The repository's own record of it is its git blob id,
d98996d3f8ee1550e06b9d4ed78d0beb478910d5 at commit fa310c6."""
RENDER_VERSION = 1
"""Part of the cache's name: bump it when :mod:`.dsprites_render` draws differently."""
FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = LATENT_SIZES[1:]
OFFICIAL_ARRAYS = {
    "imgs": ((NUM_IMAGES, IMAGE_SIZE, IMAGE_SIZE), np.uint8),
    "latents_values": ((NUM_IMAGES, 6), np.float64),
    "latents_classes": ((NUM_IMAGES, 6), np.int64),
}


class DSpritesDataModule(ImageDataModule):
    """dSprites: the official file when present, else a re-rendering of its factor grid.

    Args:
        data_dir: where to look for the official file and keep the re-rendering's cache.
        batch_size: training batch size.
        size: use a fixed random subset of this many images (None: all 737 280).
        val_size: images held out for validation.
        test_size: images held out for testing (the disentanglement metrics' examples).
        source: ``"auto"`` (the official file if found, else the re-rendering), ``"official"``
            (the file or an error) or ``"rendered"``.
        seed: seed of the training order.
        download: fetch the official file when missing (checked against its MD5).
        loader: ``"auto"``, ``"device"`` or ``"dataloader"``, as for every datamodule.
        drop_last: drop the last incomplete training batch.
        eval_batch_size: validation/test batch size (default: ``batch_size``).
    """

    dataset_name = "dsprites"
    image_shape = (1, IMAGE_SIZE, IMAGE_SIZE)

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 64,
        size: int | None = None,
        val_size: int = 5000,
        test_size: int = 10000,
        source: Source = "auto",
        seed: int = 0,
        download: bool = False,
        loader: LoaderKind = "auto",
        drop_last: bool = False,
        eval_batch_size: int | None = None,
    ) -> None:
        super().__init__(data_dir=data_dir, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         seed=seed, loader=loader, drop_last=drop_last, download=download)
        check_choice("source", source, get_args(Source))
        if size is not None:
            check_number("size", size, minimum=1)
            if size > NUM_IMAGES:
                raise ValueError(f"size={size}: dSprites has {NUM_IMAGES} images; pass at most "
                                 "that, or None for all of them")
        check_number("val_size", val_size, minimum=0)
        check_number("test_size", test_size, minimum=0)
        if val_size + test_size >= (size or NUM_IMAGES):
            raise ValueError(f"val_size={val_size} and test_size={test_size} leave no training "
                             f"images of {size or NUM_IMAGES}; pass smaller ones")
        self.size, self.val_size, self.test_size, self.source = size, val_size, test_size, source
        self.source_used: Source | None = None
        """``"official"`` or ``"rendered"``: where ``setup`` took the images from."""

    @property
    def preprocessing(self) -> dict[str, object]:
        """The input convention a model trained on this data keeps: whole binary images."""
        return {"binarize": "none", "crop_size": None, "input_size": None}

    @property
    def indices(self) -> np.ndarray:
        """Grid indices of the images used, in grid order: all, or the fixed subset ``size``."""
        if self.size is None:
            return np.arange(NUM_IMAGES)
        order = torch.randperm(NUM_IMAGES, generator=torch.Generator().manual_seed(SPLIT_SEED))
        return np.sort(order[: self.size].numpy())

    @property
    def cache_path(self) -> Path:
        """The re-rendering's cache: all images, or the subset's, as uint8 (N, 64, 64) of 0/1."""
        which = "all" if self.size is None else f"subset{self.size}"
        return self.data_dir / "dsprites" / f"dsprites-rerendered-v{RENDER_VERSION}-{which}.npy"

    def official_file(self) -> Path | None:
        """The official file, found on disk or (``download``) downloaded; None when the
        re-rendering is to be used."""
        if self.source == "rendered":
            return None
        roots = [self.data_dir] + ([Path(os.environ[DATA_ENV])] if os.environ.get(DATA_ENV)
                                   else [])
        for folder in (d for root in roots for d in (root, root / "dsprites")):
            if (folder / OFFICIAL_FILE).is_file():
                return folder / OFFICIAL_FILE
        target = self.data_dir / "dsprites" / OFFICIAL_FILE
        if self.download:
            return download_file([OFFICIAL_URL], target, f"md5:{OFFICIAL_MD5}",
                                 progress=self.progress)
        if self.source == "official":
            raise FileNotFoundError(
                f"{OFFICIAL_FILE} not found in {', '.join(map(str, roots))} or their dsprites/ "
                f"folders (source='official'): pass download=True to fetch it into {target}, "
                "or source='auto' to use the re-rendering")
        return None

    def prepare_data(self) -> None:
        """Find or download the official file, or build the re-rendering's cache (rank zero)."""
        if self.official_file() is None:
            self._rendered()

    def _rendered(self) -> np.ndarray:
        """The re-rendered images of :attr:`indices`, from the cache (built when missing)."""
        path = self.cache_path
        if not path.is_file():
            if self.size is None:
                write_rendered_grid(path)
            else:
                with replacing(path) as temporary, open(temporary, "wb") as file:
                    np.save(file, render_images(self.indices))
        return np.load(path, mmap_mode="r")

    def _build_splits(self) -> None:
        """Read the images (official or re-rendered) and cut the fixed splits."""
        official = self.official_file()
        if official is None:
            rank_zero_warn(
                f"DSpritesDataModule: {OFFICIAL_FILE} not found, so the images are a "
                f"re-rendering of the dSprites factor grid, not the original pixels "
                f"(source={self.source!r}; download=True fetches the original)")
            images, indices = self._rendered(), None
        else:
            images, indices = read_official(official), self.indices
        classes = torch.from_numpy(latent_classes(self.indices)[:, 1:])
        order = self._split_order(len(classes)).numpy()
        test, val = order[: self.test_size], order[self.test_size : self.test_size + self.val_size]
        train = order[self.test_size + self.val_size :]
        self.splits = {}
        for name, rows in (("train", train), ("val", val), ("test", test)):
            rows = np.sort(rows)  # reads a memory map in file order
            taken = images[rows if indices is None else indices[rows]]
            np.multiply(taken, 255, out=taken)  # 0/1 → 0/255, as every datamodule's uint8
            self.splits[name] = (torch.from_numpy(taken).unsqueeze(1), classes[rows])
        self.source_used = "rendered" if official is None else "official"


def read_official(path: Path) -> np.ndarray:
    """The official file's ``imgs`` (737 280, 64, 64) uint8 of 0/1, after checking that its
    arrays have the official names, shapes and dtypes and that its factors are the official grid
    in the official order."""
    with np.load(path) as archive:
        missing = sorted({*OFFICIAL_ARRAYS, "metadata"} - set(archive.files))
        if missing:
            raise ValueError(f"{path} lacks the arrays {missing} of the official dSprites file; "
                             "delete it and pass download=True to fetch the official one")
        arrays = {}
        for name, (shape, dtype) in OFFICIAL_ARRAYS.items():
            array = archive[name]
            if array.shape != shape or array.dtype != dtype:
                raise ValueError(
                    f"{path}: {name} is {array.dtype} {array.shape}, but the official file's is "
                    f"{np.dtype(dtype)} {shape}; delete it and pass download=True to fetch the "
                    "official one")
            arrays[name] = array
    classes = latent_classes(np.arange(NUM_IMAGES))
    if not (np.array_equal(arrays["latents_classes"], classes)
            and np.allclose(arrays["latents_values"], latent_values(classes))):
        raise ValueError(f"{path}: its latents are not the dSprites factor grid in the official "
                         "order; delete it and pass download=True to fetch the official file")
    return arrays["imgs"]
