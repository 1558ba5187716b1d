import pytest
import torch

from lightning_vae.likelihoods import Bernoulli, GaussianHead, build_likelihood


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


def test_unknown_likelihood_names_the_choices():
    with pytest.raises(ValueError, match="bernoulli"):
        build_likelihood("poisson", channels=1)
