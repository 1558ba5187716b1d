"""The VAE as a model (``nn.Module``), apart from its training: architecture, posterior,
likelihoods, priors and the preprocessing of its inputs."""

from lightning_vae.model.hierarchical import HierarchicalVAE
from lightning_vae.model.likelihoods import Bernoulli, Gaussian
from lightning_vae.model.nets import available_architectures, register_architecture
from lightning_vae.model.posterior import DiagonalGaussian
from lightning_vae.model.priors import StandardNormal, register_prior
from lightning_vae.model.vae import VAEModel, VAEOutput

__all__ = [
    "Bernoulli",
    "DiagonalGaussian",
    "Gaussian",
    "HierarchicalVAE",
    "StandardNormal",
    "VAEModel",
    "VAEOutput",
    "available_architectures",
    "register_architecture",
    "register_prior",
]
