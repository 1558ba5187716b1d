"""Fully connected encoder and decoder (the architecture of Kingma & Welling 2014 and of the
IWAE paper's MNIST experiments, with widths and activation as options), and the gated variant of
the VampPrior paper (Tomczak & Welling 2018)."""

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor, nn

from lightning_vae.model.nets.registry import check_widths, make_activation, register_architecture


class GatedLinear(nn.Module):
    """A gated dense layer (Dauphin et al. 2017, as the VampPrior paper's MLPs use it):
    act(W x + b) · sigmoid(V x + c). Under a VampPrior, the IWAE paper's tanh MLP collapses its
    posterior to the prior within ~100 steps and a gated one does not (docs/results.md)."""

    def __init__(self, n_in: int, n_out: int, act: str) -> None:
        super().__init__()
        self.value = nn.Linear(n_in, n_out)
        self.gate = nn.Linear(n_in, n_out)
        self.act = make_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.value(x)) * torch.sigmoid(self.gate(x))


class BoundLogVariance(nn.Module):
    """Clamp the log-variance half of an encoder's output (mean, logvar) into [low, high] by a
    hardtanh, as the VampPrior paper's encoder does ([-6, 2]): the posterior can neither become
    a spike the prior's mixture density then chases nor wider than e² around its mean."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.low, self.high = float(low), float(high)

    def forward(self, params: Tensor) -> Tensor:
        mean, logvar = params.chunk(2, dim=-1)
        return torch.cat([mean, nn.functional.hardtanh(logvar, self.low, self.high)], dim=-1)

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


def mlp(sizes: Sequence[int], act: str, *, gated: bool = False) -> nn.Sequential:
    """Linear layers through ``sizes`` with ``act`` between them (none after the last); with
    ``gated``, every hidden layer is a :class:`GatedLinear` (the last stays a plain linear)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(pairwise(sizes)):
        if i == len(sizes) - 2:
            layers.append(nn.Linear(n_in, n_out))
        elif gated:
            layers.append(GatedLinear(n_in, n_out, act))
        else:
            layers += [nn.Linear(n_in, n_out), make_activation(act)]
    return nn.Sequential(*layers)


def check_logvar_bounds(bounds: object) -> tuple[float, float]:
    """``bounds`` as (low, high), refusing anything but two numbers with low < high."""
    if (not isinstance(bounds, (list, tuple)) or len(bounds) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
            or not bounds[0] < bounds[1]):
        raise ValueError(f"arch_options 'logvar_bounds' must be two numbers [low, high] with "
                         f"low < high (e.g. [-6, 2]), or null for none; got {bounds!r}")
    return float(bounds[0]), float(bounds[1])


@register_architecture("mlp")
def build_mlp(image_shape: tuple[int, int, int], latent_dim: int, out_channels: int,
              hidden_dims: Sequence[int] = (512, 256), activation: str = "relu",
              gated: bool = False, logvar_bounds: Sequence[float] | None = None
              ) -> tuple[nn.Module, nn.Module]:
    """An MLP encoder and decoder through ``hidden_dims`` (mirrored in the decoder); ``gated``
    makes the hidden layers :class:`GatedLinear` (the VampPrior paper's, usually with
    ``activation: identity``), ``logvar_bounds`` clamps the encoder's log-variance."""
    check_widths("hidden_dims", hidden_dims)
    if not isinstance(gated, bool):
        raise ValueError(f"arch_options 'gated' must be true or false, got {gated!r}")
    channels, height, width = image_shape
    hidden = list(hidden_dims)
    encoder = nn.Sequential(
        nn.Flatten(), mlp([channels * height * width, *hidden, 2 * latent_dim], activation,
                          gated=gated))
    if logvar_bounds is not None:
        encoder.append(BoundLogVariance(*check_logvar_bounds(logvar_bounds)))
    decoder = nn.Sequential(
        mlp([latent_dim, *reversed(hidden), out_channels * height * width], activation,
            gated=gated),
        nn.Unflatten(1, (out_channels, height, width)),
    )
    return encoder, decoder
