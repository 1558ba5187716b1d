"""β-TCVAE: its decomposition adds up to the ELBO's KL at the draw, its estimators recover the
total correlation and mutual information of constructed posteriors, its weights follow the β
schedule, and bad options are refused."""

import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from lightning_vae import VAE
from lightning_vae.model import DiagonalGaussian, VAEModel
from lightning_vae.objectives import build_objective
from lightning_vae.objectives.tcvae import aggregate_log_densities, stratified_log_weights


def tiny_model() -> VAEModel:
    torch.manual_seed(0)
    return VAEModel(arch="mlp", image_shape=(1, 8, 8), latent_dim=3,
                    arch_options={"hidden_dims": [32]})


def images(n: int = 32) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1)).round()


def seeded() -> torch.Generator:
    return torch.Generator().manual_seed(7)


@pytest.mark.parametrize("options", [{"sampling": "mws"},
                                     {"sampling": "mss", "dataset_size": 1000}])
def test_with_unit_weights_the_loss_is_the_negative_elbo_at_the_same_draw(options):
    model, x = tiny_model(), images()
    tcvae = build_objective(1.0, "constant", {"name": "tcvae", **options})
    elbo = build_objective(1.0, "constant")
    out, terms = tcvae.terms(model, x, seeded())
    means = {name: term.mean() for name, term in terms.items()}
    loss = tcvae.loss(means, **tcvae.weights(0))
    # The single-draw KL estimate log q(z|x) − log p(z) is what MI + TC + dim-KL add up to ...
    kl_at_draw = out.posterior.log_prob(out.z) - model.prior.log_prob(out.z)
    torch.testing.assert_close(terms["mi"] + terms["tc"] + terms["dim_kl"], kl_at_draw)
    torch.testing.assert_close(loss, (terms["recon"] + kl_at_draw).mean())
    # ... so the loss is the ELBO objective's, with that estimate in place of the closed-form KL.
    _, elbo_terms = elbo.terms(model, x, seeded())
    elbo_loss = elbo.loss({name: term.mean() for name, term in elbo_terms.items()}, beta=1.0)
    torch.testing.assert_close(loss - elbo_loss, (kl_at_draw - elbo_terms["kl"]).mean())
    torch.testing.assert_close(terms["elbo"], elbo_terms["elbo"])  # same draws, same ELBO


def test_the_kl_estimate_behind_the_decomposition_averages_to_the_closed_form_kl():
    model, objective, generator = tiny_model(), build_objective(1.0, "constant", "tcvae"), seeded()
    x = images(1).expand(100, 1, 8, 8)  # one image, many draws (20 batches of 100)
    with torch.no_grad():
        draws = [objective.terms(model, x, generator)[1] for _ in range(20)]
    estimate = torch.cat([terms["mi"] + terms["tc"] + terms["dim_kl"] for terms in draws])
    standard_error = estimate.std() / math.sqrt(len(estimate))
    assert abs(estimate.mean() - draws[0]["kl"][0]) < 4 * standard_error


def constructed(correlated: bool, batch: int = 512, std: float = 0.5):
    """Posteriors N(m, std²) whose means m are independent N(0, 1) per dimension, or one N(0, 1)
    value shared by all four dimensions, and a draw from each."""
    generator = torch.Generator().manual_seed(3)
    means = torch.randn(batch, 4, generator=generator)
    if correlated:
        means = means[:, :1].expand(batch, 4).clone()
    posterior = DiagonalGaussian(means, torch.full_like(means, 2 * math.log(std)))
    return posterior, posterior.sample(generator=generator)


@pytest.mark.parametrize("sampling", ["mws", "mss"])
def test_the_estimates_recover_tc_and_mi_of_constructed_posteriors(sampling):
    # Independent means: q(z) factorises (TC = 0); each dimension's MI is ½·log(1.25 / 0.25).
    posterior, z = constructed(correlated=False)
    log_qz, log_prod = aggregate_log_densities(z, posterior.mean, posterior.logvar, sampling,
                                               dataset_size=10**5)
    assert abs((log_qz - log_prod).mean()) < 0.2
    assert (posterior.log_prob(z) - log_qz).mean() == pytest.approx(2 * math.log(5), abs=0.3)
    # One shared mean: q(z) is N(0, 0.25·I + 11ᵀ), whose TC is ½(Σ log var_d − log det).
    posterior, z = constructed(correlated=True)
    log_qz, log_prod = aggregate_log_densities(z, posterior.mean, posterior.logvar, sampling,
                                               dataset_size=10**5)
    exact_tc = 0.5 * (4 * math.log(1.25) - math.log(0.25**3 * 4.25))
    assert (log_qz - log_prod).mean() == pytest.approx(exact_tc, abs=0.15)


def test_stratified_weights_count_the_own_example_as_one_of_n():
    weights = stratified_log_weights(5, 100).exp()
    torch.testing.assert_close(weights.diagonal(), torch.full((5,), 0.01, dtype=torch.float64))
    assert weights[0, 1] == pytest.approx(99 / (100 * 4))
    torch.testing.assert_close(weights.sum(1), torch.ones(5, dtype=torch.float64))


def test_beta_is_the_schedules_and_weighs_the_total_correlation():
    tcvae = build_objective(4.0, {"name": "linear", "steps": 100},
                            {"name": "tcvae", "alpha": 0.5, "gamma": 2.0})
    assert tcvae.weights(25) == {"alpha": 0.5, "beta": 1.0, "gamma": 2.0}
    means = {"recon": torch.tensor(10.0), "mi": torch.tensor(1.0), "tc": torch.tensor(3.0),
             "dim_kl": torch.tensor(5.0)}
    assert tcvae.loss(means, **tcvae.weights(100)).item() == pytest.approx(10 + 0.5 + 12 + 10)


@pytest.mark.parametrize(("schedule", "options", "message"), [
    ("constant", {"sampling": "mss"}, "needs dataset_size"),
    ("constant", {"sampling": "exact"}, "sampling 'mws' or 'mss'"),
    ("constant", {"alpha": -1}, "alpha >= 0"),
    ("constant", {"dataset_size": 1.5}, "dataset_size >= 2"),
    ({"name": "capacity", "capacity_max": 5, "steps": 10}, {}, "constant, linear or cyclical"),
])
def test_bad_options_are_refused_naming_the_fix(schedule, options, message):
    with pytest.raises(ValueError, match=message):
        build_objective(1.0, schedule, {"name": "tcvae", **options})


def test_stratified_sampling_refuses_a_batch_of_one():
    posterior, z = constructed(correlated=False, batch=1)
    with pytest.raises(ValueError, match="batches of at least 2"):
        aggregate_log_densities(z, posterior.mean, posterior.logvar, "mss", 100)


def test_training_logs_the_decomposition_at_every_step(tmp_path):
    torch.manual_seed(0)
    module = VAE(arch="mlp", image_shape=(1, 8, 8), latent_dim=3, iw_samples=0,
                 arch_options={"hidden_dims": [32]}, beta=6.0,
                 beta_schedule={"name": "linear", "steps": 4},
                 objective={"name": "tcvae", "sampling": "mss", "dataset_size": 64})
    trainer = pl.Trainer(max_steps=2, logger=False, default_root_dir=tmp_path,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", log_every_n_steps=1)
    trainer.fit(module, DataLoader(images(64), batch_size=16))
    logged = trainer.callback_metrics
    assert logged["train/beta"] == 1.5  # 6 · 1/4 at the second step (step 1)
    assert logged["train/loss"].item() == pytest.approx(
        (logged["train/recon"] + logged["train/mi"] + 1.5 * logged["train/tc"]
         + logged["train/dim_kl"]).item(), rel=1e-5)
