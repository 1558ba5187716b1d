"""The diagonal-Gaussian posterior q(z|x), a small object whose methods read like the maths
(diffusers' ``DiagonalGaussianDistribution`` is the model): ``sample``, ``mode``, ``log_prob``
and the closed-form ``kl`` to the standard normal."""

import math

import torch
from torch import Tensor

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0
"""Bounds on the log-variance, so exp() can neither underflow to 0 nor overflow to inf."""


class DiagonalGaussian:
    """N(mean, diag(exp(logvar))) over the last dimension, batched over the first.

    Densities and KLs are summed over latent dimensions, giving one value per example in nats.
    """

    def __init__(self, mean: Tensor, logvar: Tensor) -> None:
        if mean.shape != logvar.shape:
            raise ValueError(
                f"mean and logvar must have the same shape, got {tuple(mean.shape)} and "
                f"{tuple(logvar.shape)}"
            )
        self.mean = mean
        self.logvar = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
        self.std = torch.exp(0.5 * self.logvar)

    @classmethod
    def from_params(cls, params: Tensor) -> "DiagonalGaussian":
        """Split an encoder output of shape (B, 2D) into mean and log-variance halves."""
        mean, logvar = params.chunk(2, dim=-1)
        return cls(mean, logvar)

    def sample(self, sample_shape: tuple[int, ...] = (),
               generator: torch.Generator | None = None) -> Tensor:
        """The reparameterised draw z = μ + σ·ε, ε ~ N(0, I) from ``generator`` (the device's
        default generator if None): differentiable in μ and σ."""
        eps = torch.randn((*sample_shape, *self.mean.shape), dtype=self.mean.dtype,
                          device=self.mean.device, generator=generator)
        return self.mean + self.std * eps

    def samples(self, k: int, generator: torch.Generator | None = None) -> Tensor:
        """``k`` reparameterised draws, shape (k, B, D), the noise drawn one (B, D) at a time:
        k draws taken in chunks are the same draws as k taken at once."""
        eps = torch.stack([
            torch.randn(self.mean.shape, dtype=self.mean.dtype, device=self.mean.device,
                        generator=generator)
            for _ in range(k)
        ])
        return self.mean + self.std * eps

    def detached(self) -> "DiagonalGaussian":
        """The same distribution with its parameters cut from the graph: densities of it pass
        gradients to the points they are evaluated at only (DReG, Tucker et al. 2019)."""
        return DiagonalGaussian(self.mean.detach(), self.logvar.detach())

    def mode(self) -> Tensor:
        """The most likely latent, μ: what a deterministic reconstruction decodes."""
        return self.mean

    def log_prob(self, z: Tensor) -> Tensor:
        """log q(z|x) summed over latent dimensions; z may carry leading sample dimensions."""
        return gaussian_log_density(z, self.mean, self.logvar).sum(-1)

    def kl_per_dim(self) -> Tensor:
        """KL(q ‖ N(0, 1)) for each latent dimension, shape (B, D)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar)

    def kl(self) -> Tensor:
        """KL(q(z|x) ‖ N(0, I)) in closed form, summed over latent dimensions: shape (B,)."""
        return self.kl_per_dim().sum(-1)


def gaussian_log_density(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """Elementwise log N(x; mean, exp(logvar)) in nats."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (x - mean).pow(2) * torch.exp(-logvar))


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return (-0.5 * (math.log(2 * math.pi) + z.pow(2))).sum(-1)
