"""Images that look inverted to a model: a black-on-white digit given to a model of white-on-black
MNIST comes back as noise. The model's own samples show what it expects; an image whose border
(its background) is far from theirs is flagged, and ``--invert`` flips it."""

import torch
from PIL import Image, ImageOps
from torch import Tensor

from lightning_vae.model import VAEModel

CONTRAST = 0.5
"""How far (in [0, 1] grey levels) an image's mean border must be from the samples' to count
as inverted: white and black backgrounds differ by about 1."""


def border_mean(batch: Tensor) -> Tensor:
    """The mean grey level of each image's outermost pixels (B, C, H, W) → (B,)."""
    edges = torch.cat([batch[..., 0, :], batch[..., -1, :], batch[..., :, 0], batch[..., :, -1]],
                      dim=-1)
    return edges.float().flatten(1).mean(1)


@torch.no_grad()
def looks_inverted(model: VAEModel, batch: Tensor, samples: int = 16) -> list[bool]:
    """Whether each prepared image of ``batch`` has a background far from that of the
    model's prior samples (seeded, so the answer is the same every time)."""
    generator = torch.Generator(device=model.device).manual_seed(0)
    expected = border_mean(model.sample(samples, generator=generator)).mean()
    return ((border_mean(batch) - expected).abs() > CONTRAST).tolist()


def inverted(image: Image.Image) -> Image.Image:
    """``image`` with its grey levels (or colours) flipped; transparency is kept."""
    if image.mode in ("RGBA", "LA"):
        *colours, alpha = image.split()
        flipped = Image.merge(image.mode[:-1], colours).convert(image.mode[:-1])
        return Image.merge(image.mode, [*ImageOps.invert(flipped).split(), alpha])
    return ImageOps.invert(image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode))
