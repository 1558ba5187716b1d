"""Checks at the model's boundary: sizes a config may ask for, and the batches ``elbo`` scores.

A config.json is data from anywhere: a latent_dim of a billion or a 40000x40000 image_shape
would try to allocate hundreds of GB before any error, so sizes are bounded first. A batch
holding NaN, infinities or values outside the likelihood's support gives a number, not an
error (a Bernoulli likelihood scores x = -3 better than any real image), so ``elbo`` refuses
it. The check is one min/max reduction per batch; it is skipped while torch.compile traces or a
CUDA graph captures, where reading a value back is impossible.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightning_vae.model.likelihoods import BernoulliHead

MAX_LATENT_DIM = 1 << 16
MAX_CHANNELS = 64
MAX_IMAGE_SIDE = 8192
MAX_PARAMETERS = 1 << 30
"""Bounds of a model's size: 65536 latent dimensions, 64 channels, 8192 pixels a side, and
2**30 parameters (4 GiB in float32), each far beyond a VAE this package trains."""


def check_sizes(image_shape: tuple[int, ...], latent_dim: int) -> None:
    """Refuse an ``image_shape`` or ``latent_dim`` past the bounds above, naming the limit."""
    limits = (("channels", image_shape[0], MAX_CHANNELS),
              ("height", image_shape[1], MAX_IMAGE_SIDE),
              ("width", image_shape[2], MAX_IMAGE_SIDE), ("latent_dim", latent_dim, MAX_LATENT_DIM))
    for name, value, limit in limits:
        if value > limit:
            what = name if name == "latent_dim" else f"image_shape {name}"
            raise ValueError(f"{what}={value} is past the limit of {limit}; a model that large "
                             "would not fit in memory")


def check_parameter_count(build: type[nn.Module], config: dict[str, Any], path: Path) -> None:
    """Refuse a config whose model would hold more than ``MAX_PARAMETERS`` parameters, counted
    on a model built on the meta device (no memory). A config that does not build at all is left
    to the real build, whose error says why."""
    try:
        with torch.device("meta"):
            model = build(**config)
    except (TypeError, ValueError):
        return
    count = sum(tensor.numel() for tensor in (*model.parameters(), *model.buffers()))
    if count > MAX_PARAMETERS:
        raise ValueError(f"{path} describes a model of {count:,} parameters, past the limit of "
                         f"{MAX_PARAMETERS:,}; check its image_shape, latent_dim and arch_options")


def check_batch(x: Tensor, image_shape: tuple[int, ...], likelihood_head: nn.Module) -> None:
    """Refuse a batch ``elbo`` cannot score: not (B, *image_shape), NaN or infinite values, or
    (Bernoulli likelihood) values outside [0, 1]."""
    if tuple(x.shape[1:]) != tuple(image_shape) or x.dim() != len(image_shape) + 1:
        raise ValueError(f"elbo takes a batch of shape (B, {', '.join(map(str, image_shape))}), "
                         f"got {tuple(x.shape)}; prepare images with model.preprocess")
    if not _checkable() or x.numel() == 0:
        return
    low, high = (float(v) for v in torch.aminmax(x.detach().float()))  # NaN propagates
    bernoulli = isinstance(likelihood_head, BernoulliHead)
    if not (low == low and high == high) or abs(low) == float("inf") or abs(high) == float("inf"):
        raise ValueError(f"elbo got a batch holding NaN or infinite values (range [{low:g}, "
                         f"{high:g}]); check the data, or prepare images with model.preprocess")
    if bernoulli and (low < 0 or high > 1):
        raise ValueError(f"elbo got values in [{low:g}, {high:g}], outside [0, 1], the support of "
                         "the Bernoulli likelihood; scale pixels to [0, 1] (model.preprocess "
                         "does)")


@contextmanager
def unchecked_inputs(model: nn.Module) -> Iterator[None]:
    """``model.validate_inputs`` off inside the block (a training loop that checked its first
    batch), restored after it, also when the block raises."""
    before, model.validate_inputs = model.validate_inputs, False
    try:
        yield
    finally:
        model.validate_inputs = before


def _checkable() -> bool:
    """Whether values can be read back now: not while torch.compile traces or a CUDA graph
    captures."""
    if torch.compiler.is_compiling():
        return False
    return not (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())
