"""The importance-weighted bound of Burda et al. 2016 on log p(x)."""

import math

import torch
from torch import Tensor

from lightning_vae.model import DiagonalGaussian, VAEModel


def importance_weighted_bound(model: VAEModel, x: Tensor, num_samples: int,
                              chunk_size: int | None = None,
                              generator: torch.Generator | None = None,
                              posterior: DiagonalGaussian | None = None) -> Tensor:
    """The importance-weighted bound of Burda et al. 2016, log p̂_k(x) per example, shape (B,).

    log p̂_k(x) = log (1/k) Σᵢ p(x, zᵢ) / q(zᵢ|x) with zᵢ ~ q(z|x) independently, in nats (the
    weights are :meth:`VAEModel.log_weights`, under the model's prior). It is the ELBO at k = 1
    and rises towards log p(x) as k grows (in expectation), so at large k it estimates the test
    log-likelihood.

    The k samples are decoded ``chunk_size`` at a time (all at once if None) and combined with
    a running logsumexp, so memory holds chunk_size × B decoded images whatever k is. The
    noise is drawn one sample (B, D) at a time from ``generator`` (the global generator if
    None), so the chunk size does not change the draws nor the result. ``posterior`` is q(z|x)
    when already computed.
    """
    if num_samples < 1:
        raise ValueError(f"the importance-weighted bound needs num_samples >= 1, got {num_samples}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1 (or None for one chunk), got {chunk_size}")
    chunk_size = chunk_size or num_samples
    posterior = model.posterior(x) if posterior is None else posterior
    log_total_weight = x.new_full(x.shape[:1], -math.inf, dtype=posterior.mean.dtype)
    for start in range(0, num_samples, chunk_size):
        log_weight = model.log_weights(x, min(chunk_size, num_samples - start), generator,
                                       posterior)
        log_total_weight = torch.logaddexp(log_total_weight, log_weight.logsumexp(0))
    return log_total_weight - math.log(num_samples)
