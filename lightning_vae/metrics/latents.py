"""What a VAE's latents carry, as torchmetrics ``Metric``s: the active units and the KL per
latent dimension.

Each metric keeps sums and counts declared with ``add_state(..., dist_reduce_fx="sum")``, so
under DDP the ranks' sums are added before ``compute`` and the result equals the one-process
value on the same examples.
"""

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

ACTIVE_UNIT_THRESHOLD = 0.01
"""Burda et al. 2016 count a latent dimension as active when Var_x(E_q[z|x]) exceeds 0.01."""


class ActiveUnits(Metric):
    """The number of active latent dimensions (Burda et al. 2016): those whose posterior mean
    varies across the data with variance above ``threshold``.

    Accumulates per-dimension sums of μ and μ² and the count, and forms the (population)
    variance only in ``compute``, so under DDP it is the variance over all ranks' examples, not
    an average of per-rank variances. States are in the default float dtype (float32), which
    also runs on devices without float64; the rounding error of Σμ²/n − (Σμ/n)² is then a few
    1e-6 for posterior means of order 1, far below the 0.01 threshold.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, latent_dim: int, threshold: float = ACTIVE_UNIT_THRESHOLD,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        self.add_state("total", torch.zeros(latent_dim), dist_reduce_fx="sum")
        self.add_state("total_squares", torch.zeros(latent_dim), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, posterior_mean: Tensor) -> None:
        """Add a batch of posterior means E_q[z|x], shape (B, latent_dim)."""
        self.total += posterior_mean.sum(0)
        self.total_squares += posterior_mean.pow(2).sum(0)
        self.count += posterior_mean.shape[0]

    def compute(self) -> Tensor:
        mean = self.total / self.count
        variance = self.total_squares / self.count - mean.pow(2)
        return (variance > self.threshold).sum()


class KLPerDimension(Metric):
    """Mean KL(q(z_i|x) ‖ N(0, 1)) for each latent dimension i over the examples seen, shape
    (latent_dim,), in nats: where the rate is spent, and which dimensions collapsed to the
    prior (KL ≈ 0). The dimensions sum to the mean KL of the ELBO."""

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, latent_dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros(latent_dim), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, kl_per_dim: Tensor) -> None:
        """Add per-dimension KLs of shape (B, latent_dim), as ``posterior.kl_per_dim()`` gives."""
        self.total += kl_per_dim.sum(0)
        self.count += kl_per_dim.shape[0]

    def compute(self) -> Tensor:
        return self.total / self.count

    def _wrap_compute(self, compute: Callable[[], Tensor]) -> Callable[[], Tensor]:
        # torchmetrics squeezes a one-element result to 0-d: keep (latent_dim,) for latent_dim=1,
        # so that callers can go over the dimensions whatever the latent size.
        wrapped = super()._wrap_compute(compute)

        @functools.wraps(wrapped)
        def per_dimension(*args: Any, **kwargs: Any) -> Tensor:
            return wrapped(*args, **kwargs).reshape(-1)

        return per_dimension
