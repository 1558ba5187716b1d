"""Pictures and latent diagnostics drawn during training, for whichever logger the run uses.

:class:`ImagePanels` decodes a fixed validation batch and fixed prior noise every N epochs
(reconstructions, prior samples, latent traversals, interpolations), so panels of different
epochs and runs show the same inputs. :class:`LatentDiagnostics` logs the KL of each latent
dimension and charts it with the active units. Pictures go to each logger in its own form
(:func:`log_picture`): W&B images, TensorBoard images, and PNG files in the run's folder
whatever the logger. Only global rank zero draws and writes them, and it makes no collective call
while doing so, so other ranks never wait on it.

Add them to a recipe::

    trainer:
      callbacks:
        - class_path: lightning_vae.ImagePanels
          init_args: {every_n_epochs: 5}
        - class_path: lightning_vae.LatentDiagnostics
"""

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from lightning_vae.imaging import make_grid, save_image
from lightning_vae.metrics import ActiveUnits, KLPerDimension
from lightning_vae.model import VAEModel
from lightning_vae.training.module import VAE, images_of


def run_folder(trainer: pl.Trainer) -> Path:
    """The folder of this run, where Lightning's ModelCheckpoint puts its ``checkpoints/``:
    ``save_dir/name/version`` of the first logger (``lightning_logs/version_3`` for TensorBoard
    and CSV, ``lightning_logs/<project>/<run id>`` for W&B), or ``default_root_dir`` without a
    logger. Asking a W&B logger starts its run."""
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return Path(logger.save_dir or trainer.default_root_dir, str(logger.name or ""), version)


def log_picture(trainer: pl.Trainer, key: str, picture: np.ndarray, caption: str | None = None
                ) -> None:
    """Send a uint8 (H, W) or (H, W, 3) picture to every logger of ``trainer`` at the current
    step (``WandbLogger.log_image``, TensorBoard's ``add_image``), and write it as a PNG file
    ``<run folder>/images/<key>/epoch=E-step=S.png`` (:func:`run_folder`), where it can be
    opened whatever the logger (without a logger, nothing is kept).

    Call it on global rank zero only (it writes files)."""
    step, epoch = trainer.global_step, trainer.current_epoch
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            extra = {"caption": [caption]} if caption else {}
            logger.log_image(key=key, images=[picture], step=step, **extra)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, picture, step,
                                        dataformats="HW" if picture.ndim == 2 else "HWC")
    if trainer.loggers:
        folder = run_folder(trainer) / "images" / key
        folder.mkdir(parents=True, exist_ok=True)
        save_image(picture, folder / f"epoch={epoch:03d}-step={step:06d}.png")


def _warn_without_loggers(trainer: pl.Trainer, callback: pl.Callback) -> None:
    if not trainer.loggers:
        rank_zero_warn(f"{type(callback).__name__}: the trainer has no logger, so its pictures "
                       "are not kept; give the trainer a logger (e.g. --trainer.logger CSVLogger)")


class ValidationPictures(pl.Callback):
    """What the picture callbacks share: the first validation batch's images, kept once (the
    same images every epoch), and whether this validation epoch's pictures are due."""

    every_n_epochs: int
    num_images: int
    images: Tensor | None

    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module: VAE, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.images is None and batch_idx == 0 and dataloader_idx == 0:
            self.images = images_of(batch)[: self.num_images].detach().clone()

    def due(self, trainer: pl.Trainer) -> bool:
        """Every ``every_n_epochs``-th validation after the sanity check, once images are kept."""
        every = (trainer.current_epoch + 1) % self.every_n_epochs == 0
        return every and not trainer.sanity_checking and self.images is not None


class ImagePanels(ValidationPictures):
    """Every ``every_n_epochs`` epochs (after the validation of epochs N, 2N, ...), log
    pictures under ``panels/``:

    - ``reconstructions``: the first ``num_images`` images of the first validation batch (top
      row) above their reconstructions from the posterior mean (bottom row);
    - ``samples``: ``num_samples`` images decoded from prior noise z ~ N(0, I), drawn once from a
      generator seeded with ``seed`` and kept, 8 per row;
    - ``traversals``: one row per latent dimension, ``traversal_steps`` columns: that dimension
      swept over [-``traversal_range``, ``traversal_range``] while the others stay at the
      posterior mean of the first image (the β-VAE picture of Higgins et al. 2017);
    - ``interpolations``: one row per pair of images (1st and 2nd, 3rd and 4th, ...): the first
      image, ``interpolation_steps`` decodings of posterior means moved linearly from one to the
      other, the second image.

    The validation batch is kept from the first validation run (the sanity check included), so
    every panel of a run, and of runs on the same data, shows the same inputs.
    """

    def __init__(self, every_n_epochs: int = 1, num_images: int = 8, num_samples: int = 64,
                 traversal_range: float = 3.0, traversal_steps: int = 7,
                 interpolation_steps: int = 8, seed: int = 0) -> None:
        if min(every_n_epochs, num_images, num_samples, traversal_steps) < 1:
            raise ValueError(
                "ImagePanels needs every_n_epochs, num_images, num_samples and traversal_steps "
                f">= 1, got {every_n_epochs}, {num_images}, {num_samples}, {traversal_steps}")
        if interpolation_steps < 2 or traversal_range <= 0:
            raise ValueError(
                "ImagePanels needs interpolation_steps >= 2 and traversal_range > 0, got "
                f"{interpolation_steps}, {traversal_range}")
        self.every_n_epochs, self.num_images, self.num_samples = (
            every_n_epochs, num_images, num_samples)
        self.traversal_range, self.traversal_steps = traversal_range, traversal_steps
        self.interpolation_steps = interpolation_steps
        self.generator = torch.Generator().manual_seed(seed)
        self.noise: Tensor | None = None
        self.images: Tensor | None = None

    def setup(self, trainer: pl.Trainer, pl_module: VAE, stage: str) -> None:
        if self.noise is None:
            self.noise = torch.randn(self.num_samples, pl_module.model.latent_dim,
                                     generator=self.generator)
        _warn_without_loggers(trainer, self)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: VAE) -> None:
        if not self.due(trainer):
            return
        if trainer.is_global_zero:  # plain forward passes only: no collective call in here
            for name, picture in self.panels(pl_module.model).items():
                log_picture(trainer, f"panels/{name}", picture)

    @torch.no_grad()
    def panels(self, model: VAEModel) -> dict[str, np.ndarray]:
        """The pictures, as uint8 grids from :func:`~lightning_vae.imaging.make_grid`,
        for the kept validation images (set by the first validation batch) and noise."""
        if self.images is None or self.noise is None:
            raise RuntimeError("ImagePanels.panels needs a validation batch: run validation "
                               "(trainer.fit or trainer.validate) with the callback first")
        x = self.images.to(model.device, model.dtype)
        means = model.encode(x).mean
        pictures = {
            "reconstructions": make_grid(torch.cat([x, model.reconstruction(x)]),
                                         nrow=len(x)),
            "samples": make_grid(model.decode(self.noise.to(means)), nrow=8),
            "traversals": make_grid(model.decode(self._traversal_codes(means[0])),
                                    nrow=self.traversal_steps),
        }
        if len(x) >= 2:
            pictures["interpolations"] = make_grid(self._interpolations(model, x, means),
                                                   nrow=self.interpolation_steps + 2)
        return pictures

    def _traversal_codes(self, mean: Tensor) -> Tensor:
        """(latent_dim × traversal_steps, latent_dim) codes: row d·steps + j is ``mean`` with
        dimension d set to the j-th value of the sweep."""
        dims, steps = mean.numel(), self.traversal_steps
        values = torch.linspace(-self.traversal_range, self.traversal_range, steps).to(mean)
        codes = mean.repeat(dims * steps, 1)
        rows = torch.arange(dims * steps, device=mean.device)
        codes[rows, rows // steps] = values.repeat(dims)
        return codes

    def _interpolations(self, model: VAEModel, x: Tensor, means: Tensor) -> Tensor:
        """Per pair: the first image, the decoded path between the two means, the second."""
        pairs = len(x) // 2
        start, end = means[0 : 2 * pairs : 2], means[1 : 2 * pairs : 2]
        t = torch.linspace(0, 1, self.interpolation_steps).to(means)[None, :, None]
        path = model.decode(((1 - t) * start[:, None] + t * end[:, None]).flatten(0, 1))
        path = path.unflatten(0, (pairs, self.interpolation_steps))
        rows = torch.cat([x[0 : 2 * pairs : 2, None], path, x[1 : 2 * pairs : 2, None]], dim=1)
        return rows.flatten(0, 1)


class LatentDiagnostics(pl.Callback):
    """After each validation: the mean KL(q(z_i|x) ‖ N(0, 1)) of every latent dimension i over
    the validation set, in nats, logged as scalars ``val/kl_dim/<i>``; every ``every_n_epochs``
    epochs also a bar chart of it, ``diagnostics/kl_per_dim``, titled with the number of active
    units (Burda et al. 2016; the model logs the same count as ``val/active_units``).

    Dimensions with KL near 0 have collapsed to the prior and carry no information; a larger β
    pushes more of them there. It encodes each validation batch once more (the model's
    validation step does not hand its posterior out). Drawing the chart needs matplotlib.
    """

    def __init__(self, every_n_epochs: int = 1) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"LatentDiagnostics needs every_n_epochs >= 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self.kl_per_dim: KLPerDimension | None = None
        self.active_units: ActiveUnits | None = None

    def setup(self, trainer: pl.Trainer, pl_module: VAE, stage: str) -> None:
        self.kl_per_dim = KLPerDimension(pl_module.model.latent_dim).to(pl_module.device)
        self.active_units = ActiveUnits(pl_module.model.latent_dim).to(pl_module.device)
        _warn_without_loggers(trainer, self)

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: VAE, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        posterior = pl_module.model.encode(images_of(batch))
        self.kl_per_dim.update(posterior.kl_per_dim())
        self.active_units.update(posterior.mean)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: VAE) -> None:
        # compute() gathers the ranks' sums (a collective call): every rank runs it.
        kl_per_dim, active = self.kl_per_dim.compute(), int(self.active_units.compute())
        self.kl_per_dim.reset()
        self.active_units.reset()
        if trainer.sanity_checking:
            return
        pl_module.log_dict({f"val/kl_dim/{i}": kl for i, kl in enumerate(kl_per_dim)},
                           sync_dist=True)  # already summed over ranks: averaging changes nothing
        due = (trainer.current_epoch + 1) % self.every_n_epochs == 0
        if due and trainer.is_global_zero:
            title = (f"epoch {trainer.current_epoch}: KL {kl_per_dim.sum():.1f} nats, "
                     f"{active} active units")
            picture = kl_bar_chart(kl_per_dim.cpu().numpy(), title)
            log_picture(trainer, "diagnostics/kl_per_dim", picture, caption=title)


def kl_bar_chart(kl_per_dim: np.ndarray, title: str) -> np.ndarray:
    """A bar chart of the KL of each latent dimension as a uint8 (H, W, 3) picture."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(4.0, 1.0 + 0.2 * len(kl_per_dim)), 3.0), dpi=100,
                    layout="tight")
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.bar(np.arange(len(kl_per_dim)), kl_per_dim, color="tab:blue")
    axes.set_xlabel("latent dimension")
    axes.set_ylabel("KL (nats)")
    axes.set_title(title, fontsize=9)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
