"""Priors p(z): the standard normal's and the VampPrior's densities and KLs, and the registry
that builds a prior from the name (or name and options) in a model's config."""

import math
import re

import pytest
import torch

from lightning_vae import DiagonalGaussian, StandardNormal, VAEModel, register_prior
from lightning_vae.model.priors import PRIORS, VampPrior, build_prior
from lightning_vae.objectives import importance_weighted_bound


def test_standard_normal_log_prob_matches_torch_normal_summed_over_latents():
    z = torch.randn(7, 4, 3, generator=torch.Generator().manual_seed(0))  # samples × batch × D
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_prob = StandardNormal(3).log_prob(z)
    assert log_prob.shape == (7, 4)
    torch.testing.assert_close(log_prob, expected)


def test_the_kl_of_a_posterior_to_the_standard_normal_is_its_closed_form():
    posterior = DiagonalGaussian(torch.tensor([[0.5, -1.0], [0.0, 2.0]]),
                                 torch.tensor([[-1.0, 0.3], [0.0, -2.0]]))
    z = posterior.sample(generator=torch.Generator().manual_seed(0))
    kl = StandardNormal(2).kl(posterior, z)
    torch.testing.assert_close(kl, posterior.kl())
    mean, var = posterior.mean, posterior.logvar.exp()
    torch.testing.assert_close(kl, 0.5 * (mean.pow(2) + var - 1 - var.log()).sum(-1))
    torch.testing.assert_close(StandardNormal(2).kl(posterior), kl)


def test_standard_normal_samples_come_from_the_generator_given():
    prior = StandardNormal(3)
    state = torch.get_rng_state()
    z = prior.sample(5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(z, torch.randn(5, 3, generator=torch.Generator().manual_seed(2)))


def test_build_prior_gives_the_registered_prior_for_its_latent_size():
    prior = build_prior("standard_normal", 6)
    assert isinstance(prior, StandardNormal) and prior.latent_dim == 6


@pytest.mark.parametrize("spec, name", [("laplace", "laplace"),
                                        (["standard_normal"], ["standard_normal"]),
                                        ({"name": "laplace"}, "laplace"),
                                        ({"components": 3}, None)])
def test_an_unknown_prior_is_refused_naming_the_choices(spec, name):
    """A list (as a hand-edited config may give) is refused like an unknown name."""
    with pytest.raises(ValueError, match=re.escape(
            f"unknown prior {name!r}; choose one of {sorted(PRIORS)}")):
        build_prior(spec, 4)
    assert "standard_normal" in PRIORS


def test_a_model_builds_the_prior_its_config_names(monkeypatch):
    monkeypatch.setitem(PRIORS, "test-wide-normal", None)  # removed again after the test

    @register_prior("test-wide-normal")
    class WideNormal(StandardNormal):
        def log_prob(self, z):
            return torch.distributions.Normal(0.0, 2.0).log_prob(z).sum(-1)

    model = VAEModel(arch="mlp", image_shape=(1, 4, 4), latent_dim=2,
                     arch_options={"hidden_dims": [8]}, prior="test-wide-normal")
    assert type(model.prior) is WideNormal and model.config["prior"] == "test-wide-normal"


# --- the VampPrior ------------------------------------------------------------------------------


def vamp_model(components: int = 3, latent_dim: int = 2, **options: float) -> VAEModel:
    torch.manual_seed(0)
    return VAEModel(arch="mlp", image_shape=(1, 4, 4), latent_dim=latent_dim,
                    arch_options={"hidden_dims": [8]},
                    prior={"name": "vamp", "components": components, **options})


def test_a_prior_given_as_a_dict_is_built_with_its_options_and_saved_as_given():
    model = vamp_model(components=5)
    assert isinstance(model.prior, VampPrior)
    assert model.prior.pseudo_inputs.shape == (5, 1, 4, 4)
    assert model.prior.pseudo_inputs.min() >= 0 and model.prior.pseudo_inputs.max() <= 1
    assert model.config["prior"] == {"name": "vamp", "components": 5}
    assert isinstance(build_prior({"name": "standard_normal"}, 3), StandardNormal)


def test_pseudo_inputs_start_near_init_mean_with_init_std_when_given():
    pseudo_inputs = vamp_model(components=500, init_mean=0.05, init_std=0.01).prior.pseudo_inputs
    assert pseudo_inputs.mean().item() == pytest.approx(0.05, abs=1e-3)
    assert pseudo_inputs.std().item() == pytest.approx(0.01, rel=0.05)


def test_the_vamp_prior_reads_the_models_encoder_whose_weights_are_saved_once():
    keys = list(vamp_model().state_dict())
    assert [key for key in keys if key.startswith("prior.")] == ["prior.pseudo_inputs"]
    assert any(key.startswith("encoder.") for key in keys)


@pytest.mark.parametrize("spec, message", [
    ({"name": "vamp", "components": 0}, "prior 'vamp' needs components >= 1"),
    ({"name": "vamp", "components": 2.0}, "prior 'vamp' needs components >= 1"),
    ({"name": "vamp", "init_mean": 0.05, "init_std": 0}, "prior 'vamp' needs init_std > 0"),
    ({"name": "vamp", "component": 2}, "bad options .* for prior 'vamp'"),
    ({"name": "standard_normal", "scale": 2}, "bad options .* for prior 'standard_normal'")])
def test_bad_prior_options_are_refused_naming_them(spec, message):
    with pytest.raises(ValueError, match=message):
        VAEModel(arch="mlp", image_shape=(1, 4, 4), latent_dim=2,
                 arch_options={"hidden_dims": [8]}, prior=spec)


def test_the_vamp_density_integrates_to_one_over_a_two_dimensional_grid():
    prior = vamp_model(components=3, latent_dim=2).prior
    axis = torch.linspace(-10, 10, 801, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1)  # (801, 801, 2)
    with torch.no_grad():
        density = prior.log_prob(grid.float()).double().exp()
    step = (axis[1] - axis[0]).item()
    assert density.shape == (801, 801)
    assert density.sum().item() * step**2 == pytest.approx(1.0, abs=1e-3)


def test_the_vamp_density_is_the_mean_of_the_pseudo_input_posteriors():
    prior = vamp_model(components=4).prior
    z = torch.randn(5, 7, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        q = prior.mixture()
        expected = torch.stack([
            DiagonalGaussian(q.mean[k].expand(5, 7, 2), q.logvar[k].expand(5, 7, 2)).log_prob(z)
            for k in range(4)]).logsumexp(0) - math.log(4)
        torch.testing.assert_close(prior.log_prob(z), expected, rtol=1e-5, atol=1e-5)


def test_with_one_pseudo_input_the_monte_carlo_kl_matches_the_gaussian_closed_form():
    model = vamp_model(components=1)
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.encoder[1][0].weight.mul_(5)  # images apart give posteriors apart
        model.prior.pseudo_inputs.fill_(1.0)  # a component well apart from the posteriors
        posterior, component = model.posterior(x), model.prior.mixture()
        z = posterior.samples(20000, torch.Generator().manual_seed(2))  # (n, 3, 2)
        monte_carlo = model.prior.kl(posterior, z).mean(0)
        var_q, var_p = posterior.logvar.exp(), component.logvar.exp()
        closed_form = 0.5 * (component.logvar - posterior.logvar
                             + (var_q + (posterior.mean - component.mean).pow(2)) / var_p
                             - 1).sum(-1)
    torch.testing.assert_close(monte_carlo, closed_form, atol=0.03, rtol=0)
    assert (closed_form > 0.1).all()  # not trivially zero


def sharp_vamp_model(logvar: float) -> VAEModel:
    """A VampPrior model of 50 latents whose encoder gives every input the log-variance
    ``logvar``: components as sharp as a collapsing posterior's."""
    model = vamp_model(components=20, latent_dim=50)
    with torch.no_grad():
        last = model.encoder[-1][-1]  # the Linear giving mean and log-variance
        last.weight[50:].zero_()
        last.bias[50:].fill_(logvar)
    return model


def float64_vamp_log_prob(prior: VampPrior, z: torch.Tensor) -> torch.Tensor:
    """log p(z) from the float32 components, in float64 from the differences z − μₖ."""
    with torch.no_grad():
        q = prior.mixture()
    mean, logvar = q.mean.double(), q.logvar.double()
    squared = ((z.double()[..., None, :] - mean).pow(2) * torch.exp(-logvar)).sum(-1)
    log_q = -0.5 * (z.shape[-1] * math.log(2 * math.pi) + logvar.sum(-1) + squared)
    return log_q.logsumexp(-1) - math.log(len(mean))


@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("logvar", [-1.0, -20.0, -30.0])
def test_the_vamp_density_of_sharp_components_is_exact_in_float32_and_under_bf16_autocast(
        logvar, autocast):
    """Draws from sharp components (the GPU run's collapse) get their true density: a squared
    distance expanded into products cancelled to values off by thousands of nats, and bf16
    autocast rounded the components and those products (KL −8.7 million nats in training)."""
    prior = sharp_vamp_model(logvar).prior
    z = prior.sample(64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        log_p = prior.log_prob(z)
    assert log_p.dtype == torch.float32
    expected = float64_vamp_log_prob(prior, z)
    torch.testing.assert_close(log_p.double(), expected, rtol=1e-5, atol=1e-3)
    assert (expected > 0).all() if logvar < -10 else (expected < 0).all()  # spiky, or not


def test_the_vamp_density_in_chunks_is_the_density_at_once(monkeypatch):
    prior = vamp_model(components=6, latent_dim=3).prior
    z = torch.randn(11, 5, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        at_once = prior.log_prob(z)
        monkeypatch.setattr("lightning_vae.model.priors._CHUNK_VALUES", 2 * 6 * 3)  # 2 points
        torch.testing.assert_close(prior.log_prob(z), at_once, rtol=0, atol=1e-6)
    assert at_once.shape == (11, 5)


def test_pseudo_inputs_pushed_outside_the_data_range_are_seen_clamped_to_it():
    """The paper's hardtanh: the encoder only ever sees pseudo-inputs in [0, 1], and a pixel
    that left the range stops moving, so the prior stays the mixture of posteriors of images."""
    model = vamp_model(components=3)
    with torch.no_grad():
        model.prior.pseudo_inputs.mul_(6).sub_(3)  # in [−3, 3]
    inside = (model.prior.pseudo_inputs > 0) & (model.prior.pseudo_inputs < 1)
    assert inside.any() and not inside.all()
    q = model.prior.mixture()
    clamped = model.posterior(model.prior.pseudo_inputs.detach().clamp(0, 1))
    torch.testing.assert_close(q.mean, clamped.mean)
    torch.testing.assert_close(q.logvar, clamped.logvar)
    model.prior.log_prob(torch.randn(4, 2)).sum().backward()
    gradient = model.prior.pseudo_inputs.grad
    assert (gradient[~inside] == 0).all() and (gradient[inside] != 0).any()


def test_vamp_samples_come_from_the_pseudo_input_posteriors_and_the_generator_given():
    model = vamp_model(components=1)
    draws = model.prior.sample(4000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        component = model.prior.mixture()
    torch.testing.assert_close(draws.mean(0), component.mean[0], atol=0.1, rtol=0)
    torch.testing.assert_close(draws.std(0), component.std[0], atol=0.05, rtol=0.05)
    again = model.prior.sample(4000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


def test_a_vamp_model_saves_and_loads_with_identical_outputs(tmp_path):
    model = vamp_model(components=3)
    with torch.no_grad():
        model.prior.pseudo_inputs.add_(0.1)  # not the initial values
    model.save_pretrained(tmp_path / "vamp")
    loaded = VAEModel.from_pretrained(tmp_path / "vamp")
    assert isinstance(loaded.prior, VampPrior) and loaded.prior.posterior_of.__self__ is loaded
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for a, b in ((model.elbo(x, torch.Generator().manual_seed(0)),
                      loaded.elbo(x, torch.Generator().manual_seed(0))),):
            for name in a:
                assert torch.equal(a[name], b[name])
    assert torch.equal(model.sample(5, torch.Generator().manual_seed(3)),
                       loaded.sample(5, torch.Generator().manual_seed(3)))


def test_the_importance_weighted_bound_uses_the_vamp_density():
    model = vamp_model(components=3)
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(1)).round()
    with torch.no_grad():
        bound = importance_weighted_bound(model, x, 20, 7, torch.Generator().manual_seed(0))
        posterior = model.posterior(x)
        z = posterior.samples(20, torch.Generator().manual_seed(0))
        log_px_z = model.likelihood(z.flatten(0, 1)).log_prob(
            x.expand(20, *x.shape).flatten(0, 1)).view(20, 4)
        expected = (log_px_z + model.prior.log_prob(z) - posterior.log_prob(z)).logsumexp(0)
        torch.testing.assert_close(bound, expected - math.log(20))
        standard = (log_px_z + StandardNormal(2).log_prob(z)
                    - posterior.log_prob(z)).logsumexp(0) - math.log(20)
    assert not torch.allclose(bound, standard)
