"""Architectures by name, so a saved config (a string and a dict of options) rebuilds the model.

A builder takes ``(image_shape, latent_dim, out_channels, **options)`` and returns
``(encoder, decoder)``: the encoder maps images (B, C, H, W) to (B, 2·latent_dim) — mean and
log-variance halves — and the decoder maps latents (B, latent_dim) to (B, out_channels, H, W).
An architecture whose model class is not :class:`~lightning_vae.model.VAEModel` itself (the
hierarchical "ladder", :mod:`lightning_vae.model.hierarchical`) returns the nets that class
drives; ``VAEModel(arch=...)`` builds that class (``register_model_class``).
"""

from collections.abc import Callable
from typing import Any

from torch import nn

from lightning_vae.checks import is_int

ArchitectureBuilder = Callable[..., tuple[nn.Module, nn.Module]]
_ARCHITECTURES: dict[str, ArchitectureBuilder] = {}


def register_architecture(name: str) -> Callable[[ArchitectureBuilder], ArchitectureBuilder]:
    """Register an encoder/decoder builder under ``name`` (a decorator)."""

    def register(builder: ArchitectureBuilder) -> ArchitectureBuilder:
        if name in _ARCHITECTURES and _ARCHITECTURES[name] is not builder:
            raise ValueError(f"architecture {name!r} is already registered")
        _ARCHITECTURES[name] = builder
        return builder

    return register


def available_architectures() -> list[str]:
    return sorted(_ARCHITECTURES)


def build_architecture(name: str, image_shape: tuple[int, int, int], latent_dim: int,
                       out_channels: int, options: dict[str, Any] | None = None
                       ) -> tuple[nn.Module, nn.Module]:
    """Build the encoder and decoder registered under ``name``."""
    if not isinstance(name, str) or name not in _ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {name!r}; registered: {available_architectures()}. "
            "Register your own with lightning_vae.register_architecture(name)."
        )
    try:
        return _ARCHITECTURES[name](tuple(image_shape), latent_dim, out_channels, **(options or {}))
    except TypeError as error:
        raise ValueError(f"bad arch_options {options} for architecture {name!r}: {error}") from None


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU, "identity": nn.Identity,
}


def is_width(value: object) -> bool:
    """Whether ``value`` can be a layer's width: an int >= 1 (a 0-width layer would build a model
    that cannot learn, and a negative one fails deep inside torch)."""
    return is_int(value) and value >= 1


def check_width(option: str, value: object) -> None:
    """Refuse an ``arch_options`` layer width that is not :func:`is_width`."""
    if not is_width(value):
        raise ValueError(f"arch_options {option!r} must be an int >= 1 (e.g. 256), got "
                         f"{value!r}")


def check_widths(option: str, values: object) -> None:
    """Refuse ``arch_options`` widths that are not a non-empty list of ints >= 1 (one a layer)."""
    if not isinstance(values, (list, tuple)) or not values or not all(map(is_width, values)):
        raise ValueError(f"arch_options {option!r} must be a non-empty list of ints >= 1 (one "
                         f"width per layer, e.g. [32, 64]), got {values!r}")


def check_halvings(arch: str, halvings: int, image_shape: tuple[int, int, int], option: str
                   ) -> None:
    """Refuse an image the architecture cannot halve ``halvings`` times (one halving per entry
    of ``arch_options[option]``), naming both ways out."""
    factor = 2 ** halvings
    if image_shape[1] % factor or image_shape[2] % factor:
        raise ValueError(
            f"the {arch} architecture halves the image {halvings} times: it needs height and "
            f"width divisible by {factor}, got image_shape={tuple(image_shape)}; pass fewer "
            f"{option!r} in arch_options or resize the images")


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r} (arch_options 'activation'); choose one "
                         f"of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()
