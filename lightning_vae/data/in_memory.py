"""The serving half shared by every built-in datamodule: uint8 splits held in memory, batches
drawn by :func:`~lightning_vae.data.device_loader.make_loader`.

A subclass's ``setup`` fills ``self.splits`` ({"train", "val", "test"} → (uint8 images,
labels)) and sets the batch options below; this class turns a split into its loader: shuffled,
dynamically binarized (when ``binarize == "dynamic"``) and evenly sharded for training, in order
and unpadded for evaluation, so that under DDP every evaluation example counts exactly once.
"""

from __future__ import annotations

import pytorch_lightning as pl
from torch import Tensor
from torch.utils.data import DataLoader

from lightning_vae.data.device_loader import (
    Binarize,
    DeviceLoader,
    LoaderKind,
    make_loader,
    placement_of,
)


class InMemoryDataModule(pl.LightningDataModule):
    """Serves ``self.splits`` through device-resident (or DataLoader) batches."""

    splits: dict[str, tuple[Tensor, Tensor]]
    batch_size: int
    eval_batch_size: int
    drop_last: bool
    seed: int
    loader: LoaderKind
    binarize: Binarize = "none"

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
