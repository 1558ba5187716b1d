import re

import pytest
import torch

from lightning_vae.model.likelihoods import Bernoulli, GaussianHead, build_likelihood


def test_bernoulli_log_prob_equals_sum_of_pixel_log_probs():
    logits = torch.randn(2, 1, 3, 3)
    x = torch.bernoulli(torch.full((2, 1, 3, 3), 0.5))
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(-1)
    assert torch.allclose(Bernoulli(logits).log_prob(x), expected, atol=1e-5)


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_bernoulli_is_finite_for_saturated_logits_and_constant_images(value):
    logits = torch.tensor([[-1e4, 1e4]]).view(1, 1, 1, 2)
    x = torch.full_like(logits, value)
    assert torch.isfinite(Bernoulli(logits).log_prob(x)).all()


def test_learned_gaussian_sigma_is_bounded_below_and_trainable():
    head = GaussianHead(channels=3, sigma=0.1, learn_sigma=True, sigma_min=1e-3)
    assert torch.allclose(head.sigma, torch.full((1, 3, 1, 1), 0.1))
    with torch.no_grad():
        head.raw_sigma.fill_(-1e4)
    assert (head.sigma >= 1e-3).all()
    dist = head(torch.zeros(1, 3, 2, 2))
    assert torch.isfinite(dist.log_prob(torch.zeros(1, 3, 2, 2))).all()
    assert dict(head.named_parameters()).keys() == {"raw_sigma"}


def test_fixed_gaussian_sigma_is_not_a_parameter_and_mean_is_in_unit_range():
    head = GaussianHead(channels=1, sigma=0.5)
    assert list(head.parameters()) == []
    mean = head(torch.tensor([[[[-50.0, 50.0]]]])).mean
    assert mean.min() >= 0 and mean.max() <= 1


@pytest.mark.parametrize("options, message", [
    ({"sigma": "0.1"}, "sigma must be a number > sigma_min=0.001, got '0.1'"),
    ({"sigma": float("nan")}, "sigma must be a number > sigma_min=0.001, got nan"),
    ({"sigma": True}, "sigma must be a number > sigma_min=0.001, got True"),
    ({"sigma": 0.001}, "sigma must be a number > sigma_min=0.001, got 0.001"),
    ({"sigma_min": "0.001"}, "sigma_min must be a number >= 0 (the floor of a learned sigma), "
                             "got '0.001'"),
    ({"sigma_min": -0.1}, "sigma_min must be a number >= 0 (the floor of a learned sigma), "
                          "got -0.1"),
    ({"learn_sigma": "false"}, "learn_sigma must be true or false, got 'false'"),
    ({"learn_sigma": 1}, "learn_sigma must be true or false, got 1"),
])
def test_a_gaussian_option_of_the_wrong_type_or_range_is_refused_naming_it(options, message):
    with pytest.raises(ValueError, match=re.escape(f"gaussian likelihood_options {message}")):
        build_likelihood("gaussian", channels=1, **options)


def test_an_unknown_gaussian_option_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=re.escape(
            "bad likelihood_options {'sigmaa': 0.1} for the gaussian likelihood: ")
            + ".*'sigmaa'.*takes sigma, learn_sigma and sigma_min"):
        build_likelihood("gaussian", channels=1, sigmaa=0.1)


def test_unknown_likelihood_names_the_choices():
    with pytest.raises(ValueError, match="bernoulli"):
        build_likelihood("poisson", channels=1)


def test_a_learned_sigma_may_have_no_floor_as_earlier_versions_allowed():
    head = build_likelihood("gaussian", channels=1, sigma=0.05, sigma_min=0, learn_sigma=True)
    assert torch.allclose(head.sigma, torch.full_like(head.sigma, 0.05))
