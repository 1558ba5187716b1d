import math

import pytest
import pytorch_lightning as pl
import torch
from linear_gaussian import LinearGaussian, linear_gaussian
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_vae import VAE, StandardNormal, register_architecture
from lightning_vae.metrics import ActiveUnits, ImportanceWeightedNLL, KLPerDimension
from lightning_vae.model.posterior import DiagonalGaussian
from lightning_vae.objectives import importance_weighted_bound


def bound(model: LinearGaussian, k: int, chunk_size: int | None = 100, seed: int = 0) -> Tensor:
    return importance_weighted_bound(model, model.x, k, chunk_size,
                                     torch.Generator().manual_seed(seed), model.posterior)


def test_bounds_rise_from_the_elbo_with_k_towards_the_exact_log_likelihood():
    model = linear_gaussian()
    elbo, exact = model.elbo.mean().item(), model.exact.mean().item()
    iw_10, iw_1000 = bound(model, 10).mean().item(), bound(model, 1000).mean().item()
    assert elbo < iw_10 < iw_1000 < exact
    assert exact - elbo > 1.5  # the encoder is imperfect enough for the bound to matter
    assert exact - iw_1000 < 0.5


def test_a_one_sample_bound_is_an_estimate_of_the_elbo():
    model = linear_gaussian()
    assert bound(model, 1).mean().item() == pytest.approx(model.elbo.mean().item(), abs=0.3)


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
def test_chunking_changes_nothing_even_when_k_is_not_a_multiple_of_the_chunk(chunk_size):
    model = linear_gaussian(n=20)
    unchunked = bound(model, 50, chunk_size=None, seed=3)
    torch.testing.assert_close(bound(model, 50, chunk_size=chunk_size, seed=3), unchunked)
    assert not torch.allclose(bound(model, 50, chunk_size=None, seed=4), unchunked)


@pytest.mark.parametrize("k, chunk_size, message", [
    (0, None, "num_samples >= 1"), (10, 0, "chunk_size must be at least 1")])
def test_bad_sample_counts_raise_clear_errors(k, chunk_size, message):
    model = linear_gaussian(n=4)
    with pytest.raises(ValueError, match=message):
        bound(model, k, chunk_size)


def test_the_nll_metric_is_the_negative_bound_averaged_over_all_batches():
    model = linear_gaussian(n=30)
    metric = ImportanceWeightedNLL(num_samples=20, chunk_size=6)
    torch.manual_seed(5)
    for rows in (slice(0, 12), slice(12, 30)):
        posterior = DiagonalGaussian(model.posterior.mean[rows], model.posterior.logvar[rows])
        metric.update(model.x[rows], posterior, model)
    torch.manual_seed(5)
    expected = torch.cat([
        -importance_weighted_bound(model, model.x[rows], 20, posterior=DiagonalGaussian(
            model.posterior.mean[rows], model.posterior.logvar[rows]))
        for rows in (slice(0, 12), slice(12, 30))])
    assert metric.compute().item() == pytest.approx(expected.mean().item(), rel=1e-5)


def test_the_nll_metric_draws_from_the_generator_given_under_the_models_prior():
    """The prior is the model's: one whose density is e times N(0, I)'s moves −log p̂ by −1."""
    model = linear_gaussian(n=10)
    state = torch.get_rng_state()
    metric = ImportanceWeightedNLL(num_samples=20, chunk_size=6)
    metric.update(model.x, model.posterior, model, torch.Generator().manual_seed(5))
    expected = -bound(model, 20, chunk_size=None, seed=5).mean()
    assert metric.compute().item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.equal(torch.get_rng_state(), state)

    class RaisedPrior(StandardNormal):
        def log_prob(self, z: Tensor) -> Tensor:
            return super().log_prob(z) + 1.0

    class RaisedPriorModel(LinearGaussian):
        @property
        def prior(self) -> StandardNormal:
            return RaisedPrior(3)

    raised = ImportanceWeightedNLL(num_samples=20, chunk_size=6)
    raised.update(model.x, model.posterior, RaisedPriorModel(**vars(model)),
                  torch.Generator().manual_seed(5))
    assert raised.compute().item() == pytest.approx(expected.item() - 1.0, rel=1e-5)


# --- active units and KL per dimension ---------------------------------------------------------


def test_active_units_count_the_dimensions_whose_mean_varies_above_the_threshold():
    metric = ActiveUnits(latent_dim=4)
    x = torch.randn(200, 1, generator=torch.Generator().manual_seed(0))
    # variances ≈ 1, 0.09 and 0.0025 (below 0.01), and a constant mean
    metric.update(torch.cat([x, 0.3 * x, 0.05 * x, torch.full_like(x, 2.0)], dim=1))
    assert metric.compute().item() == 2


def test_active_units_pool_the_variance_over_batches_not_average_per_batch_variances():
    metric = ActiveUnits(latent_dim=1)
    metric.update(torch.zeros(10, 1))  # each batch is constant ...
    metric.update(torch.ones(10, 1))  # ... but the data set's variance is 0.25
    assert metric.compute().item() == 1


def test_kl_per_dimension_averages_over_examples_and_sums_to_the_kl():
    posterior = DiagonalGaussian(torch.randn(12, 3), torch.randn(12, 3))
    metric = KLPerDimension(latent_dim=3)
    metric.update(posterior.kl_per_dim()[:5])
    metric.update(posterior.kl_per_dim()[5:])
    torch.testing.assert_close(metric.compute(), posterior.kl_per_dim().mean(0))
    assert metric.compute().sum().item() == pytest.approx(posterior.kl().mean().item(), rel=1e-5)


def test_kl_per_dimension_keeps_one_value_per_dimension_for_a_single_latent():
    """torchmetrics squeezes a one-element result to a 0-d tensor, which cannot be iterated
    over dimension by dimension; the metric keeps its documented shape (latent_dim,)."""
    metric = KLPerDimension(latent_dim=1)
    metric.update(torch.tensor([[1.0], [3.0]]))
    assert metric.compute().shape == (1,)
    assert metric.compute().tolist() == [2.0]


# --- wired into the VAE: Trainer.test ----------------------------------------------------------


@register_architecture("metrics-test-linear")
def build_linear(image_shape, latent_dim, out_channels, dead_dims=0, mean_scale=4.0):
    """Linear encoder and decoder. The posterior has unit variance and mean
    mean_scale·(i + 1)·x̄ in dimension i (x̄: the image's average pixel), except in the last
    ``dead_dims`` dimensions, whose mean is 0 whatever the image."""
    c, h, w = image_shape
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 2 * latent_dim))
    with torch.no_grad():
        scale = mean_scale * torch.arange(1, latent_dim + 1.0) / (c * h * w)
        scale[latent_dim - dead_dims:] = 0.0
        encoder[1].weight.zero_()
        encoder[1].weight[:latent_dim] = scale[:, None]
        encoder[1].bias.zero_()
    decoder = nn.Sequential(nn.Linear(latent_dim, out_channels * h * w),
                            nn.Unflatten(1, (out_channels, h, w)))
    return encoder, decoder


def linear_vae(**kwargs) -> VAE:
    torch.manual_seed(0)
    options = {"image_shape": (1, 4, 4), "latent_dim": 5, "arch": "metrics-test-linear",
               "arch_options": {"dead_dims": 2}, "iw_samples": 64, "iw_chunk_size": 24} | kwargs
    return VAE(**options)


def random_binary_images(n: int = 32) -> Tensor:
    return torch.randint(0, 2, (n, 1, 4, 4), generator=torch.Generator().manual_seed(0)).float()


def run_test(model: VAE, images: Tensor, **trainer_args) -> dict[str, float]:
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, accelerator="cpu", **trainer_args)
    (result,) = trainer.test(model, DataLoader(TensorDataset(images), batch_size=8),
                             verbose=False)
    return result


def test_trainer_test_reports_the_metrics_of_a_model_with_dead_dimensions():
    model, images = linear_vae(), random_binary_images()
    pl.seed_everything(0)
    result = run_test(model, images)
    assert result["test/active_units"] == 3  # 5 latent dimensions, 2 of them dead
    kl_dims = [result[f"test/kl_dim/{i}"] for i in range(5)]
    assert "test/kl_dim/5" not in result
    assert sum(kl_dims) == pytest.approx(result["test/kl"], rel=1e-5)
    with torch.no_grad():
        mse = (model.model.reconstruct(images) - images).pow(2).mean().item()
    assert result["test/mse"] == pytest.approx(mse, rel=1e-5)
    # −log p̂_64(x) is an upper bound on −log p(x) that lies below −ELBO (= test/loss at β = 1)
    assert 0 < result["test/nll_iw"] < result["test/loss"]


def test_trainer_test_reports_the_kl_of_a_single_latent_dimension():
    model = linear_vae(latent_dim=1, arch_options={"dead_dims": 0}, iw_samples=0)
    result = run_test(model, random_binary_images(16))
    assert result["test/kl_dim/0"] == pytest.approx(result["test/kl"], rel=1e-5)
    assert result["test/active_units"] == 1


def test_iw_samples_zero_turns_the_importance_weighted_bound_off():
    result = run_test(linear_vae(iw_samples=0), random_binary_images(16))
    assert "test/nll_iw" not in result
    assert result["test/active_units"] == 3


def test_validation_logs_active_units():
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu")
    loader = DataLoader(TensorDataset(random_binary_images()), batch_size=8)
    (result,) = trainer.validate(linear_vae(), loader, verbose=False)
    assert result["val/active_units"] == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"iw_samples": -1}, "iw_samples=-1: expected an integer >= 0"),
    ({"iw_chunk_size": 0}, "iw_chunk_size=0: expected an integer >= 1"),
])
def test_bad_iw_options_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        linear_vae(**kwargs)


@pytest.mark.slow
def test_two_process_ddp_reports_the_one_process_metrics():
    """The DistributedSampler deals even indices to rank 0 and odd ones to rank 1. Even images
    are blank and odd ones full, so each rank sees a constant posterior mean (per-rank variance
    0, pooled variance above 0.01 in the 2 live dimensions) and an NLL 32 nats away from the
    other rank's: only a correct cross-rank reduction gives the one-process values.

    Deterministic metrics must match to float precision. The noise of test/nll_iw depends on
    which process draws it, so it must match within Monte Carlo error: the decoder ignores z
    (weights 0, logits 2), so −log p(x) is 16·softplus(±2) exactly, and with posterior means
    of norm ≤ 0.7 the log-weights have standard deviation ≤ 0.7, giving k = 500 estimates
    within about 0.01 nats of it.
    """
    images = torch.zeros(32, 1, 4, 4)
    images[1::2] = 1.0
    model = linear_vae(latent_dim=3, arch_options={"dead_dims": 1, "mean_scale": 0.3},
                       iw_samples=500, iw_chunk_size=128)
    with torch.no_grad():
        model.model.decoder[0].weight.zero_()
        model.model.decoder[0].bias.fill_(2.0)
    exact_nll = 16 * (math.log1p(math.exp(2.0)) + math.log1p(math.exp(-2.0))) / 2  # mean of both
    pl.seed_everything(0)
    single = run_test(model, images)
    ddp = run_test(model, images, strategy="ddp_spawn", devices=2)
    assert single["test/active_units"] == ddp["test/active_units"] == 2
    for name in ["test/mse", "test/kl", *(f"test/kl_dim/{i}" for i in range(3))]:
        assert ddp[name] == pytest.approx(single[name], rel=1e-5), name
    assert single["test/nll_iw"] == pytest.approx(exact_nll, abs=0.05)
    assert ddp["test/nll_iw"] == pytest.approx(exact_nll, abs=0.05)
