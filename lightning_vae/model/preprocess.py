"""What a model's input depends on, saved with it: any image → exactly what it was trained on.

A VAE only understands images prepared the way its training data was. The datamodules describe
their convention as a small JSON dict (their ``preprocessing`` property); the VAE keeps it as its
``preprocessing`` argument, so it is written into the Lightning checkpoint and the Hub
``config.json``, and :func:`preprocess_images` applies it to new images:

- size and channels: the model's ``image_shape``. Grey is ITU-R 601 luma, transparent pixels are
  composited over black, and the EXIF orientation of a PIL image is applied, as for files
  (:func:`~lightning_vae.data.images.load_image`);
- crop: ``crop_size``, the side of the centred square cut before resizing (None: the largest
  centred square), and ``input_size``, the (width, height) of the images ``crop_size`` was chosen
  for (CelebA: 178x218). An image of another size is cut in proportion to its shorter side, so a
  photo framed like the training images gets the same framing; without ``input_size``,
  ``crop_size`` pixels are cut from every image, as the datamodule did;
- binarization: ``binarize`` is ``"none"`` (grey levels in [0, 1]) or ``"dynamic"`` /
  ``"static"`` (trained on Bernoulli draws of the grey levels). A binarized model is given the
  most probable draw: pixels above 0.5 become 1, the others 0. That keeps the input binary, as in
  training, and deterministic, and it leaves binary images (such as the data module's evaluation
  batches) unchanged;
- value range: always [0, 1], the range of the likelihoods' means; no normalization is applied.

An image whose height and width already equal the model's is taken as prepared: it is not
cropped, only converted to the model's channels, to [0, 1] and binarized when the model is. So
the float batches a datamodule yields pass through unchanged (binarized models: binary batches).
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from lightning_vae.imaging import Binarize, fit_image

OutputType = Literal["uint8", "pil"]
ImageInput = Tensor | np.ndarray | Image.Image | Sequence[Tensor | np.ndarray | Image.Image]
"""What :func:`preprocess_images` takes: one image or a batch, or a list of them (any sizes)."""


@dataclass(frozen=True)
class Preprocessing:
    """How a model's training images were prepared, beyond its ``image_shape`` (see the module
    docstring): the binarization and the crop."""

    binarize: Binarize = "none"
    crop_size: int | None = None
    input_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.binarize not in get_args(Binarize):
            raise ValueError(f"preprocessing binarize={self.binarize!r}: expected one of "
                             f"{get_args(Binarize)}")
        if self.crop_size is not None and (not isinstance(self.crop_size, int)
                                           or self.crop_size < 1):
            raise ValueError(f"preprocessing crop_size={self.crop_size!r} must be a positive "
                             "number of pixels, or None for the largest centred square")
        if self.input_size is not None:
            size = tuple(self.input_size)
            if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
                raise ValueError(f"preprocessing input_size={self.input_size!r} must be "
                                 "(width, height) in pixels, or None")
            if self.crop_size is not None and self.crop_size > min(size):
                raise ValueError(f"preprocessing crop_size={self.crop_size} does not fit in "
                                 f"input_size {size[0]}x{size[1]}")
            object.__setattr__(self, "input_size", size)

    @classmethod
    def from_dict(cls, settings: dict[str, Any] | None) -> "Preprocessing":
        """Settings from a model's ``preprocessing`` argument (None: the defaults)."""
        settings = dict(settings or {})
        known = [field.name for field in fields(cls)]
        if unknown := sorted(set(settings) - set(known)):
            raise ValueError(f"unknown preprocessing options {unknown}; choose from {known}")
        return cls(**settings)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON values: what a model's ``preprocessing`` argument holds."""
        settings = asdict(self)
        settings["input_size"] = list(self.input_size) if self.input_size else None
        return settings

    def crop_for(self, width: int, height: int) -> int | None:
        """Side of the centred square cut from a ``width`` x ``height`` image (None: largest)."""
        if self.crop_size is None or self.input_size is None:
            return self.crop_size
        return round(self.crop_size * min(width, height) / min(self.input_size))


def preprocess_images(
    images: ImageInput, image_shape: Sequence[int], settings: Preprocessing
) -> Tensor:
    """Images of any size and kind → the float32 batch (B, *image_shape) a model was trained on.

    Takes PIL images (any mode), uint8 (0..255), bool or float ([0, 1]) tensors and arrays,
    channels first: (H, W), (C, H, W) with C = 1, 3 or 4 (RGBA), or (B, C, H, W); or a list of
    any of these, of different sizes. Always returns a batch. Images that need resizing or another
    number of channels go through 8 bits and Pillow, exactly as files do; others keep their float
    values. The result stays on the device of a tensor that needed no resizing, else on the CPU.
    """
    if isinstance(images, Sequence) and not isinstance(images, str):
        if not images:
            raise ValueError("no images given: pass an image, a batch or a non-empty list")
        batches = [_prepare(image, image_shape, settings, f"image {i}")
                   for i, image in enumerate(images)]
        batch = torch.cat([b.to(batches[0].device) for b in batches])
    else:
        batch = _prepare(images, image_shape, settings, "image")
    if settings.binarize != "none":
        batch = (batch > 0.5).to(torch.float32)
    return batch


def postprocess_images(
    images: Tensor, output_type: OutputType = "uint8"
) -> Tensor | list[Image.Image]:
    """Decoder output (B, C, H, W) in [0, 1] → displayable images: a uint8 (B, C, H, W) tensor of
    0..255 on the CPU (``"uint8"``), or a list of PIL images of mode L or RGB (``"pil"``).

    Values are clipped to [0, 1] and rounded, as :func:`~lightning_vae.imaging.make_grid`
    does; a binarized model's output (the Bernoulli means) is shown as grey levels.
    """
    if output_type not in ("uint8", "pil"):
        raise ValueError(f"output_type={output_type!r}: expected 'uint8' or 'pil'")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"postprocess needs a batch (B, 1 or 3, H, W), got {tuple(images.shape)}")
    pixels = torch.nan_to_num(images.detach().float()).clamp(0, 1).mul(255).round()
    pixels = pixels.to(torch.uint8).cpu()
    if output_type == "uint8":
        return pixels
    return [Image.fromarray(p[0].numpy() if len(p) == 1 else p.permute(1, 2, 0).numpy())
            for p in pixels]


def _prepare(image: Any, image_shape: Sequence[int], settings: Preprocessing,
             where: str) -> Tensor:
    """One input (a PIL image, or a tensor or array holding one image or a batch) → (B, C, H, W)."""
    if isinstance(image, Image.Image):
        where = getattr(image, "filename", "") or where
        return _fit(ImageOps.exif_transpose(image), image_shape, settings, where)[None]
    batch = _unit_batch(image, where)
    channels, height, width = image_shape
    if tuple(batch.shape[1:]) == (channels, height, width):
        return batch
    pixels = batch.mul(255).round().to(torch.uint8).cpu().numpy()
    return torch.stack([
        _fit(Image.fromarray(p[0] if len(p) == 1 else p.transpose(1, 2, 0)),  # L, RGB, RGBA
             image_shape, settings, f"{where} {i}" if len(pixels) > 1 else where)
        for i, p in enumerate(pixels)
    ])


def _unit_batch(image: Any, where: str) -> Tensor:
    """A tensor or array → float32 (B, C, H, W) in [0, 1], C in (1, 3, 4)."""
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, Tensor):
        raise TypeError(f"{where}: expected a PIL image, a tensor or a numpy array, got "
                        f"{type(image).__name__}")
    shape = tuple(image.shape)
    if image.ndim not in (2, 3, 4):
        raise ValueError(f"{where}: expected (H, W), (C, H, W) or (B, C, H, W), got {shape}")
    batch = image.reshape((1,) * (4 - image.ndim) + shape)
    if batch.shape[1] not in (1, 3, 4):
        hint = (" It looks channels-last (H, W, C): pass image.permute(2, 0, 1) "
                "(numpy: image.transpose(2, 0, 1)), or the PIL image itself"
                if shape[-1] in (1, 3, 4) else "")
        raise ValueError(f"{where}: images are channels-first with 1, 3 or 4 channels, got "
                         f"shape {shape}.{hint}")
    if batch.dtype == torch.uint8:
        return batch.to(torch.float32) / 255
    if batch.dtype == torch.bool:
        return batch.to(torch.float32)
    if not batch.is_floating_point():
        raise TypeError(f"{where}: dtype {batch.dtype} is not an image type; pass uint8 "
                        "(0..255) or float (0..1) values")
    batch = batch.to(torch.float32)
    if not ((batch >= 0) & (batch <= 1)).all():
        raise ValueError(
            f"{where}: float images must hold values in [0, 1], got "
            f"[{batch.min().item():g}, {batch.max().item():g}]; divide 0..255 values by 255, "
            "or pass them as uint8"
        )
    return batch


def _fit(image: Image.Image, image_shape: Sequence[int], settings: Preprocessing,
         where: str) -> Tensor:
    """A PIL image → float32 (C, H, W): the conversion, centred crop and resize of
    :func:`~lightning_vae.data.images.load_image`, with the crop of ``settings``."""
    channels, height, width = image_shape
    if image.size == (width, height):
        crop = None  # already the model's size: taken as prepared, never cropped
    elif height != width:
        raise ValueError(f"{where} is {image.size[0]}x{image.size[1]}, but this model takes "
                         f"{width}x{height} images and only resizes to squares; pass images of "
                         "its size")
    else:
        crop = settings.crop_for(*image.size) or min(image.size)
    if crop is not None and crop > min(image.size):
        raise ValueError(
            f"{where} is {image.size[0]}x{image.size[1]}, smaller than the centred {crop}x{crop} "
            f"square this model's training images were cut from (crop_size={settings.crop_size})"
            "; pass a larger image"
        )
    array = fit_image(image, channels, crop, height, where)
    return torch.tensor(array, dtype=torch.float32) / 255
