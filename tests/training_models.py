"""Small models and data shared by the training tests (the speed path and step logging)."""

import pytest
import torch

from lightning_vae import VAE

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
RECIPE_CONV = {"arch": "conv", "arch_options": {"channels": [32, 64], "hidden_dim": 256},
               "latent_dim": 32}


def small_conv(**options) -> VAE:
    return VAE(arch="conv", image_shape=(1, 16, 16), latent_dim=4,
               arch_options={"channels": [4, 8], "hidden_dim": 16}, **options)


def tiny_bars(n: int = 64) -> torch.Tensor:
    """Binary 8x8 images of one horizontal bar each: learnable in a few dozen steps."""
    rows = torch.randint(0, 8, (n,), generator=torch.Generator().manual_seed(0))
    images = torch.zeros(n, 1, 8, 8)
    images[torch.arange(n), :, rows, :] = 1.0
    return images
