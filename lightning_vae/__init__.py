"""lightning-vae: variational autoencoders on PyTorch Lightning."""

from lightning_vae.data import DSpritesDataModule
from lightning_vae.metrics import (
    DCIDisentanglement,
    FactorVAEScore,
    MutualInformationGap,
    SAPScore,
)
from lightning_vae.model import (
    Bernoulli,
    DiagonalGaussian,
    Gaussian,
    HierarchicalVAE,
    StandardNormal,
    VAEModel,
    VAEOutput,
    available_architectures,
    register_architecture,
    register_prior,
)
from lightning_vae.objectives import (
    Objective,
    build_objective,
    register_beta_schedule,
    register_objective,
)
from lightning_vae.training import (
    EMA,
    VAE,
    ImagePanels,
    LatentDiagnostics,
    LatentTraversals,
    PushToHub,
    ReuseFreedMemory,
    export_checkpoint,
    flush_subnormals,
    push,
)

__version__ = "0.2.0"

from_pretrained = VAEModel.from_pretrained
"""A pretrained VAE (a :class:`VAEModel`, in eval mode) from a model folder, a zoo name or a Hub
repository id: ``lightning_vae.from_pretrained("lightning-vae/mnist-vae")``."""

__all__ = [
    "EMA",
    "VAE",
    "Bernoulli",
    "DCIDisentanglement",
    "DSpritesDataModule",
    "DiagonalGaussian",
    "FactorVAEScore",
    "Gaussian",
    "HierarchicalVAE",
    "ImagePanels",
    "LatentDiagnostics",
    "LatentTraversals",
    "MutualInformationGap",
    "Objective",
    "PushToHub",
    "ReuseFreedMemory",
    "SAPScore",
    "StandardNormal",
    "VAEModel",
    "VAEOutput",
    "available_architectures",
    "build_objective",
    "export_checkpoint",
    "flush_subnormals",
    "from_pretrained",
    "push",
    "register_architecture",
    "register_beta_schedule",
    "register_objective",
    "register_prior",
]
