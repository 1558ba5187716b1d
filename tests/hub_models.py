"""Small models, images and outputs shared by the tests of the saved format (tests/hub/) and of
export and push (tests/training/test_export.py).

A :class:`~lightning_vae.VAEModel` is what is saved and loaded; the :class:`~lightning_vae.VAE`
LightningModule is what is trained, checkpointed and exported, its card stating its training
settings.
"""

import json
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lightning_vae import VAE, VAEModel

SMALL_OPTIONS = {"mlp": {"hidden_dims": [16]}, "conv": {"channels": [4, 8], "hidden_dim": 16}}
"""Small widths for the built-in architectures; any other registered one gets its defaults."""
IMAGE_SHAPE = (1, 16, 16)
MODEL_ARGUMENTS = {"arch", "image_shape", "latent_dim", "arch_options", "likelihood",
                   "likelihood_options", "prior", "preprocessing"}
"""What a saved config.json holds besides ``lightning_vae_version``: the architecture only."""


def small_model(arch: str = "mlp", image_shape=IMAGE_SHAPE, latent_dim: int = 3,
                **kwargs) -> VAEModel:
    """A small model of ``arch`` (weights from seed 0)."""
    torch.manual_seed(0)
    return VAEModel(arch=arch, image_shape=image_shape, latent_dim=latent_dim,
                    arch_options=SMALL_OPTIONS.get(arch), **kwargs)


def small_module(arch: str = "mlp", image_shape=IMAGE_SHAPE, latent_dim: int = 3,
                 **kwargs) -> VAE:
    """The training module of :func:`small_model` (the same weights), ``kwargs`` setting its
    model or training arguments."""
    torch.manual_seed(0)
    return VAE(arch=arch, image_shape=image_shape, latent_dim=latent_dim,
               arch_options=SMALL_OPTIONS.get(arch), **kwargs)


def images(n: int = 8, shape=IMAGE_SHAPE) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(1))


def outputs(model: VAEModel, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Everything the model computes from x with seeded generators: posterior, latent draw,
    decoded mean, ELBO terms and prior samples."""
    model.eval()
    out = model(x, generator=torch.Generator().manual_seed(0))
    terms = model.elbo(x, generator=torch.Generator().manual_seed(0))
    return {"mu": out.posterior.mean, "logvar": out.posterior.logvar, "z": out.z,
            "mean": out.likelihood.mean, **terms,
            "samples": model.sample(4, generator=torch.Generator().manual_seed(2))}


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | changes))


def save_small_model(folder: Path) -> Path:
    """:func:`small_model` saved into ``folder`` (the tests' ``saved`` fixture)."""
    small_model().save_pretrained(folder)
    return folder


def model_weights(module_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's weights in a training module's (or its checkpoint's) state_dict, named as
    the model names them (``model.encoder.*`` → ``encoder.*``)."""
    return {name.removeprefix("model."): value for name, value in module_state.items()
            if name.startswith("model.")}


def fit_tiny(root: Path, callbacks=(), **trainer_args) -> pl.Trainer:
    """Four steps of an 8x8 MLP VAE, validated once and checkpointed on ``val/elbo``."""
    pl.seed_everything(0)
    x = (images(64, (1, 8, 8)) > 0.5).float()
    data = TensorDataset(x, torch.zeros(64))
    trainer = pl.Trainer(
        max_steps=4, default_root_dir=root, accelerator="cpu", logger=False,
        enable_progress_bar=False, enable_model_summary=False,
        callbacks=[ModelCheckpoint(monitor="val/elbo", mode="max"), *callbacks], **trainer_args)
    trainer.fit(small_module(image_shape=(1, 8, 8)), DataLoader(data, batch_size=16),
                DataLoader(data, batch_size=32))
    return trainer
