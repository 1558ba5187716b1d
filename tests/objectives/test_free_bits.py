"""Free bits (Kingma et al. 2016): the β schedules' ``free_bits`` floor on the batch-mean KL of
each latent dimension."""

import pytest
import torch

from lightning_vae import VAEModel
from lightning_vae.objectives import build_objective
from lightning_vae.objectives.beta import free_bits_kl


def test_the_free_bits_kl_has_the_floored_batch_mean_and_no_gradient_below_the_floor():
    kl_per_dim = torch.tensor([[0.1, 2.0, 0.6], [0.3, 1.0, 0.2]], requires_grad=True)
    kl = free_bits_kl(kl_per_dim, 0.5)
    assert kl.shape == (2,)
    # batch means 0.2, 1.5, 0.4: floored to 0.5, 1.5, 0.5
    assert kl.mean().item() == pytest.approx(2.5)
    kl.mean().backward()
    assert torch.equal(kl_per_dim.grad, torch.tensor([[0.0, 0.5, 0.0], [0.0, 0.5, 0.0]]))


def tiny(prior="standard_normal"):
    torch.manual_seed(0)
    return VAEModel("mlp", (1, 4, 4), 3, {"hidden_dims": [8]}, prior=prior)


@pytest.mark.parametrize("schedule", [
    {"name": "constant", "free_bits": 2.0},
    {"name": "linear", "steps": 10, "free_bits": 2.0},
    {"name": "cyclical", "cycle_steps": 10, "free_bits": 2.0}])
def test_with_free_bits_the_loss_takes_the_floored_kl_and_logs_the_true_one(schedule):
    model, objective = tiny(), build_objective(1.0, schedule)
    x = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(1)).round()
    out, terms = objective.terms(model, x, torch.Generator().manual_seed(0))
    expected = out.posterior.kl_per_dim().mean(0).clamp(min=2.0).sum()
    torch.testing.assert_close(terms["kl_free_bits"].mean(), expected)
    torch.testing.assert_close(terms["kl"], out.posterior.kl())
    means = {name: term.mean() for name, term in terms.items()}
    weights = objective.weights(20)
    loss = objective.loss(means, **weights)
    torch.testing.assert_close(loss, means["recon"] + weights["beta"] * expected)


def test_without_free_bits_the_terms_are_the_models_elbo_terms():
    model, objective = tiny(), build_objective(1.0, "constant")
    x = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(1)).round()
    terms = objective.terms(model, x, torch.Generator().manual_seed(0))[1]
    assert set(terms) == {"recon", "kl", "elbo"}
    expected = model.elbo(x, torch.Generator().manual_seed(0))
    for name in terms:
        assert torch.equal(terms[name], expected[name])


def test_free_bits_refuses_a_prior_without_a_closed_form_kl_per_dimension():
    objective = build_objective(1.0, {"name": "constant", "free_bits": 1.0})
    with pytest.raises(ValueError, match="free_bits needs the closed-form KL per latent "
                                         "dimension of the standard_normal prior"):
        objective.terms(tiny({"name": "vamp", "components": 2}), torch.rand(2, 1, 4, 4))


@pytest.mark.parametrize("schedule, value", [
    ({"name": "constant", "free_bits": -1.0}, -1.0), ({"name": "linear", "steps": 5,
                                                      "free_bits": "1"}, "1")])
def test_a_negative_or_non_numeric_free_bits_is_refused_naming_the_schedule(schedule, value):
    with pytest.raises(ValueError, match=f"beta_schedule '{schedule['name']}' needs free_bits "
                                         f">= 0 .*got free_bits={value!r}"):
        build_objective(1.0, schedule)
