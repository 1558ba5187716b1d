"""Priors p(z), each a small registered ``nn.Module`` (a learned prior owns parameters), named in
a model's config by its registry key. A prior gives the density of latents, draws from itself,
and the KL of a posterior to itself (in closed form where one exists)."""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from lightning_vae.model.posterior import DiagonalGaussian, standard_normal_log_prob

PRIORS: dict[str, Callable[[int], nn.Module]] = {}
"""Prior name → constructor taking the latent size."""


def register_prior(name: str) -> Callable[[type], type]:
    """Class decorator: make a prior buildable by ``name`` from a model's config."""
    def register(cls: type) -> type:
        PRIORS[name] = cls
        return cls
    return register


@register_prior("standard_normal")
class StandardNormal(nn.Module):
    """p(z) = N(0, I), the prior of Kingma & Welling 2014; the KL to it has a closed form."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) summed over latent dimensions; z may carry leading sample dimensions."""
        return standard_normal_log_prob(z)

    def sample(self, n: int, *, device: torch.device | str = "cpu",
               dtype: torch.dtype | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """``n`` latents (n, latent_dim) drawn from ``generator``."""
        return torch.randn(n, self.latent_dim, device=device, dtype=dtype, generator=generator)

    def kl(self, posterior: DiagonalGaussian, z: Tensor | None = None) -> Tensor:
        """KL(q(z|x) ‖ p(z)) per example, in closed form (``z``, a posterior draw, is unused:
        priors without a closed form estimate the KL from it)."""
        return posterior.kl()


def build_prior(name: str, latent_dim: int) -> nn.Module:
    """The prior registered under ``name``."""
    if not isinstance(name, str) or name not in PRIORS:  # a list or dict is not hashable
        raise ValueError(f"unknown prior {name!r}; choose one of {sorted(PRIORS)}")
    return PRIORS[name](latent_dim)
