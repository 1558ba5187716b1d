"""Automatic optimization's step run by the module itself (:mod:`lightning_vae.training.
direct_step`): taken in a default fit, the same weights, steps, β and learning rates as
automatic optimization, left to Lightning whenever anything would see the difference, and
checkpoints that resume at their step across the two."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset
from training_models import tiny_bars

from lightning_vae import VAE

WARMUP = {"name": "linear", "steps": 10}
COSINE = {"name": "cosine", "warmup_steps": 3}


def tiny_model(**options) -> VAE:
    return VAE(image_shape=(1, 8, 8), latent_dim=4, arch="mlp",
               arch_options={"hidden_dims": [32]}, iw_samples=0, beta_schedule=WARMUP,
               **options)


def loader() -> DataLoader:
    return DataLoader(TensorDataset(tiny_bars(64)), batch_size=16, shuffle=True)


class RecordSteps(pl.Callback):
    """Per training step: the global step, the logged β, the learning rate after the step and
    whether automatic optimization ran it."""

    def __init__(self) -> None:
        self.steps, self.betas, self.lrs, self.automatic = [], [], [], []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.steps.append(trainer.global_step)
        self.betas.append(float(trainer.callback_metrics["train/beta"]))
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
        self.automatic.append(module.automatic_optimization)


class CountGradientNorms(pl.Callback):
    """A callback that needs the gradients between backward and the optimizer's step."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        grads = [p.grad.norm() for p in module.parameters() if p.grad is not None]
        self.norms.append(float(torch.stack(grads).norm()))


def fit(model: VAE, steps: int = 12, callbacks: tuple = (), ckpt_path: str | None = None,
        **trainer_options) -> RecordSteps:
    record = RecordSteps()
    options = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, accelerator="cpu", devices=1,
                   log_every_n_steps=1)
    trainer = pl.Trainer(max_steps=steps, callbacks=[record, *callbacks],
                         **{**options, **trainer_options})
    trainer.fit(model, loader(), ckpt_path=ckpt_path)
    return record


def seeded_fit(callbacks: tuple = (), precision: str = "32-true", **options
               ) -> tuple[VAE, RecordSteps]:
    pl.seed_everything(0)
    model = tiny_model(**options)
    return model, fit(model, callbacks=callbacks, precision=precision)


@pytest.mark.parametrize("options, precision", [
    ({}, "32-true"), ({"lr_schedule": COSINE}, "32-true"), ({}, "bf16-mixed")],
    ids=["constant", "cosine", "bf16"])
def test_a_default_fit_steps_directly_and_trains_exactly_as_automatic_optimization(options,
                                                                                   precision):
    """A gradient-reading callback keeps automatic optimization (and is called at every step);
    without it the steps are direct. Same seed, same batches: same weights, steps, β and
    learning rates, the cosine schedule stepped once a step; in bf16 autocast too."""
    norms = CountGradientNorms()
    automatic, automatic_steps = seeded_fit(callbacks=(norms,), precision=precision, **options)
    direct, direct_steps = seeded_fit(precision=precision, **options)
    assert automatic_steps.automatic == [True] * 12 and direct_steps.automatic == [False] * 12
    assert len(norms.norms) == 12 and all(n > 0 for n in norms.norms)
    assert direct_steps.steps == automatic_steps.steps == list(range(1, 13))
    assert direct_steps.betas == automatic_steps.betas
    assert direct_steps.lrs == automatic_steps.lrs
    if options:  # the warm-up, then the decay
        assert direct_steps.lrs[:3] == pytest.approx([2e-3 / 3, 1e-3, 1e-3])
        assert direct_steps.lrs[-1] < direct_steps.lrs[-2] < 1e-3
    for (name, a), b in zip(automatic.state_dict().items(), direct.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name


class ZeroGradListener(VAE):
    def on_before_zero_grad(self, optimizer) -> None:
        self.zero_grads = getattr(self, "zero_grads", 0) + 1


class OwnOptimizerStep(VAE):
    def optimizer_step(self, *args, **kwargs) -> None:
        self.optimizer_steps = getattr(self, "optimizer_steps", 0) + 1
        super().optimizer_step(*args, **kwargs)


@pytest.mark.parametrize("trainer_options", [{"gradient_clip_val": 1.0},
                                             {"accumulate_grad_batches": 2}],
                         ids=["clipping", "accumulation"])
def test_clipping_or_accumulating_gradients_keeps_automatic_optimization(trainer_options):
    record = fit(tiny_model(), steps=4, **trainer_options)
    assert record.automatic == [True] * len(record.steps) and record.steps[-1] == 4


@pytest.mark.parametrize("model_class, counter", [(ZeroGradListener, "zero_grads"),
                                                  (OwnOptimizerStep, "optimizer_steps")])
def test_a_module_hook_or_method_of_the_optimization_keeps_it_automatic_and_is_called(
        model_class, counter):
    model = model_class(image_shape=(1, 8, 8), latent_dim=4, arch="mlp", iw_samples=0)
    record = fit(model, steps=4)
    assert record.automatic == [True] * 4
    assert getattr(model, counter) == 4


def test_a_training_step_of_a_subclass_keeps_automatic_optimization_which_steps_it():
    class OwnTrainingStep(VAE):
        def training_step(self, batch, batch_idx):
            return self._objective(self.model.elbo(batch[0]))["loss"]

    model = OwnTrainingStep(image_shape=(1, 8, 8), latent_dim=4, arch="mlp", iw_samples=0)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu")
    trainer.fit(model, loader())
    assert model.automatic_optimization and trainer.global_step == 2
    assert not any(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def saved(tmp_path, name: str) -> str:
    return str(tmp_path / "checkpoints" / f"{name}.ckpt")


@pytest.mark.parametrize("saved_direct, resumed_direct", [
    (True, False), (False, True), (True, True), (False, False)])
def test_a_checkpoint_resumes_at_its_step_from_either_optimization_to_either(
        tmp_path, saved_direct, resumed_direct):
    """Four steps saved, resumed to eight: four more steps, the β warm-up going on from 0.4.
    A gradient-reading callback makes a run automatic."""
    def callbacks(direct: bool) -> tuple:
        return () if direct else (CountGradientNorms(),)

    pl.seed_everything(0)
    checkpoints = {"enable_checkpointing": True, "default_root_dir": tmp_path}
    fit(tiny_model(), steps=4, callbacks=callbacks(saved_direct), **checkpoints)
    record = fit(tiny_model(), steps=8, callbacks=callbacks(resumed_direct),
                 ckpt_path=saved(tmp_path, "epoch=0-step=4"), **checkpoints)
    assert record.steps == [5, 6, 7, 8]
    assert record.betas == pytest.approx([0.4, 0.5, 0.6, 0.7])
    assert record.automatic == [not resumed_direct] * 4


def test_a_checkpoint_resumed_twice_across_the_two_resumes_at_the_later_step(tmp_path):
    """Direct to 4, automatic to 8 (its checkpoint still holds the direct run's count of 4 in the
    other loop), then direct again: at step 8, not 4."""
    pl.seed_everything(0)
    checkpoints = {"enable_checkpointing": True, "default_root_dir": tmp_path}
    fit(tiny_model(), steps=4, **checkpoints)
    fit(tiny_model(), steps=8, callbacks=(CountGradientNorms(),),
        ckpt_path=saved(tmp_path, "epoch=0-step=4"), **checkpoints)
    record = fit(tiny_model(), steps=12, ckpt_path=saved(tmp_path, "epoch=1-step=8"),
                 **checkpoints)
    assert record.steps == [9, 10, 11, 12]
    assert record.betas == pytest.approx([0.8, 0.9, 1.0, 1.0])
    assert record.automatic == [False] * 4
