"""Per-batch hooks that do nothing are not called at every batch, and subclasses still work."""

import ast
import inspect
import textwrap
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.core.hooks import ModelHooks
from torch.utils.data import DataLoader, TensorDataset
from training_models import tiny_bars

from lightning_vae import EMA, VAE, ImagePanels, LatentDiagnostics
from lightning_vae.training.empty_hooks import PER_BATCH_HOOKS, skip_empty_hooks


class EndOnly(pl.Callback):
    def on_train_batch_end(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("base", [pl.Callback, ModelHooks])
def test_lightnings_own_per_batch_hooks_are_empty(base):
    """What skipping relies on: the bases' hooks hold a docstring (and a pass) and nothing else."""
    for name in PER_BATCH_HOOKS:
        source = textwrap.dedent(inspect.getsource(getattr(base, name)))
        for statement in ast.parse(source).body[0].body:
            assert isinstance(statement, ast.Pass) or (
                isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)), name


def test_inherited_hooks_become_none_and_overridden_ones_stay():
    callback = EndOnly()
    skip_empty_hooks(callback, pl.Callback)
    assert callback.on_train_batch_start is None
    assert callback.on_validation_batch_end is None
    assert callback.on_train_batch_end.__func__ is EndOnly.on_train_batch_end
    assert callable(callback.setup)  # hooks called once per run are left alone
    skip_empty_hooks(callback, pl.Callback)  # again: the same
    assert callback.on_train_batch_start is None
    assert callback.on_train_batch_end.__func__ is EndOnly.on_train_batch_end


def test_hooks_set_on_the_instance_are_kept():
    ends = []
    callback = pl.callbacks.LambdaCallback(on_train_batch_end=lambda *args: ends.append(1))
    skip_empty_hooks(callback, pl.Callback)
    assert callback.on_train_batch_start is None
    callback.on_train_batch_end()
    assert ends == [1]


def test_hooks_of_the_package_callbacks_that_do_work_are_kept():
    panels, diagnostics, ema = ImagePanels(), LatentDiagnostics(), EMA()
    for callback in (panels, diagnostics, ema):
        skip_empty_hooks(callback, pl.Callback)
    assert panels.on_train_batch_end is None and diagnostics.on_train_batch_start is None
    assert callable(panels.on_validation_batch_start)  # keeps the first validation images
    assert callable(diagnostics.on_validation_batch_end)  # encodes each validation batch
    assert callable(ema.on_train_batch_end)  # averages after every step


class CountingPanels(ImagePanels):
    """A subclass overriding a hook its parent inherits empty, and one its parent implements,
    both calling super()."""

    def __init__(self) -> None:
        super().__init__(num_images=4)
        self.train_ends = self.validation_starts = 0

    def on_train_batch_end(self, *args: Any) -> None:
        super().on_train_batch_end(*args)
        self.train_ends += 1

    def on_validation_batch_start(self, *args: Any, **kwargs: Any) -> None:
        super().on_validation_batch_start(*args, **kwargs)
        self.validation_starts += 1


class CountingVAE(VAE):
    """A module overriding a hook ``VAE`` inherits empty and one it implements."""

    train_ends = train_starts = 0

    def on_train_batch_end(self, *args: Any) -> None:
        super().on_train_batch_end(*args)
        self.train_ends += 1

    def on_train_batch_start(self, *args: Any) -> None:
        super().on_train_batch_start(*args)
        self.train_starts += 1


def fit_one_epoch(model: VAE, callbacks: list[pl.Callback], root) -> None:
    """4 training steps of 16 images, validation on 2 batches, after a sanity check."""
    trainer = pl.Trainer(max_epochs=1, callbacks=callbacks, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", default_root_dir=root)
    train = DataLoader(TensorDataset(tiny_bars(64)), batch_size=16)
    val = DataLoader(TensorDataset(tiny_bars(32)), batch_size=16)
    trainer.fit(model, train, val)


def tiny_options() -> dict:
    return dict(image_shape=(1, 8, 8), latent_dim=2, arch="mlp",
                arch_options={"hidden_dims": [16]}, iw_samples=0)


def test_a_fit_calls_the_overridden_hooks_of_a_subclass_and_skips_the_empty_ones(tmp_path):
    pl.seed_everything(0)
    model = VAE(**tiny_options())
    panels, plain = CountingPanels(), EndOnly()
    fit_one_epoch(model, [panels, plain], tmp_path)
    assert panels.train_ends == 4  # every training step of the epoch
    assert panels.validation_starts == 2 + 2  # sanity check and validation, 2 batches each
    assert isinstance(panels.images, torch.Tensor) and len(panels.images) == 4  # super() ran
    assert panels.on_train_batch_start is None and plain.on_train_batch_start is None
    assert plain.on_train_batch_end.__func__ is EndOnly.on_train_batch_end
    assert model.on_train_batch_end is None and model.on_before_backward is None
    assert model.on_train_batch_start.__func__ is VAE.on_train_batch_start  # seeds the noise
    assert callable(model.on_validation_batch_end)  # Lightning reads its signature


def test_a_module_subclass_keeps_its_own_hooks_and_its_parents(tmp_path):
    pl.seed_everything(0)
    model = CountingVAE(**tiny_options())
    fit_one_epoch(model, [], tmp_path)
    assert model.train_ends == model.train_starts == 4
    assert model.on_train_batch_end.__func__ is CountingVAE.on_train_batch_end
    assert model.on_before_zero_grad is None
