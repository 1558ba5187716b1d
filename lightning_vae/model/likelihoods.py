"""Decoder likelihoods p(x|z): the decoder's output turned into a distribution over images.

Each head is an ``nn.Module`` (the Gaussian one may own a learned variance) that maps decoder
output of shape (B, C, H, W) to a distribution with ``log_prob(x)`` summed over pixels (nats per
example) and ``mean``, the expected image, which always lies in [0, 1].
"""

import math

import torch
from torch import Tensor, nn
from torch.nn import functional

from lightning_vae.checks import is_real
from lightning_vae.model.posterior import gaussian_log_density

LIKELIHOODS = ("bernoulli", "gaussian")


class Bernoulli:
    """Independent Bernoulli pixels parameterised by logits (BCE from logits: no log(0))."""

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits

    @property
    def mean(self) -> Tensor:
        return torch.sigmoid(self.logits)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x|z) summed over pixels; x may be binary or grey levels in [0, 1]."""
        bce = functional.binary_cross_entropy_with_logits(self.logits, x, reduction="none")
        return -bce.flatten(1).sum(-1)


class Gaussian:
    """Independent Gaussian pixels with mean in [0, 1] and a bounded variance."""

    def __init__(self, mean: Tensor, logvar: Tensor) -> None:
        self.mean = mean
        self.logvar = logvar.expand_as(mean)

    def log_prob(self, x: Tensor) -> Tensor:
        return gaussian_log_density(x, self.mean, self.logvar).flatten(1).sum(-1)


class BernoulliHead(nn.Module):
    """Decoder logits → Bernoulli."""

    def forward(self, output: Tensor) -> Bernoulli:
        return Bernoulli(output)


class GaussianHead(nn.Module):
    """Decoder output → Gaussian with mean sigmoid(output).

    The standard deviation is ``sigma`` when fixed; when learned, it is one value per channel,
    ``sigma_min + softplus(raw)`` initialised at ``sigma``, so it can never collapse to zero and
    drive the log-likelihood to infinity.
    """

    def __init__(self, channels: int, sigma: float = 0.1, learn_sigma: bool = False,
                 sigma_min: float = 1e-3) -> None:
        super().__init__()
        if not is_real(sigma_min) or sigma_min < 0:
            raise ValueError(f"gaussian likelihood_options sigma_min must be a number >= 0 (the "
                             f"floor of a learned sigma), got {sigma_min!r}")
        if not is_real(sigma) or sigma <= sigma_min:
            raise ValueError(f"gaussian likelihood_options sigma must be a number > "
                             f"sigma_min={sigma_min}, got {sigma!r}")
        if not isinstance(learn_sigma, bool):
            raise ValueError(f"gaussian likelihood_options learn_sigma must be true or false, "
                             f"got {learn_sigma!r}")
        self.sigma_min = sigma_min
        excess = sigma - sigma_min
        raw = excess + math.log(-math.expm1(-excess))  # inverse softplus, for any size
        init = torch.full((1, channels, 1, 1), raw)
        if learn_sigma:
            self.raw_sigma = nn.Parameter(init)
        else:
            self.register_buffer("raw_sigma", init)

    @property
    def sigma(self) -> Tensor:
        return self.sigma_min + functional.softplus(self.raw_sigma)

    def forward(self, output: Tensor) -> Gaussian:
        return Gaussian(torch.sigmoid(output), 2.0 * torch.log(self.sigma))


def build_likelihood(name: str, channels: int, **options) -> nn.Module:
    """The likelihood head registered under ``name`` ("bernoulli" or "gaussian")."""
    if name == "bernoulli":
        if options:
            raise ValueError(f"the bernoulli likelihood takes no options, got {sorted(options)}")
        return BernoulliHead()
    if name == "gaussian":
        try:
            return GaussianHead(channels, **options)
        except TypeError as error:
            raise ValueError(f"bad likelihood_options {options} for the gaussian likelihood: "
                             f"{error}; it takes sigma, learn_sigma and sigma_min") from None
    raise ValueError(f"unknown likelihood {name!r}; choose one of {LIKELIHOODS}")
