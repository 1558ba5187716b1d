"""The importance-weighted bound of Burda et al. 2016 on log p(x)."""

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from lightning_vae.model.posterior import DiagonalGaussian, standard_normal_log_prob


def importance_weighted_bound(x: Tensor, posterior: DiagonalGaussian,
                              likelihood: Callable[[Tensor], Any], num_samples: int,
                              chunk_size: int | None = None,
                              generator: torch.Generator | None = None,
                              prior_log_prob: Callable[[Tensor], Tensor] = standard_normal_log_prob,
                              ) -> Tensor:
    """The importance-weighted bound of Burda et al. 2016, log p̂_k(x) per example, shape (B,).

    log p̂_k(x) = log (1/k) Σᵢ p(x|zᵢ) p(zᵢ) / q(zᵢ|x) with zᵢ ~ q(z|x) independently, in
    nats. It is the ELBO at k = 1 and rises towards log p(x) as k grows (in expectation), so
    at large k it estimates the test log-likelihood. ``likelihood`` maps latents (N, D) to
    p(x|z) with ``log_prob(x)`` of shape (N,), as ``VAEModel.likelihood`` does;
    ``prior_log_prob`` maps latents to log p(z) (the model's ``prior.log_prob``).

    The k samples are decoded ``chunk_size`` at a time (all at once if None) and combined with
    a running logsumexp, so memory holds chunk_size × B decoded images whatever k is. The
    noise is drawn one sample (B, D) at a time from ``generator`` (the global generator if
    None), so the chunk size does not change the draws nor the result.
    """
    if num_samples < 1:
        raise ValueError(f"the importance-weighted bound needs num_samples >= 1, got {num_samples}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1 (or None for one chunk), got {chunk_size}")
    chunk_size = chunk_size or num_samples
    mean, std = posterior.mean, posterior.std
    log_total_weight = mean.new_full(mean.shape[:1], -math.inf)
    for start in range(0, num_samples, chunk_size):
        eps = torch.stack([
            torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            for _ in range(min(chunk_size, num_samples - start))
        ])
        z = mean + std * eps  # (c, B, D)
        x_repeated = x.expand(len(z), *x.shape).flatten(0, 1)
        log_px_z = likelihood(z.flatten(0, 1)).log_prob(x_repeated).view(z.shape[:2])
        log_weight = log_px_z + prior_log_prob(z) - posterior.log_prob(z)
        log_total_weight = torch.logaddexp(log_total_weight, log_weight.logsumexp(0))
    return log_total_weight - math.log(num_samples)
