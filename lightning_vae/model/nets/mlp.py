"""Fully connected encoder and decoder (the architecture of Kingma & Welling 2014 and of the
IWAE paper's MNIST experiments, with widths and activation as options)."""

from collections.abc import Sequence
from itertools import pairwise

from torch import nn

from lightning_vae.model.nets.registry import check_widths, make_activation, register_architecture


def mlp(sizes: Sequence[int], act: str) -> nn.Sequential:
    """Linear layers through ``sizes`` with ``act`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(make_activation(act))
    return nn.Sequential(*layers)


@register_architecture("mlp")
def build_mlp(image_shape: tuple[int, int, int], latent_dim: int, out_channels: int,
              hidden_dims: Sequence[int] = (512, 256), activation: str = "relu"
              ) -> tuple[nn.Module, nn.Module]:
    check_widths("hidden_dims", hidden_dims)
    channels, height, width = image_shape
    hidden = list(hidden_dims)
    encoder = nn.Sequential(
        nn.Flatten(), mlp([channels * height * width, *hidden, 2 * latent_dim], activation))
    decoder = nn.Sequential(
        mlp([latent_dim, *reversed(hidden), out_channels * height * width], activation),
        nn.Unflatten(1, (out_channels, height, width)),
    )
    return encoder, decoder
