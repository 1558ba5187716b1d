"""Linear-Gaussian VAEs, whose log-likelihood is known exactly: p(z) = N(0, I),
p(x|z) = N(Wz, σ²I), so p(x) = N(0, WWᵀ + σ²I). ``linear_gaussian`` is a fixed model with a
deliberately imperfect encoder (for the bounds' tests); ``TrainableLinearGaussian`` learns W and a
linear diagonal-Gaussian encoder (for the objectives' tests)."""

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal

from lightning_vae import StandardNormal, VAEModel
from lightning_vae.model.likelihoods import Gaussian
from lightning_vae.model.posterior import DiagonalGaussian


@dataclass
class LinearGaussian:
    x: Tensor
    posterior: DiagonalGaussian
    w: Tensor
    sigma: float
    exact: Tensor  # log p(x), shape (N,)
    elbo: Tensor  # closed form, shape (N,)

    def likelihood(self, z: Tensor) -> Gaussian:
        """p(x|z) = N(Wz, σ²I)."""
        return Gaussian(z @ self.w.T, torch.tensor(2 * math.log(self.sigma)))

    @property
    def prior(self) -> StandardNormal:
        """p(z) = N(0, I): with ``likelihood``, what the NLL metric reads of a model."""
        return StandardNormal(self.w.shape[1])

    log_weights = VAEModel.log_weights  # the model's weights, from this likelihood and prior
    log_weight_terms = VAEModel.log_weight_terms


def linear_gaussian(n: int = 300, pixels: int = 6, latent_dim: int = 3,
                    sigma: float = 0.5) -> LinearGaussian:
    """p(z) = N(0, I), p(x|z) = N(Wz, σ²I), so p(x) = N(0, WWᵀ + σ²I). The encoder is linear but
    deliberately off: its mean over-shoots the optimal posterior mean by 10% (plus noise) and
    its variance is 0.7 of the true posterior's marginal variances."""
    generator = torch.Generator().manual_seed(0)
    w = torch.randn(pixels, latent_dim, generator=generator)
    covariance = w @ w.T + sigma**2 * torch.eye(pixels)
    x = torch.randn(n, pixels, generator=generator) @ torch.linalg.cholesky(covariance).T
    precision = w.T @ w + sigma**2 * torch.eye(latent_dim)
    best_mean_map = torch.linalg.solve(precision, w.T)
    mean_map = 1.1 * best_mean_map + 0.05 * torch.randn(latent_dim, pixels, generator=generator)
    variance = 0.7 * sigma**2 * torch.linalg.inv(precision).diagonal()
    posterior = DiagonalGaussian(x @ mean_map.T, variance.log().expand(n, latent_dim))
    # E_q[log p(x|z)] in closed form: the squared error of the mean plus the spread of Wz.
    expected_sq_error = ((x - posterior.mean @ w.T).pow(2)
                         + posterior.std.pow(2) @ w.pow(2).T).sum(-1)
    expected_log_px_z = (-0.5 * pixels * math.log(2 * math.pi * sigma**2)
                         - expected_sq_error / (2 * sigma**2))
    exact = MultivariateNormal(torch.zeros(pixels), covariance).log_prob(x)
    return LinearGaussian(x, posterior, w, sigma, exact,
                          expected_log_px_z - posterior.kl())



class TrainableLinearGaussian(nn.Module):
    """p(z) = N(0, I), p(x|z) = N(Wz, σ²I) with W learned and σ fixed; q(z|x) =
    N(Ax + b, diag(exp(Cx + d))) learned. A diagonal q cannot match the correlated true
    posterior, so the ELBO stays below log p(x) and the importance-weighted bound can close the
    gap. Reads like a :class:`VAEModel` to the objectives (``posterior``, ``likelihood``,
    ``prior``, ``elbo_terms``, ``log_weight_terms``)."""

    def __init__(self, pixels: int = 6, latent_dim: int = 3, sigma: float = 0.5,
                 seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(pixels, latent_dim, generator=generator))
        self.encoder = nn.Linear(pixels, 2 * latent_dim)
        self.sigma = sigma
        self.prior = StandardNormal(latent_dim)

    def posterior(self, x: Tensor) -> DiagonalGaussian:
        return DiagonalGaussian.from_params(self.encoder(x))

    def likelihood(self, z: Tensor) -> Gaussian:
        return Gaussian(z @ self.w.T, torch.tensor(2 * math.log(self.sigma)))

    def exact_log_px(self, x: Tensor) -> Tensor:
        """log p(x) under the current W, shape (N,)."""
        covariance = self.w @ self.w.T + self.sigma**2 * torch.eye(len(self.w))
        return MultivariateNormal(torch.zeros(len(self.w)), covariance).log_prob(x)

    def forward(self, x: Tensor, generator: torch.Generator | None = None):
        return VAEModel.forward(self, x, generator)

    validate_inputs = False  # real-valued vectors, not the (B, C, H, W) images VAEModel checks
    elbo_terms = VAEModel.elbo_terms
    log_weight_terms = VAEModel.log_weight_terms
    log_weights = VAEModel.log_weights


def linear_gaussian_data(n: int = 512, pixels: int = 6, latent_dim: int = 3, sigma: float = 0.5,
                         seed: int = 1) -> Tensor:
    """``n`` points (n, pixels) from a linear-Gaussian model with a random W (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    w = torch.randn(pixels, latent_dim, generator=generator)
    z = torch.randn(n, latent_dim, generator=generator)
    return z @ w.T + sigma * torch.randn(n, pixels, generator=generator)
