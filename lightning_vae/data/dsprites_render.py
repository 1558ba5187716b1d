"""dSprites' factor grid, and a re-rendering of its images for when the official file is absent.

The grid is the official one (Matthey et al. 2017, github.com/google-deepmind/dsprites-dataset):
737 280 images, every combination of color (1 value), shape (square, ellipse, heart), scale
(6 values in [0.5, 1]), orientation (40 in [0, 2π]), posX and posY (32 each in [0, 1]), in the
official order (the last factor varies fastest). The factor *values* are the official ones; the
*pixels* are ours, not the LOVE-framework rasterization of the original, so a model trained on
them is trained on a re-rendering, not on dSprites itself.

How a sprite is drawn (binary, a pixel is on when its centre lies inside the shape): at scale 1
the square has a 19-pixel side, the ellipse 24 × 12-pixel axes, the heart (the curve
(x² + y² − 1)³ = x²y³) is about 19 pixels wide; ``orientation`` turns it counter-clockwise as
displayed; its centre lies at pixel 16 + 31·pos (column for posX, row for posY, row 0 at the
top), so each position step is one pixel and every sprite stays inside the 64 × 64 image. Since
positions are whole pixels, each of the 720 (shape, scale, orientation) sprites is drawn once and
shifted into place: the whole grid took 16 s into its 3 GB ``.npy`` (2 busy CPU cores,
mostly writing the file), 3000 images 0.26 s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lightning_vae.atomic import replacing

LATENT_NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")
LATENT_SIZES = (1, 3, 6, 40, 32, 32)
NUM_IMAGES = int(np.prod(LATENT_SIZES))
IMAGE_SIZE = 64
LATENT_VALUES = (
    np.array([1.0]),
    np.array([1.0, 2.0, 3.0]),  # 1 square, 2 ellipse, 3 heart
    np.linspace(0.5, 1, 6),
    np.linspace(0, 2 * np.pi, 40),
    np.linspace(0, 1, 32),
    np.linspace(0, 1, 32),
)
"""The official ``metadata['latents_possible_values']``, in ``LATENT_NAMES`` order."""
SHAPE_NAMES = ("square", "ellipse", "heart")

_HALF = 16
"""A sprite is drawn on a (2·16 + 1)² canvas around its centre pixel."""
_FIRST_CENTRE = 16
"""Pixel index of a sprite's centre at position 0; position 1 is 31 pixels further."""
_PAD = IMAGE_SIZE + 2 * _HALF - 1
"""Side of a canvas padded so that every placement is a 64 × 64 window of it."""


def latent_classes(indices: np.ndarray) -> np.ndarray:
    """The official ``latents_classes`` rows (N, 6) int64 of the images at ``indices``."""
    return np.stack(np.unravel_index(np.asarray(indices), LATENT_SIZES), axis=1).astype(np.int64)


def latent_values(classes: np.ndarray) -> np.ndarray:
    """The official ``latents_values`` (N, 6) float64 of ``latents_classes`` rows (N, 6)."""
    return np.stack([values[column] for values, column in zip(LATENT_VALUES, classes.T,
                                                              strict=True)], axis=1)


def _inside(shape: int, u: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    """Whether the points (u, v), in pixels from the centre in the sprite's own axes (v up),
    lie in shape ``shape`` (0 square, 1 ellipse, 2 heart) at ``scale``."""
    u, v = u / scale, v / scale
    if shape == 0:
        return np.maximum(np.abs(u), np.abs(v)) <= 9
    if shape == 1:
        return (u / 12) ** 2 + (v / 6) ** 2 <= 1
    x, y = u / 8.5, v / 8.5 + 0.12  # the curve spans y in [-1, 1.24]: centre it
    return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0


def sprites() -> np.ndarray:
    """Every (shape, scale, orientation) sprite centred on a padded canvas, uint8 0/1 of shape
    (3·6·40, _PAD, _PAD): the 64 × 64 window at (31 − row offset, 31 − column offset) is the
    image of the sprite placed that many pixels right of and below position 0."""
    offsets = np.arange(-_HALF, _HALF + 1, dtype=np.float64)
    dx, dy = np.meshgrid(offsets, offsets)  # dx along columns, dy down the rows
    canvases = np.zeros((3, 6, 40, _PAD, _PAD), dtype=np.uint8)
    centre = _PAD - IMAGE_SIZE + _FIRST_CENTRE  # in the window at (31, 31): pixel 16
    window = slice(centre - _HALF, centre + _HALF + 1)
    for o, angle in enumerate(LATENT_VALUES[3]):
        cos, sin = np.cos(angle), np.sin(angle)
        u, v = cos * dx - sin * dy, -sin * dx - cos * dy  # turned back by the angle, v up
        for shape in range(3):
            for s, scale in enumerate(LATENT_VALUES[2]):
                canvases[shape, s, o, window, window] = _inside(shape, u, v, scale)
    return canvases.reshape(-1, _PAD, _PAD)


def render_images(indices: np.ndarray) -> np.ndarray:
    """The re-rendered images at grid ``indices``: uint8 (N, 64, 64) of 0/1, as official
    ``imgs``."""
    classes = latent_classes(indices)
    sprite = np.ravel_multi_index((classes[:, 1], classes[:, 2], classes[:, 3]), (3, 6, 40))
    pixels = np.arange(IMAGE_SIZE)
    rows = (_PAD - IMAGE_SIZE - classes[:, 5])[:, None] + pixels
    columns = (_PAD - IMAGE_SIZE - classes[:, 4])[:, None] + pixels
    return sprites()[sprite[:, None, None], rows[:, :, None], columns[:, None, :]]


def write_rendered_grid(path: str | Path) -> Path:
    """Render all 737 280 images, in the official order, into the ``.npy`` file ``path``
    (3 GB, uint8 (N, 64, 64) of 0/1), written whole or not at all."""
    canvases = sprites()
    side = _PAD - IMAGE_SIZE + 1  # 32 placements along each axis
    with replacing(path) as temporary:
        out = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8,
                                        shape=(NUM_IMAGES, IMAGE_SIZE, IMAGE_SIZE))
        for number, canvas in enumerate(canvases):
            windows = np.lib.stride_tricks.sliding_window_view(canvas, (IMAGE_SIZE,) * 2)
            # windows[a, b] is the sprite moved 31 − a rows down and 31 − b columns right:
            # reversed and transposed, [posX, posY] in the official order.
            block = windows[::-1, ::-1].transpose(1, 0, 2, 3)
            out[number * side**2 : (number + 1) * side**2] = block.reshape(-1, IMAGE_SIZE,
                                                                           IMAGE_SIZE)
        out.flush()
        del out
    return Path(path)
