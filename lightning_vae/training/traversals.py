"""Latent traversals as animations: one GIF per latent dimension, the dimension swept back and
forth while the others stay at each image's posterior mean. A still grid of traversals
(:class:`~lightning_vae.training.callbacks.ImagePanels`) shows what each dimension changes; the
animation shows it move, which is how disentanglement is judged by eye (one dimension, one
factor: position, scale, rotation ...).

Add it to a recipe (the dSprites recipes do)::

    trainer:
      callbacks:
        - class_path: lightning_vae.LatentTraversals
          init_args: {every_n_epochs: 5}
"""

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import WandbLogger
from torch import Tensor

from lightning_vae.imaging import make_grid
from lightning_vae.model import VAEModel
from lightning_vae.training.callbacks import ValidationPictures
from lightning_vae.training.module import VAE


class LatentTraversals(ValidationPictures):
    """Every ``every_n_epochs`` epochs (after the validation of epochs N, 2N, ...), write per
    latent dimension d an animated GIF ``<log dir>/traversals/epoch=E-step=S/latent_<d>.gif``:
    the first ``num_images`` images of the first validation batch side by side, decoded with
    dimension d swept from −``traversal_range`` to +``traversal_range`` and back over
    ``frames`` frames of ``frame_ms`` milliseconds, looping. With a W&B logger each GIF is also
    logged as ``traversals/latent_<d>`` (a ``wandb.Video``), at the trainer's step.

    The images are kept from the first validation run (the sanity check included), so every
    animation of a run shows the same inputs. Only global rank zero draws and writes.
    """

    def __init__(self, every_n_epochs: int = 1, num_images: int = 8,
                 traversal_range: float = 2.5, frames: int = 16, frame_ms: int = 80) -> None:
        if min(every_n_epochs, num_images, frame_ms) < 1 or frames < 2 or traversal_range <= 0:
            raise ValueError(
                "LatentTraversals needs every_n_epochs, num_images and frame_ms >= 1, frames >= 2 "
                f"and traversal_range > 0, got {every_n_epochs}, {num_images}, {frame_ms}, "
                f"{frames}, {traversal_range}")
        self.every_n_epochs, self.num_images = every_n_epochs, num_images
        self.traversal_range, self.frames, self.frame_ms = traversal_range, frames, frame_ms
        self.images: Tensor | None = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: VAE) -> None:
        if not self.due(trainer):
            return
        if trainer.is_global_zero:  # forward passes only: no collective call in here
            folder = (Path(trainer.log_dir or trainer.default_root_dir) / "traversals"
                      / f"epoch={trainer.current_epoch:03d}-step={trainer.global_step:06d}")
            paths = self.write_animations(pl_module.model, folder)
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    import wandb

                    logger.log_metrics({f"traversals/{path.stem}": wandb.Video(str(path),
                                                                               format="gif")
                                        for path in paths}, step=trainer.global_step)

    def sweep(self) -> Tensor:
        """The value of the swept dimension at each frame: −range → +range → back, (frames,)."""
        half = torch.linspace(-self.traversal_range, self.traversal_range,
                              self.frames // 2 + 1)
        return torch.cat([half, half.flip(0)[1 : self.frames - len(half) + 1]])

    @torch.no_grad()
    def animations(self, model: VAEModel) -> list[list[np.ndarray]]:
        """Per latent dimension, its frames: uint8 pictures of the kept images side by side."""
        if self.images is None:
            raise RuntimeError("LatentTraversals needs a validation batch: run validation "
                               "(trainer.fit or trainer.validate) with the callback first")
        means = model.encode(self.images.to(model.device, model.dtype)).mean  # (N, D)
        values = self.sweep().to(means)
        animations = []
        for dim in range(means.shape[1]):
            codes = means.repeat(len(values), 1)  # frame-major: (frames · N, D)
            codes[:, dim] = values.repeat_interleave(len(means))
            decoded = model.decode(codes).unflatten(0, (len(values), len(means)))
            animations.append([make_grid(frame, nrow=len(means)) for frame in decoded])
        return animations

    def write_animations(self, model: VAEModel, folder: Path) -> list[Path]:
        """Write ``latent_<d>.gif`` for every dimension d in ``folder``; return their paths."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for dim, frames in enumerate(self.animations(model)):
            path = folder / f"latent_{dim}.gif"
            first, *rest = [Image.fromarray(frame) for frame in frames]
            first.save(path, save_all=True, append_images=rest, duration=self.frame_ms, loop=0)
            paths.append(path)
        return paths
