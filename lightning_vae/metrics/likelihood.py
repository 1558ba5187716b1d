"""The test log-likelihood of a VAE as a torchmetrics ``Metric``: the importance-weighted bound
of Burda et al. 2016, summed over examples with ``dist_reduce_fx="sum"`` so that under DDP it
equals the one-process value on the same examples (up to Monte Carlo noise)."""

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from lightning_vae.model import DiagonalGaussian, VAEModel
from lightning_vae.objectives import importance_weighted_bound


class ImportanceWeightedNLL(Metric):
    """Mean of −log p̂_k(x) over the examples seen: the negative log-likelihood estimate of Burda
    et al. 2016, in nats per example (lower is better; an upper bound on −log p(x) in
    expectation, tighter as k grows).

    ``num_samples`` is k; ``chunk_size`` samples are decoded at a time, so memory holds
    chunk_size × batch-size decoded images whatever k is. Noise comes from the ``generator``
    given to :meth:`update` (the device's default generator when None).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, num_samples: int = 5000, chunk_size: int = 100, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_samples < 1 or chunk_size < 1:
            raise ValueError(
                f"the importance-weighted NLL needs num_samples >= 1 and chunk_size >= 1, got "
                f"num_samples={num_samples}, chunk_size={chunk_size}"
            )
        self.num_samples, self.chunk_size = num_samples, chunk_size
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, x: Tensor, posterior: DiagonalGaussian, model: VAEModel,
               generator: torch.Generator | None = None) -> None:
        """Add the examples ``x`` (B, C, H, W) with their posterior q(z|x), under ``model``'s
        decoder p(x|z) and prior p(z)."""
        log_px = importance_weighted_bound(model, x, self.num_samples, self.chunk_size,
                                           generator, posterior)
        self.total -= log_px.sum()
        self.count += log_px.numel()

    def compute(self) -> Tensor:
        return self.total / self.count
