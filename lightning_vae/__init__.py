"""lightning-vae: variational autoencoders on PyTorch Lightning."""

from lightning_vae.callbacks import ImagePanels, LatentDiagnostics
from lightning_vae.distributions import DiagonalGaussian
from lightning_vae.host_memory import ReuseFreedMemory
from lightning_vae.hub import PushToHub, export_checkpoint, from_pretrained, push
from lightning_vae.likelihoods import Bernoulli, Gaussian
from lightning_vae.module import VAE, VAEOutput
from lightning_vae.nets import available_architectures, register_architecture
from lightning_vae.objectives import build_schedule

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "Bernoulli",
    "DiagonalGaussian",
    "Gaussian",
    "ImagePanels",
    "LatentDiagnostics",
    "PushToHub",
    "ReuseFreedMemory",
    "VAEOutput",
    "available_architectures",
    "build_schedule",
    "export_checkpoint",
    "from_pretrained",
    "push",
    "register_architecture",
]
