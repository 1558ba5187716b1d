"""The IWAE objective (Burda et al. 2016) and its DReG gradient (Tucker et al. 2019): the ELBO at
k = 1, the bound from the model's log weights, the gradients, and training on a linear-Gaussian
model whose log p(x) is exact."""

import math

import pytest
import pytorch_lightning as pl
import torch
from linear_gaussian import TrainableLinearGaussian, linear_gaussian_data
from torch.utils.data import DataLoader, TensorDataset

from lightning_vae import VAE, VAEModel
from lightning_vae.objectives import build_objective, importance_weighted_bound


@pytest.fixture
def one_thread():
    """Tiny models train many times faster on one thread than on oversubscribed cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(prior="standard_normal") -> VAEModel:
    torch.manual_seed(0)
    return VAEModel("mlp", (1, 4, 4), 3, {"hidden_dims": [16]}, prior=prior)


def images() -> torch.Tensor:
    return torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1)).bernoulli(
        generator=torch.Generator().manual_seed(2))


def loss_and_grads(objective, model, x, seed=0):
    terms = objective.terms(model, x, torch.Generator().manual_seed(seed))[1]
    loss = objective.loss({name: term.mean() for name, term in terms.items()},
                          **objective.weights(0))
    model.zero_grad()
    loss.backward()
    return terms, loss, {name: p.grad.clone() for name, p in model.named_parameters()}


def test_with_one_sample_iwae_is_the_elbo_in_values_and_gradients():
    model, x = tiny_model(), images()
    elbo_terms, elbo_loss, elbo_grads = loss_and_grads(build_objective(1.0, "constant"), model, x)
    iwae = build_objective(1.0, "constant", {"name": "iwae", "samples": 1})
    terms, loss, grads = loss_and_grads(iwae, model, x)
    # −mean(elbo) and mean(recon) + mean(kl): the same sums, rounded in another order
    torch.testing.assert_close(loss, elbo_loss, rtol=1e-6, atol=0)
    for name in ("recon", "kl", "elbo"):
        assert torch.equal(terms[name], elbo_terms[name])
    assert torch.equal(terms["bound"], elbo_terms["elbo"])
    assert grads.keys() == elbo_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, elbo_grads[name], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("prior", ["standard_normal", {"name": "vamp", "components": 4}])
def test_the_bound_is_the_log_mean_exp_of_the_models_weights_and_elbo_their_mean(prior):
    model, x = tiny_model(prior), images()
    terms = build_objective(1.0, "constant", {"name": "iwae", "samples": 7}).terms(
        model, x, torch.Generator().manual_seed(3))[1]
    log_w = model.log_weights(x, 7, torch.Generator().manual_seed(3))
    torch.testing.assert_close(terms["bound"], log_w.logsumexp(0) - math.log(7))
    torch.testing.assert_close(terms["elbo"], log_w.mean(0))
    torch.testing.assert_close(terms["elbo"], -(terms["recon"] + terms["kl"]))
    assert (terms["bound"] >= terms["elbo"]).all()


def test_dreg_keeps_the_bound_and_the_decoders_iwae_gradient_and_weights_encoder_gradients_by_the_squared_weights():  # noqa: E501
    model, x, k = tiny_model(), images(), 5
    _, plain_loss, plain = loss_and_grads(
        build_objective(1.0, "constant", {"name": "iwae", "samples": k}), model, x)
    _, loss, dreg = loss_and_grads(
        build_objective(1.0, "constant", {"name": "iwae", "samples": k, "dreg": True}), model, x)
    assert loss.item() == pytest.approx(plain_loss.item(), abs=1e-5)
    for name in plain:
        if name.startswith("decoder."):
            torch.testing.assert_close(dreg[name], plain[name])
    # Σᵢ w̃ᵢ² ∂log wᵢ/∂zᵢ ∂zᵢ/∂φ with log q's parameters held, written out by hand.
    model.zero_grad()
    posterior = model.posterior(x)
    z = posterior.samples(k, torch.Generator().manual_seed(0))
    log_w = (model.likelihood(z.flatten(0, 1)).log_prob(x.expand(k, *x.shape).flatten(0, 1))
             .view(k, -1) + model.prior.log_prob(z) - posterior.detached().log_prob(z))
    squared = log_w.detach().softmax(0).pow(2)
    dz = torch.autograd.grad(log_w.sum(), z, retain_graph=True)[0]
    encoder = dict(model.encoder.named_parameters())
    by_hand = torch.autograd.grad(z, list(encoder.values()),
                                  grad_outputs=-squared.unsqueeze(-1) * dz / len(x))
    differs = False
    for (name, _), expected in zip(encoder.items(), by_hand, strict=True):
        torch.testing.assert_close(dreg[f"encoder.{name}"], expected)
        differs |= not torch.allclose(expected, plain[f"encoder.{name}"])
    assert differs


@pytest.mark.parametrize("beta, schedule", [(2.0, "constant"), (1.0, {"name": "linear",
                                                                       "steps": 10}),
                                            (1.0, {"name": "constant", "free_bits": 0.5})])
def test_iwae_refuses_a_kl_weight_or_schedule(beta, schedule):
    with pytest.raises(ValueError, match=r"objective 'iwae' optimises the importance-weighted "
                                         r"bound .* set beta 1 and beta_schedule constant"):
        build_objective(beta, schedule, {"name": "iwae", "samples": 5})


@pytest.mark.parametrize("options, message", [
    ({"samples": 0}, "needs samples >= 1"), ({"samples": 2.5}, "needs samples >= 1"),
    ({"dreg": "yes"}, "dreg='yes': expected true or false")])
def test_bad_iwae_options_are_refused_naming_them(options, message):
    with pytest.raises(ValueError, match=message):
        build_objective(1.0, "constant", {"name": "iwae", **options})


def train(spec, x, steps, k=8, seed=0) -> TrainableLinearGaussian:
    torch.manual_seed(seed)
    model = TrainableLinearGaussian()
    objective = build_objective(1.0, "constant", spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    for step in range(steps):
        terms = objective.terms(model, x, torch.Generator().manual_seed(step))[1]
        loss = objective.loss({name: term.mean() for name, term in terms.items()},
                              **objective.weights(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


@torch.no_grad()
def bounds(model, x, ks):
    return {k: importance_weighted_bound(model, x, k, generator=torch.Generator().manual_seed(9))
            .mean().item() for k in ks}


def test_the_iwae_trained_bound_approaches_the_exact_log_likelihood_and_beats_the_elbos(
        one_thread):
    """A diagonal q cannot match the linear model's correlated posterior: the ELBO-trained W
    pays for it in log p(x); the IWAE-trained one (k = 8) gets a higher log p(x), which its
    8-sample bound comes within 0.15 nats of, and the bound rises with k on it."""
    x = linear_gaussian_data(n=256)
    iwae = train({"name": "iwae", "samples": 8, "dreg": True}, x, steps=200)
    elbo = train("elbo", x, steps=200)
    exact = iwae.exact_log_px(x).mean().item()
    b = bounds(iwae, x, (1, 8, 64))
    assert b[1] < b[8] < b[64] < exact
    assert exact - b[8] < 0.15
    assert b[8] > bounds(elbo, x, (8,))[8] + 0.2
    assert exact > elbo.exact_log_px(x).mean().item() + 0.2


def test_a_module_trains_on_the_iwae_objective_and_logs_the_bound(one_thread):
    x = torch.rand(32, 1, 4, 4, generator=torch.Generator().manual_seed(0)).round()
    module = VAE(arch="mlp", image_shape=(1, 4, 4), latent_dim=2,
                 arch_options={"hidden_dims": [8]}, objective={"name": "iwae", "samples": 3},
                 iw_samples=0)
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         log_every_n_steps=1)
    trainer.fit(module, DataLoader(TensorDataset(x), batch_size=16))
    logged = trainer.callback_metrics
    assert {"train/bound", "train/elbo", "train/recon", "train/kl", "train/loss"} <= set(logged)
    assert logged["train/loss"].item() == pytest.approx(-logged["train/bound"].item())
    assert logged["train/bound"].item() >= logged["train/elbo"].item()
