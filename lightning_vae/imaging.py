"""Image operations shared by the data modules and the model's preprocessing: one decoded
image → the uint8 (C, H, W) array a data set or a model takes (:func:`fit_image`), the
binarization choices (:data:`Binarize`), and a batch → one picture on disk (:func:`make_grid`,
:func:`save_image`).

Pillow decodes and writes the files; torchvision is not needed (and not a dependency).
"""

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from lightning_vae.atomic import replacing

Binarize = Literal["none", "dynamic", "static"]
"""How images are binarized: ``"none"`` (grey levels in [0, 1]), ``"dynamic"`` (a fresh
Bernoulli draw of each training batch) or ``"static"`` (one fixed draw)."""

_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def fit_image(image: Image.Image, channels: int, crop: int | None, size: int,
              where: str) -> np.ndarray:
    """A decoded image → uint8 (C, H, W): converted to `channels`, then its centred
    `crop` x `crop` square cut out and resized (bilinear) to `size` x `size`; `crop=None` keeps
    the image's own size. `where` names the image in errors."""
    image = _convert_channels(image, channels, where)
    if crop is not None:
        left, top = (image.size[0] - crop) // 2, (image.size[1] - crop) // 2
        image = image.crop((left, top, left + crop, top + crop))
        if crop != size:  # resize(box=...) would blend in pixels from outside the crop
            image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return np.ascontiguousarray(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))


def _convert_channels(image: Image.Image, channels: int, where: str) -> Image.Image:
    """Image in mode L (channels=1) or RGB (channels=3), whatever mode the file had."""
    if image.mode == "F":
        raise ValueError(
            f"{where}: floating-point images have no fixed value range; save it as 8-bit first"
        )
    if image.mode == "I" or image.mode.startswith("I;16"):
        # Pillow's own conversion clips 16-bit values at 255; scale 0..65535 onto 0..255.
        # A tRNS grey value (in the file's 16-bit units) becomes an alpha channel, as Pillow
        # does for 8-bit grey, so those pixels are composited over black below.
        wide = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        grey = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8))
        if image.info.get("transparency") is not None:
            opaque = (wide != image.info["transparency"]).astype(np.uint8) * 255
            grey = Image.merge("LA", (grey, Image.fromarray(opaque)))
        image = grey
    if (image.mode in _ALPHA_MODES or "transparency" in image.info
            or (image.mode == "P" and image.palette.mode == "RGBA")):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return image.convert("L" if channels == 1 else "RGB")


def make_grid(images: torch.Tensor | np.ndarray, nrow: int = 8, padding: int = 2,
              pad_value: float = 0.5) -> np.ndarray:
    """Tile images of shape (N, C, H, W) with values in [0, 1] into one uint8 picture.

    ``nrow`` images go in each row; ``padding`` pixels of grey ``pad_value`` separate them (grey
    shows against both black and white backgrounds). Values outside [0, 1] are clipped. Returns
    (height, width) for one channel and (height, width, 3) for three: what
    ``PIL.Image.fromarray`` and image panels take.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().float().numpy()
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise ValueError(
            f"make_grid needs a non-empty batch of shape (N, 1 or 3, H, W), got {images.shape}"
        )
    if nrow < 1 or padding < 0:
        raise ValueError(f"make_grid needs nrow >= 1 and padding >= 0, got {nrow}, {padding}")
    n, channels, height, width = images.shape
    ncol = min(nrow, n)
    nrows = -(-n // ncol)
    grid = np.full(
        (channels, padding + nrows * (height + padding), padding + ncol * (width + padding)),
        pad_value, dtype=np.float32,
    )
    for index, image in enumerate(images):
        top = padding + (index // ncol) * (height + padding)
        left = padding + (index % ncol) * (width + padding)
        grid[:, top:top + height, left:left + width] = image
    pixels = np.round(np.clip(np.nan_to_num(grid), 0.0, 1.0) * 255).astype(np.uint8)
    return pixels[0] if channels == 1 else pixels.transpose(1, 2, 0)


def save_image(picture: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 (H, W) grey or (H, W, 3) RGB array, e.g. from :func:`make_grid`, in the
    format its file name's extension names (``.png``, ``.jpg``, ``.webp``, ...; PNG without
    one). The file is replaced atomically (:func:`~lightning_vae.atomic.replacing`): a failed
    write leaves an existing one as it was."""
    if picture.dtype != np.uint8 or not (
        picture.ndim == 2 or (picture.ndim == 3 and picture.shape[2] == 3)
    ):
        raise ValueError(
            f"save_image needs a uint8 (H, W) or (H, W, 3) array, got {picture.dtype} "
            f"{picture.shape}; build it with make_grid"
        )
    path = Path(path)
    extensions = Image.registered_extensions()  # also loads Pillow's format plugins
    image_format = extensions.get(path.suffix.lower()) if path.suffix else "PNG"
    if image_format not in Image.SAVE:
        raise ValueError(f"{path}: Pillow writes no image format with the extension "
                         f"{path.suffix!r}; end the file name with .png (or .jpg, .webp, ...)")
    with replacing(path) as temporary:
        Image.fromarray(picture).save(temporary, format=image_format)
    return path
