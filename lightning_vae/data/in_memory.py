"""The serving half shared by every built-in datamodule: uint8 splits held in memory, batches
drawn by :func:`~lightning_vae.data.device_loader.make_loader`.

A subclass's ``_build_splits`` fills ``self.splits`` ({"train", "val", "test"} → (uint8 images,
labels)) and its constructor sets the batch options below; ``setup`` calls it once, and refuses
a training split too small for one batch. This class turns a split into its loader: shuffled,
dynamically binarized (when ``binarize == "dynamic"``) and evenly sharded for training, in order
and unpadded for evaluation, so that under DDP every evaluation example counts exactly once.
"""

from __future__ import annotations

import pytorch_lightning as pl
from torch import Tensor
from torch.utils.data import DataLoader

from lightning_vae.data.device_loader import (
    DeviceLoader,
    LoaderKind,
    make_loader,
    placement_of,
)
from lightning_vae.imaging import Binarize


class InMemoryDataModule(pl.LightningDataModule):
    """Serves ``self.splits`` through device-resident (or DataLoader) batches."""

    splits: dict[str, tuple[Tensor, Tensor]]
    batch_size: int
    eval_batch_size: int
    drop_last: bool
    seed: int
    loader: LoaderKind
    binarize: Binarize = "none"

    def _build_splits(self) -> None:
        """Fill ``self.splits`` (each subclass reads its own files)."""
        raise NotImplementedError

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
            shuffle=train,
            drop_last=self.drop_last and train,
            binarize=train and self.binarize == "dynamic",
            seed=self.seed,
            device=device,
            rank=rank,
            world_size=world_size,
            even_shards=train,
            loader=self.loader,
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
