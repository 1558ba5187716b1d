"""Learning-rate schedules from a recipe's ``lr_schedule``: cosine with a linear warm-up, over
the trainer's estimated steps."""

import itertools
import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_vae import VAE
from lightning_vae.training.schedules import build_lr_schedule, cosine_factor


def test_the_cosine_schedule_warms_up_linearly_then_decays_to_its_floor():
    factors = [cosine_factor(step, 4, 14, 0.1) for step in range(16)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0
    assert factors[9] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factors[14] == pytest.approx(0.1) and factors[15] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(factors[4:]))


def test_a_scheduler_over_the_estimated_steps_sets_the_optimizers_rate():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2.0)
    scheduler = build_lr_schedule({"name": "cosine", "warmup_steps": 2}, optimizer, 10.0)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([2.0 * cosine_factor(s, 2, 10, 0.0) for s in range(10)])


@pytest.mark.parametrize("spec, message", [
    ("linear", "unknown lr_schedule 'linear'; choose null or one of"),
    ({"warmup_steps": 3}, "unknown lr_schedule"),
    ({"name": "cosine", "warmup": 3}, r"has no option \['warmup'\]"),
    ({"name": "cosine", "warmup_steps": -1}, "needs warmup_steps >= 0"),
    ({"name": "cosine", "min_lr_ratio": 2}, "needs min_lr_ratio in"),
    ({"name": "cosine", "total_steps": 0}, "needs total_steps >= 1")])
def test_a_bad_lr_schedule_is_refused_when_the_module_is_built(spec, message):
    with pytest.raises(ValueError, match=message):
        VAE(arch="mlp", image_shape=(1, 4, 4), latent_dim=2, lr_schedule=spec)


def test_training_without_a_known_length_is_refused_naming_the_fix():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    with pytest.raises(ValueError, match=r"set trainer\.max_steps or trainer\.max_epochs"):
        build_lr_schedule("cosine", optimizer, math.inf)


def fit(module: VAE, steps: int, **trainer_options) -> pl.Trainer:
    x = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(0)).round()
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         **trainer_options)
    trainer.fit(module, DataLoader(TensorDataset(x), batch_size=8))
    return trainer


def test_a_module_steps_its_cosine_schedule_every_optimizer_step_over_the_trainers_steps():
    module = VAE(arch="mlp", image_shape=(1, 4, 4), latent_dim=2,
                 arch_options={"hidden_dims": [8]}, lr=0.01, iw_samples=0,
                 lr_schedule={"name": "cosine", "warmup_steps": 2, "min_lr_ratio": 0.5})
    trainer = fit(module, steps=6)
    scheduler = trainer.lr_scheduler_configs[0]
    assert scheduler.interval == "step"
    assert scheduler.scheduler.last_epoch == 6
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(0.01 * cosine_factor(6, 2, 6, 0.5)) and lr == pytest.approx(0.005)


def test_gradient_clipping_comes_from_the_trainer():
    """A recipe clips with ``trainer.gradient_clip_val``: Lightning clips before each step."""
    module = VAE(arch="mlp", image_shape=(1, 4, 4), latent_dim=2,
                 arch_options={"hidden_dims": [8]}, iw_samples=0)
    norms = []

    class Record(pl.Callback):
        def on_before_zero_grad(self, trainer, pl_module, optimizer):
            # the next step's zero_grad: the gradients the last step used, clipped
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            if grads:
                    norms.append(torch.linalg.vector_norm(torch.stack(
                    [torch.linalg.vector_norm(g) for g in grads])).item())

    fit(module, steps=3, gradient_clip_val=1e-3, callbacks=[Record()])
    assert len(norms) == 2 and max(norms) <= 1e-3 * (1 + 1e-4)
