"""Priors p(z): the standard normal's density and KL, and the registry that builds a prior
from the name in a model's config."""

import re

import pytest
import torch

from lightning_vae import DiagonalGaussian, StandardNormal, VAEModel, register_prior
from lightning_vae.model.priors import PRIORS, build_prior


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


@pytest.mark.parametrize("name", ["laplace", ["standard_normal"], {"name": "standard_normal"}])
def test_an_unknown_prior_is_refused_naming_the_choices(name):
    """A list or a dict (as a hand-edited config may give) is refused like an unknown name."""
    with pytest.raises(ValueError, match=re.escape(
            f"unknown prior {name!r}; choose one of {sorted(PRIORS)}")):
        build_prior(name, 4)
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
