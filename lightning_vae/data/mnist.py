"""MNIST and Fashion-MNIST as LightningDataModules: 28x28 grey images, batches on the device.

One base class, :class:`IDXDataModule`, parameterised by a :class:`~.sources.IDXDatasetSpec`:

- ``prepare_data`` (rank zero) only finds or downloads the four IDX files (:mod:`.sources`).
- ``setup`` reads them and splits the 60 000 training images into train / validation with a
  *fixed* seed (``SPLIT_SEED``), whatever ``seed`` is: every run validates on the same
  ``val_size`` images, so validation numbers are comparable across seeds. ``val_size=0`` trains on
  all 60 000 (the usual protocol when reporting test log-likelihoods).
- Binarization (``binarize``): ``"none"`` gives grey levels in [0, 1]; ``"dynamic"`` draws a fresh
  Bernoulli sample of each training batch (seeded by ``seed``, epoch and rank) while validation and
  test use one fixed draw, so evaluation is deterministic; ``"static"`` uses that one fixed draw
  (``BINARIZATION_SEED``) for every split. The fixed draws do not depend on ``seed`` either.

Batches are ``(images, labels)``: float32 (B, 1, 28, 28) in [0, 1] and int64 (B,), produced on the
training device by :class:`~.device_loader.DeviceLoader` (or a ``DataLoader``, see ``loader``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from lightning_vae.checks import check_number
from lightning_vae.data.base import ImageDataModule
from lightning_vae.data.device_loader import LoaderKind
from lightning_vae.data.idx import IDXError, read_idx
from lightning_vae.data.sources import (
    FASHION_MNIST,
    MNIST,
    IDXDatasetSpec,
    locate_files,
    refetch_advice,
)
from lightning_vae.imaging import Binarize

NUM_CLASSES = 10
"""Classes of MNIST and Fashion-MNIST: a label outside 0..9 means a damaged or foreign file."""


class IDXDataModule(ImageDataModule):
    """A 28x28 grey-level IDX data set (MNIST layout) with a seeded train/validation split.

    Args:
        data_dir: where to look for the files (also ``data_dir/<Name>/raw``) and download them.
        batch_size: training batch size.
        binarize: ``"none"``, ``"dynamic"`` (fresh draw per training batch) or ``"static"``.
        val_size: images held out of the 60 000 training images for validation (fixed seed).
        seed: seed of the training order and of the dynamic binarization noise.
        download: fetch missing files from the canonical mirrors; False never uses the network.
        loader: ``"auto"`` (device-resident when it fits a memory budget), ``"device"`` or
            ``"dataloader"`` (a ``DataLoader`` with workers).
        drop_last: drop the last incomplete training batch (and, under DDP, the uneven tail
            of the shards, as ``DistributedSampler(drop_last=True)``).
        eval_batch_size: validation/test batch size (default: ``batch_size``).
    """

    spec: IDXDatasetSpec
    dataset_name: str
    image_shape = (1, 28, 28)

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        binarize: Binarize = "dynamic",
        val_size: int = 5000,
        seed: int = 0,
        download: bool = True,
        loader: LoaderKind = "auto",
        drop_last: bool = False,
        eval_batch_size: int | None = None,
    ) -> None:
        super().__init__(data_dir=data_dir, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         seed=seed, loader=loader, drop_last=drop_last, binarize=binarize,
                         download=download)
        check_number("val_size", val_size, minimum=0)
        self.val_size = val_size

    @property
    def preprocessing(self) -> dict[str, object]:
        """The input convention a model trained on this data keeps (``lightning_vae.preprocess``):
        whole images, binarized as ``binarize`` says."""
        return {"binarize": self.binarize, "crop_size": None, "input_size": None}

    def prepare_data(self) -> None:
        """Find the files on disk or download them (Lightning calls this on rank zero only)."""
        locate_files(self.spec, self.data_dir, download=self.download)

    def _build_splits(self) -> None:
        """Read the files and build the ``train`` / ``val`` / ``test`` uint8 splits."""
        files = locate_files(self.spec, self.data_dir, download=False)
        try:
            train_images, train_labels = _read_pair(files["train_images"], files["train_labels"])
            test_images, test_labels = _read_pair(files["test_images"], files["test_labels"])
        except IDXError as error:  # damaged past what locate_files checks: say how to replace it
            key = next(key for key, path in files.items() if path == error.path)
            advice = refetch_advice(self.spec, key, self.data_dir, self.download)
            raise IDXError(error.path, error.problem, advice) from None
        if self.val_size >= len(train_images):
            raise ValueError(
                f"val_size={self.val_size} leaves no training images: {files['train_images']} "
                f"holds {len(train_images)}; pass a smaller val_size."
            )
        grey_train = train_images  # one fixed draw, shared by "static" and dynamic evaluation
        train_images, test_images = self._fixed_draw(train_images), self._fixed_draw(test_images, 1)
        order = self._split_order(len(train_images))
        val_idx, train_idx = order[: self.val_size], order[self.val_size :]
        fit_images = grey_train if self.binarize == "dynamic" else train_images
        self.splits = {
            "train": (fit_images[train_idx], train_labels[train_idx]),
            "val": (train_images[val_idx], train_labels[val_idx]),
            "test": (test_images, test_labels),
        }


def _read_pair(images_path: Path, labels_path: Path) -> tuple[Tensor, Tensor]:
    """IDX images (N, 28, 28) and labels (N,) → uint8 (N, 1, 28, 28) and int64 (N,)."""
    images = torch.from_numpy(read_idx(images_path)).unsqueeze(1)
    labels = torch.from_numpy(read_idx(labels_path)).long()
    low, high = (int(labels.min()), int(labels.max())) if len(labels) else (0, 0)
    if low < 0 or high >= NUM_CLASSES:
        raise IDXError(labels_path, f"labels range over {low}..{high}, but the MNIST family's "
                       f"classes are 0..{NUM_CLASSES - 1}")
    if len(images) != len(labels):
        raise ValueError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            "labels: the files come from different data sets; delete them and download again."
        )
    return images, labels


class MNISTDataModule(IDXDataModule):
    """MNIST handwritten digits (LeCun et al., 1998); dynamically binarized by default."""

    spec = MNIST
    dataset_name = "mnist"


class FashionMNISTDataModule(IDXDataModule):
    """Fashion-MNIST clothing images (Xiao et al., 2017); grey levels by default."""

    spec = FASHION_MNIST
    dataset_name = "fashion_mnist"

    def __init__(
        self, data_dir: str = "data", batch_size: int = 128, binarize: Binarize = "none", **kwargs
    ) -> None:
        super().__init__(data_dir, batch_size, binarize, **kwargs)
