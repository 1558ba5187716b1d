"""What every built-in datamodule shares: the options, their checks, the fixed seeds and the
loader that serves each split, as Lightning Bolts' ``VisionDataModule`` does; a subclass adds only
what differs (its files, its split, its own options).

A subclass's constructor passes the shared options to ``ImageDataModule.__init__``, which checks
them, records the subclass's own arguments as its hyperparameters and assigns the shared ones.
Its ``_build_splits`` fills ``self.splits`` ({"train", "val", "test"} → (uint8 images, labels));
``setup`` calls it once, and refuses a training split too small for one batch. This class turns a
split into its loader (:func:`~.device_loader.make_loader`, picked by ``loader``): shuffled,
dynamically binarized (when ``binarize == "dynamic"``) and evenly sharded for training, in order
and unpadded for evaluation, so that under DDP every evaluation example counts exactly once.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import get_args

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from lightning_vae.checks import check_bool, check_number
from lightning_vae.data.device_loader import (
    DeviceLoader,
    LoaderKind,
    binarize_once,
    check_choice,
    make_loader,
    placement_of,
)
from lightning_vae.imaging import Binarize
from lightning_vae.seeding import BINARIZATION_SEED, SPLIT_SEED


class ImageDataModule(pl.LightningDataModule):
    """Serves ``self.splits`` through device-resident (or DataLoader) batches.

    Args (keyword-only; each subclass documents them as its own):
        data_dir: where the subclass finds (or downloads) its files; kept as a ``Path``.
        batch_size: training batch size.
        eval_batch_size: validation/test batch size (None: ``batch_size``).
        seed: seed of the training order and of the dynamic binarization noise; never of the
            split or of the fixed binarization draw (``lightning_vae.seeding``).
        loader: ``"auto"`` (device-resident when a split fits a memory budget), ``"device"``
            or ``"dataloader"`` (a ``DataLoader`` with workers).
        drop_last: drop the last incomplete training batch (and, under DDP, the uneven tail of
            the shards, as ``DistributedSampler(drop_last=True)``).
        binarize: ``"none"``, ``"dynamic"`` or ``"static"``; ``"none"`` for data sets without
            the option.
        download: fetch missing files; False for data sets that are never downloaded.
        progress: show progress bars; True for data sets without the option.
    """

    def __init__(
        self,
        *,
        data_dir: str | Path,
        batch_size: int,
        eval_batch_size: int | None,
        seed: int,
        loader: LoaderKind,
        drop_last: bool,
        binarize: Binarize = "none",
        download: bool = False,
        progress: bool = True,
    ) -> None:
        super().__init__()
        check_choice("binarize", binarize, get_args(Binarize))
        check_choice("loader", loader, get_args(LoaderKind))
        check_number("batch_size", batch_size, minimum=1)
        if eval_batch_size is not None:
            check_number("eval_batch_size", eval_batch_size, minimum=1)
        check_number("seed", seed, minimum=0)
        for name, value in (("download", download), ("drop_last", drop_last),
                            ("progress", progress)):
            check_bool(name, value)
        # The arguments of the subclass's constructor, which called this one, as it received
        # them: what checkpoints record (datamodule_hyper_parameters) and LightningCLI rebuilds
        # the datamodule from; not this constructor's, which hold only the shared subset.
        self.save_hyperparameters(frame=inspect.currentframe().f_back)
        self.data_dir = Path(data_dir)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.seed, self.loader, self.drop_last = seed, loader, drop_last
        self.binarize, self.download, self.progress = binarize, download, progress
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}

    def _build_splits(self) -> None:
        """Fill ``self.splits`` (each subclass reads its own files)."""
        raise NotImplementedError

    def _fixed_draw(self, images: Tensor, draw: int = 0) -> Tensor:
        """``images`` as evaluation sees them: the grey levels, or when ``binarize`` is on, one
        fixed Bernoulli draw (``BINARIZATION_SEED + draw``, whatever ``seed`` is), which
        ``"static"`` training uses too."""
        if self.binarize == "none":
            return images
        return binarize_once(images, BINARIZATION_SEED + draw)

    @staticmethod
    def _split_order(count: int) -> Tensor:
        """A fixed permutation of ``count`` items (``SPLIT_SEED``, whatever ``seed`` is), so
        that every run validates on the same images."""
        return torch.randperm(count, generator=torch.Generator().manual_seed(SPLIT_SEED))

    def setup(self, stage: str | None = None) -> None:
        """Build the ``train`` / ``val`` / ``test`` splits (once); before fitting, check that
        training has a batch to run."""
        if not self.splits:
            self._build_splits()
        if stage in ("fit", None):
            self._check_training_batches()

    def _check_training_batches(self) -> None:
        """Refuse ``drop_last`` with a training split smaller than one batch per rank: it would
        train zero steps, and Lightning only prints "No training batches" and exits 0."""
        if not self.drop_last:
            return
        images = len(self.splits["train"][0])
        world_size = placement_of(self.trainer).world_size
        per_rank = images // world_size  # each rank's shard, as the training loaders cut it
        if per_rank >= self.batch_size:
            return
        ranks = f" ({per_rank} per rank on {world_size} ranks)" if world_size > 1 else ""
        raise ValueError(
            f"batch_size={self.batch_size} with drop_last=True leaves no training batch: "
            f"{type(self).__name__} has {images} training images{ranks}. Pass a batch_size of "
            f"at most {per_rank}, or drop_last=False to train on the incomplete batch."
        )

    def _loader(self, split: str, train: bool) -> DeviceLoader | DataLoader:
        if not self.splits:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before the dataloaders")
        images, labels = self.splits[split]
        device, rank, world_size = placement_of(self.trainer)
        return make_loader(
            images,
            labels,
            self.batch_size if train else self.eval_batch_size,
            loader=self.loader,
            shuffle=train,
            drop_last=self.drop_last and train,
            binarize=train and self.binarize == "dynamic",
            seed=self.seed,
            device=device,
            rank=rank,
            world_size=world_size,
            even_shards=train,
        )

    def _has(self, split: str) -> bool:
        return split in self.splits and len(self.splits[split][0]) > 0

    def train_dataloader(self) -> DeviceLoader | DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DeviceLoader | DataLoader | list:
        """The validation loader; none (an empty list) when the split is empty."""
        return self._loader("val", train=False) if self._has("val") else []

    def test_dataloader(self) -> DeviceLoader | DataLoader | list:
        """The test loader; none (an empty list) when the split is empty."""
        return self._loader("test", train=False) if self._has("test") else []
