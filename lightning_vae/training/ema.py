"""An exponential moving average (EMA) of the weights, for evaluation: Lightning's
``WeightAveraging`` does the bookkeeping (validation runs on the averaged weights, checkpoints
hold them as the model's ``state_dict`` with the raw weights beside them for resuming, and the
averaged weights replace the raw ones when fitting ends, so a test or ``save_pretrained`` after
``fit`` uses them); this adds the decay with a warm-up and a fused update."""

from typing import Any

import torch
from pytorch_lightning.callbacks import WeightAveraging
from torch import Tensor

from lightning_vae.checks import is_real


class EMA(WeightAveraging):
    """Average the module's weights (and buffers) after every optimizer step with decay
    min(``decay``, (1 + n) / (10 + n)), n the updates so far: early weights fade quickly, so
    the average is useful in short runs too (the warm-up of TensorFlow's
    ``ExponentialMovingAverage(num_updates=...)``).

    A recipe adds it as a callback: ``trainer.callbacks: [{class_path: lightning_vae.EMA,
    init_args: {decay: 0.999}}]``.
    """

    def __init__(self, decay: float = 0.999, **kwargs: Any) -> None:
        if not is_real(decay) or not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be a number in [0, 1), got decay={decay!r}")
        self.decay = float(decay)
        super().__init__(use_buffers=True, multi_avg_fn=self._update, **kwargs)

    def decay_at(self, updates: int) -> float:
        """The decay of the update after ``updates`` earlier ones."""
        return min(self.decay, (1 + updates) / (10 + updates))

    def _update(self, averaged: list[Tensor], current: list[Tensor], updates: Tensor) -> None:
        # AveragedModel counts its updates in a tensor on the weights' device: the decay is
        # computed there too, so the update never waits for the GPU.
        updates = updates.to(averaged[0].dtype)
        decay = torch.clamp((1 + updates) / (10 + updates), max=self.decay)
        torch._foreach_lerp_(averaged, current, 1 - decay)
