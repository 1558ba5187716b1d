"""The nets of the hierarchical ("ladder") VAE: a bottom-up residual conv path over the image and
a top-down residual conv path that forms, layer by layer, the prior p(z_l | z_>l) and the
posterior q(z_l | z_>l, x), as in the very deep VAE of Child 2021 (VDVAE).

Stochastic layers, top first: one flat latent of ``latent_dim`` dimensions above the coarsest
scale (its prior is the model's ``prior``, N(0, I)), then ``layers[i]`` spatial latents of
``latent_channels`` channels at scale i (coarse to fine; the image halved ``len(layers) - i``
times). The top-down state h of ``width`` channels gives each layer's prior (and a residual
update of h); its posterior comes from h concatenated with the bottom-up features of the same
scale (VDVAE's posterior, not Sønderby et al.'s precision weighting); the draw z_l is projected
back into h, then ``blocks`` residual blocks follow. Upsampling is nearest-neighbour, so the
shapes of a pass depend on the batch size only (compile and CUDA graphs).

The model that drives these nets is :class:`lightning_vae.model.hierarchical.HierarchicalVAE`.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional

from lightning_vae.checks import is_int
from lightning_vae.model.nets.registry import (
    check_halvings,
    check_width,
    make_activation,
    register_architecture,
)
from lightning_vae.model.posterior import DiagonalGaussian

Noise = list[Tensor] | None
"""Standard-normal noise for the spatial layers, one (N, D_l) tensor each, top first; None
takes each layer's mean instead of a draw (the mode path)."""


def conv3x3(n_in: int, n_out: int) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1)


class ResidualBlock(nn.Module):
    """x + conv(act(conv(act(x)))), the last convolution initialised small so that a deep stack
    starts close to the identity."""

    def __init__(self, width: int, activation: str) -> None:
        super().__init__()
        self.net = nn.Sequential(make_activation(activation), conv3x3(width, width),
                                 make_activation(activation), conv3x3(width, width))
        with torch.no_grad():
            self.net[-1].weight.mul_(0.1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


def residual_blocks(count: int, width: int, activation: str) -> nn.Sequential:
    return nn.Sequential(*(ResidualBlock(width, activation) for _ in range(count)))


def gaussian(params: Tensor) -> DiagonalGaussian:
    """A (N, 2c, H, W) output → the diagonal Gaussian over the flattened (N, c·H·W) latent, in
    float32 (so that KLs and densities sum in float32 under autocast)."""
    mean, logvar = params.float().chunk(2, dim=1)
    return DiagonalGaussian(mean.flatten(1), logvar.flatten(1))


class BottomUp(nn.Module):
    """Image (B, C, H, W) → (the top layer's posterior parameters (B, 2·latent_dim), the
    features of each scale, coarse first)."""

    def __init__(self, in_channels: int, size: tuple[int, int], latent_dim: int, scales: int,
                 width: int, blocks: int, hidden_dim: int, activation: str) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv3x3(in_channels, width), residual_blocks(blocks, width,
                                                                               activation))
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AvgPool2d(2), residual_blocks(blocks, width, activation))
            for _ in range(scales))
        top = width * (size[0] >> scales) * (size[1] >> scales)
        self.head = nn.Sequential(nn.Flatten(), make_activation(activation),
                                  nn.Linear(top, hidden_dim), make_activation(activation),
                                  nn.Linear(hidden_dim, 2 * latent_dim))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        h = self.stem(x)
        features = []
        for stage in self.stages:
            h = stage(h)
            features.append(h)
        return self.head(h), features[::-1]


class LatentLayer(nn.Module):
    """One spatial stochastic layer of the top-down path (VDVAE's top-down block)."""

    def __init__(self, width: int, channels: int, blocks: int, activation: str) -> None:
        super().__init__()
        self.channels = channels
        self.prior_net = nn.Sequential(make_activation(activation),
                                       conv3x3(width, 2 * channels + width))
        with torch.no_grad():  # the prior starts at N(0, I) and leaves h unchanged
            self.prior_net[-1].weight.zero_()
            self.prior_net[-1].bias.zero_()
        self.posterior_net = nn.Sequential(make_activation(activation),
                                           conv3x3(2 * width, 2 * channels))
        self.project = nn.Conv2d(channels, width, 1)
        self.blocks = residual_blocks(blocks, width, activation)

    def forward(self, h: Tensor, feature: Tensor | None, noise: Tensor | None
                ) -> tuple[Tensor, DiagonalGaussian | None, DiagonalGaussian, Tensor]:
        """(new state, q(z_l|z_>l, x) or None without ``feature``, p(z_l|z_>l), z_l flat).
        z_l is drawn from q (from p without ``feature``) with ``noise``, or is its mean."""
        prior_out = self.prior_net(h)
        prior = gaussian(prior_out[:, :2 * self.channels])
        posterior = None
        if feature is not None:
            posterior = gaussian(self.posterior_net(torch.cat([h, feature], dim=1)))
        source = prior if posterior is None else posterior
        z = source.mean if noise is None else source.mean + source.std * noise
        h = h + prior_out[:, 2 * self.channels:]
        z_map = z.to(h.dtype).reshape(h.shape[0], self.channels, *h.shape[2:])
        return self.blocks(h + self.project(z_map)), posterior, prior, z


class TopDown(nn.Module):
    """The top latent (N, latent_dim) and, for inference, the bottom-up features → the output
    (N, out_channels, H, W) and, per spatial layer (top first), q, p and z (:meth:`forward`)."""

    def __init__(self, out_channels: int, size: tuple[int, int], latent_dim: int,
                 layers: Sequence[int], latent_channels: int, width: int, blocks: int,
                 hidden_dim: int, activation: str) -> None:
        super().__init__()
        scales = len(layers)
        top = (width, size[0] >> scales, size[1] >> scales)
        self.top = nn.Sequential(nn.Linear(latent_dim, hidden_dim), make_activation(activation),
                                 nn.Linear(hidden_dim, top[0] * top[1] * top[2]),
                                 nn.Unflatten(1, top))
        self.scales = nn.ModuleList(
            nn.ModuleList(LatentLayer(width, latent_channels, blocks, activation)
                          for _ in range(count))
            for count in layers)
        self.upsampled = nn.ModuleList(residual_blocks(blocks, width, activation)
                                       for _ in range(scales))
        self.out = nn.Sequential(make_activation(activation), conv3x3(width, out_channels))
        self.latent_sizes = [latent_channels * (size[0] >> (scales - i)) * (size[1] >> (scales - i))
                             for i, count in enumerate(layers) for _ in range(count)]
        """Dimensions of each spatial layer, top first."""

    def forward(self, z_top: Tensor, features: list[Tensor] | None = None, noise: Noise = None
                ) -> tuple[Tensor, list[DiagonalGaussian | None], list[DiagonalGaussian],
                           list[Tensor]]:
        """Decoder output, then per spatial layer (top first) the posterior (None when
        ``features`` is None: generation), the prior and the latent, flat (N, D_l)."""
        h = self.top(z_top)
        posteriors, priors, latents = [], [], []
        index = 0
        for scale, (layers, upsampled) in enumerate(zip(self.scales, self.upsampled, strict=True)):
            for layer in layers:
                feature = None if features is None else features[scale]
                h, posterior, prior, z = layer(h, feature, None if noise is None else noise[index])
                posteriors.append(posterior)
                priors.append(prior)
                latents.append(z)
                index += 1
            h = upsampled(functional.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(h), posteriors, priors, latents


@register_architecture("ladder")
def build_ladder(image_shape: tuple[int, int, int], latent_dim: int, out_channels: int,
                 width: int = 64, layers: Sequence[int] = (1, 1), latent_channels: int = 8,
                 blocks: int = 2, hidden_dim: int = 256, activation: str = "gelu"
                 ) -> tuple[BottomUp, TopDown]:
    """The bottom-up and top-down nets (module docstring); :class:`HierarchicalVAE` drives
    them."""
    check_width("width", width)
    check_width("latent_channels", latent_channels)
    check_width("hidden_dim", hidden_dim)
    if not is_int(blocks) or blocks < 0:
        raise ValueError(f"arch_options 'blocks' must be an int >= 0 (residual blocks per "
                         f"stage), got {blocks!r}")
    if (not isinstance(layers, (list, tuple)) or not layers
            or not all(is_int(n) and n >= 0 for n in layers)):
        raise ValueError(f"arch_options 'layers' must be a non-empty list of ints >= 0 (spatial "
                         f"stochastic layers per scale, coarse to fine, e.g. [1, 1]), got "
                         f"{layers!r}")
    in_channels, height, width_px = image_shape
    check_halvings("ladder", len(layers), image_shape, "layers")
    size = (height, width_px)
    bottom_up = BottomUp(in_channels, size, latent_dim, len(layers), width, blocks, hidden_dim,
                         activation)
    top_down = TopDown(out_channels, size, latent_dim, layers, latent_channels, width, blocks,
                       hidden_dim, activation)
    return bottom_up, top_down
