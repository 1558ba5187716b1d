import math

import torch

from lightning_vae.model.posterior import DiagonalGaussian, standard_normal_log_prob


def test_closed_form_kl_matches_monte_carlo_within_one_percent():
    torch.manual_seed(0)
    posterior = DiagonalGaussian(torch.tensor([[0.5, -1.0, 2.0]]),
                                 torch.tensor([[-1.0, 0.3, -2.0]]))
    z = posterior.sample((200_000,))
    monte_carlo = (posterior.log_prob(z) - standard_normal_log_prob(z)).mean()
    closed_form = posterior.kl().squeeze()
    assert abs(monte_carlo - closed_form) / closed_form < 0.01


def test_kl_is_zero_for_the_prior_and_summed_over_dimensions():
    prior = DiagonalGaussian(torch.zeros(4, 8), torch.zeros(4, 8))
    assert torch.equal(prior.kl(), torch.zeros(4))
    shifted = DiagonalGaussian(torch.ones(2, 3), torch.zeros(2, 3))
    assert torch.allclose(shifted.kl(), torch.full((2,), 1.5))  # 3 dims × μ²/2


def test_gradients_reach_mean_and_log_variance_through_the_sample():
    mean = torch.zeros(5, 4, requires_grad=True)
    logvar = torch.zeros(5, 4, requires_grad=True)
    z = DiagonalGaussian(mean, logvar).sample()
    z.pow(2).sum().backward()
    assert mean.grad is not None and mean.grad.abs().sum() > 0
    assert logvar.grad is not None and logvar.grad.abs().sum() > 0


def test_log_prob_matches_torch_normal():
    mean, logvar = torch.randn(3, 6), torch.randn(3, 6)
    z = torch.randn(3, 6)
    expected = torch.distributions.Normal(mean, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    assert torch.allclose(DiagonalGaussian(mean, logvar).log_prob(z), expected, atol=1e-5)


def test_extreme_log_variance_stays_finite():
    posterior = DiagonalGaussian(torch.zeros(1, 2), torch.tensor([[-1e4, 1e4]]))
    assert torch.isfinite(posterior.kl()).all()
    assert torch.isfinite(posterior.sample()).all()
    assert math.isfinite(posterior.log_prob(torch.zeros(1, 2)).item())


def test_a_sample_comes_from_the_generator_given_and_leaves_the_global_one_alone():
    posterior = DiagonalGaussian(torch.tensor([[1.0, -2.0]]), torch.tensor([[0.0, 2.0]]))
    state = torch.get_rng_state()
    first = posterior.sample((3,), generator=torch.Generator().manual_seed(7))
    second = posterior.sample((3,), generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    assert first.shape == (3, 1, 2)
    assert torch.equal(first, second)
    eps = torch.randn((3, 1, 2), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(first, posterior.mean + posterior.std * eps)


def test_the_mode_is_the_mean():
    mean = torch.tensor([[0.5, -1.0]])
    assert torch.equal(DiagonalGaussian(mean, torch.tensor([[3.0, -3.0]])).mode(), mean)
