"""FactorVAE: its discriminator learns to tell correlated latents from their permuted copies, and
the training module trains it with a second optimizer (manual optimization) whose state a
checkpoint keeps and a resumed run restores."""

import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from training_models import tiny_bars

from lightning_vae import VAE
from lightning_vae.objectives import build_objective
from lightning_vae.objectives.factorvae import permute_dims

OBJECTIVE = {"name": "factorvae", "gamma": 10.0, "hidden_dim": 32, "layers": 3, "lr": 1e-3}


def factorvae_module(**options) -> VAE:
    torch.manual_seed(0)
    return VAE(arch="mlp", image_shape=(1, 8, 8), latent_dim=3,
               arch_options={"hidden_dims": [32]}, iw_samples=0, objective=OBJECTIVE,
               **options)


def loader() -> DataLoader:
    return DataLoader(tiny_bars(64), batch_size=16)


def fit(module: VAE, steps: int, root, ckpt_path=None) -> pl.Trainer:
    trainer = pl.Trainer(max_steps=steps, logger=False, default_root_dir=root,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", log_every_n_steps=1)
    trainer.fit(module, loader(), ckpt_path=ckpt_path)
    return trainer


def test_permute_dims_shuffles_each_dimension_across_the_batch_on_its_own():
    z = torch.arange(40.0).view(10, 4) + torch.tensor([0.0, 100.0, 200.0, 300.0])
    permuted = permute_dims(z, torch.Generator().manual_seed(0))
    for d in range(4):  # every column keeps its values, in a new order
        assert sorted(permuted[:, d].tolist()) == sorted(z[:, d].tolist())
    orders = [permuted[:, d].argsort() for d in range(4)]
    assert any(not torch.equal(orders[0], order) for order in orders[1:])


def test_the_discriminator_loss_falls_on_correlated_latents():
    objective = build_objective(1.0, "constant", {**OBJECTIVE, "lr": 1e-2})
    objective.build(4)
    optimizer = objective.discriminator_optimizer()
    generator = torch.Generator().manual_seed(0)
    shared = torch.randn(128, 1, generator=generator)
    z = shared + 0.1 * torch.randn(128, 4, generator=generator)  # all four dimensions alike
    first = objective.discriminate(z, generator)
    for _ in range(30):
        optimizer.zero_grad()
        objective.discriminate(z, generator)["disc_loss"].mean().backward()
        optimizer.step()
    last = objective.discriminate(z, generator)
    assert first["disc_loss"].mean().item() == pytest.approx(math.log(4), abs=0.1)  # a coin flip
    assert last["disc_loss"].mean() < 0.5 * first["disc_loss"].mean()
    assert last["disc_accuracy"].mean() > 0.9
    assert last["tc"].mean() > 1.0  # the TC estimate sees the correlation


def test_the_vae_loss_reaches_z_but_not_the_discriminator_and_back():
    objective = build_objective(1.0, "constant", OBJECTIVE)
    objective.build(3)
    z = torch.randn(8, 3, requires_grad=True)
    terms = objective.discriminate(z, torch.Generator().manual_seed(0))
    terms["tc"].sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is None for p in objective.parameters())
    z.grad = None
    terms["disc_loss"].sum().backward()
    assert z.grad is None
    assert all(p.grad is not None for p in objective.parameters())


def test_the_discriminator_is_a_submodule_left_out_of_the_vae_optimizer():
    module = factorvae_module()
    vae_optimizer, discriminator_optimizer = module.configure_optimizers()
    discriminator = set(module.objective.parameters())
    assert discriminator and all(
        name.startswith("objective.discriminator.") for name in module.state_dict()
        if not name.startswith("model."))
    assert {p for group in discriminator_optimizer.param_groups for p in group["params"]} \
        == discriminator
    vae_parameters = {p for group in vae_optimizer.param_groups for p in group["params"]}
    assert vae_parameters == set(module.model.parameters())
    assert discriminator_optimizer.param_groups[0]["lr"] == OBJECTIVE["lr"]


def test_a_few_steps_train_both_and_count_each_step_once(tmp_path):
    module = factorvae_module()
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    trainer = fit(module, 3, tmp_path)
    assert trainer.global_step == 3  # the discriminator's steps are not training steps
    assert not module.automatic_optimization
    changed = {name for name, p in module.named_parameters() if not torch.equal(p, before[name])}
    assert changed == set(before)  # the encoder, decoder and discriminator all moved
    logged = trainer.callback_metrics
    assert {"train/tc", "train/disc_loss", "train/disc_accuracy", "train/gamma"} <= set(logged)
    assert logged["train/loss"] == pytest.approx(
        (logged["train/recon"] + logged["train/beta"] * logged["train/kl"]
         + logged["train/gamma"] * logged["train/tc"]).item(), rel=1e-5)


def test_a_checkpoint_keeps_both_optimizers_and_a_resumed_run_continues(tmp_path):
    trainer = fit(factorvae_module(), 2, tmp_path)
    path = tmp_path / "two.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    assert len(checkpoint["optimizer_states"]) == 2
    assert any(key.startswith("objective.discriminator.") for key in checkpoint["state_dict"])
    resumed = factorvae_module()
    trainer = fit(resumed, 4, tmp_path, ckpt_path=path)
    assert trainer.global_step == 4
    for optimizer in trainer.optimizers:  # Adam's own count: 2 steps before, 2 after
        (state, *_) = optimizer.state.values()
        assert int(state["step"]) == 4


def test_cuda_graph_is_refused_for_an_objective_with_a_discriminator():
    with pytest.raises(ValueError, match=r"second optimizer.*set cuda_graph false"):
        factorvae_module(cuda_graph=True)


@pytest.mark.parametrize(("options", "message"), [
    ({"gamma": -1}, "gamma >= 0"),
    ({"lr": 0}, "lr > 0"),
    ({"adam_betas": [0.5]}, "adam_betas of two numbers"),
    ({"layers": 0}, "layers"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        build_objective(1.0, "constant", {**OBJECTIVE, **options})


def test_a_learning_rate_schedule_steps_the_vae_optimizer_once_per_step(tmp_path):
    module = factorvae_module(lr_schedule={"name": "cosine", "warmup_steps": 10})
    trainer = fit(module, 3, tmp_path)
    vae_optimizer, discriminator_optimizer = trainer.optimizers
    assert vae_optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 4 / 10)  # warm-up step 4
    assert discriminator_optimizer.param_groups[0]["lr"] == OBJECTIVE["lr"]  # its own, constant
