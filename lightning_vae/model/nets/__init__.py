"""Encoder/decoder families, registered by name on import."""

from lightning_vae.model.nets import conv, ladder, mlp  # noqa: F401  (registers their names)
from lightning_vae.model.nets.registry import (
    available_architectures,
    build_architecture,
    register_architecture,
)

__all__ = ["available_architectures", "build_architecture", "register_architecture"]
