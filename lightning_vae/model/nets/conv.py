"""Convolutional encoder and decoder: stride-2 convolutions halve the image per stage, a dense
layer maps to the latent parameters, and transposed convolutions mirror the encoder."""

from collections.abc import Sequence
from itertools import pairwise

from torch import nn

from lightning_vae.model.nets.registry import (
    check_halvings,
    check_width,
    check_widths,
    make_activation,
    register_architecture,
)


@register_architecture("conv")
def build_conv(image_shape: tuple[int, int, int], latent_dim: int, out_channels: int,
               channels: Sequence[int] = (32, 64), hidden_dim: int = 256,
               activation: str = "relu") -> tuple[nn.Module, nn.Module]:
    check_widths("channels", channels)
    check_width("hidden_dim", hidden_dim)
    in_channels, height, width = image_shape
    check_halvings("conv", len(channels), image_shape, "channels")
    factor = 2 ** len(channels)
    bottom = (channels[-1], height // factor, width // factor)
    flat = bottom[0] * bottom[1] * bottom[2]

    encoder_layers: list[nn.Module] = []
    for n_in, n_out in pairwise([in_channels, *channels]):
        encoder_layers += [nn.Conv2d(n_in, n_out, 4, stride=2, padding=1),
                           make_activation(activation)]
    encoder = nn.Sequential(
        *encoder_layers, nn.Flatten(),
        nn.Linear(flat, hidden_dim), make_activation(activation),
        nn.Linear(hidden_dim, 2 * latent_dim),
    )

    decoder_layers: list[nn.Module] = [
        nn.Linear(latent_dim, hidden_dim), make_activation(activation),
        nn.Linear(hidden_dim, flat), make_activation(activation),
        nn.Unflatten(1, bottom),
    ]
    for n_in, n_out in pairwise([*reversed(channels), out_channels]):
        decoder_layers += [nn.ConvTranspose2d(n_in, n_out, 4, stride=2, padding=1),
                           make_activation(activation)]
    decoder = nn.Sequential(*decoder_layers[:-1])  # no activation on the output logits
    return encoder, decoder
