"""The hierarchical (ladder) VAE: built by VAEModel(arch="ladder"), per-layer KLs that sum to
the total, an importance-weighted bound over the whole hierarchy, saving and loading, and
training through the VAE module (tiny widths, 28×28 MNIST-shaped images)."""

import json
import math

import pytest
import pytorch_lightning as pl
import torch
from torch.distributions import Normal, kl_divergence
from torch.utils.data import DataLoader, TensorDataset

from lightning_vae import VAE, HierarchicalVAE, VAEModel, build_objective, from_pretrained
from lightning_vae.model.hierarchical import gaussian_kl_per_dim
from lightning_vae.model.posterior import DiagonalGaussian
from lightning_vae.objectives import importance_weighted_bound

TINY = {"width": 8, "layers": [1, 1], "latent_channels": 2, "blocks": 1, "hidden_dim": 16}
LATENT = 4


def tiny_ladder(**kwargs) -> VAEModel:
    torch.manual_seed(0)
    options = {"arch": "ladder", "image_shape": (1, 28, 28), "latent_dim": LATENT,
               "arch_options": TINY} | kwargs
    return VAEModel(**options)


def binary_images(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 2, (n, 1, 28, 28), generator=torch.Generator().manual_seed(seed)
                         ).float()


def bar_images(n: int = 32) -> torch.Tensor:
    """Binary 28×28 images of one horizontal bar (4 rows thick) each: learnable in few steps."""
    rows = torch.randint(0, 7, (n,), generator=torch.Generator().manual_seed(0)) * 4
    images = torch.zeros(n, 1, 28, 28)
    for i, row in enumerate(rows.tolist()):
        images[i, :, row:row + 4] = 1.0
    return images


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_vaemodel_builds_the_hierarchical_class_for_the_ladder_architecture():
    model = tiny_ladder()
    assert type(model) is HierarchicalVAE
    # one flat top layer, then 2 channels at 7×7 and at 14×14
    assert model.latent_sizes == [LATENT, 2 * 7 * 7, 2 * 14 * 14]
    assert type(VAEModel(arch="mlp", image_shape=(1, 4, 4), latent_dim=2)) is VAEModel
    assert VAEModel(arch="mlp", image_shape=(1, 4, 4), latent_dim=2).latent_sizes == [2]


def test_the_hierarchical_class_refuses_another_architecture_and_vice_versa():
    with pytest.raises(ValueError, match=r"HierarchicalVAE cannot build arch='conv'.*"
                                         r"construct VAEModel\(arch='conv'"):
        HierarchicalVAE(arch="conv")

    class OneLayer(VAEModel):
        pass

    with pytest.raises(ValueError, match="OneLayer cannot build arch='ladder', which "
                                         "HierarchicalVAE builds"):
        OneLayer(arch="ladder", arch_options=TINY)


@pytest.mark.parametrize("options, message", [
    ({"layers": []}, "'layers' must be a non-empty list of ints >= 0"),
    ({"layers": [1, 1, 1]}, "needs height and width divisible by 8"),
    ({"blocks": -1}, "'blocks' must be an int >= 0"),
    ({"width": 0}, "'width' must be an int >= 1"),
])
def test_bad_ladder_options_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        tiny_ladder(arch_options=TINY | options)


def test_the_methods_of_vaemodel_give_images_and_top_layer_posteriors():
    model, x = tiny_ladder(), binary_images()
    assert model.encode(x).mean.shape == (6, LATENT)
    z = torch.randn(5, LATENT, generator=gen(0))
    for images in (model.decode(z), model.sample(5, generator=gen(1)),
                   model.reconstruct(x[:5])):
        assert images.shape == (5, 1, 28, 28)
        assert images.min() >= 0 and images.max() <= 1
    assert torch.equal(model.sample(3, generator=gen(2)), model.sample(3, generator=gen(2)))
    assert not torch.equal(model.sample(3, generator=gen(2)), model.sample(3, generator=gen(3)))
    # reconstruct is deterministic: posterior means at every layer
    assert torch.equal(model.reconstruct(x), model.reconstruct(x))


def test_the_per_layer_kls_sum_to_the_total_kl_of_the_elbo():
    model, x = tiny_ladder(), binary_images()
    with torch.no_grad():
        out, terms = model.elbo_terms(x, gen(0))
    assert set(terms) == {"recon", "kl", "elbo", "kl/0", "kl/1", "kl/2"}
    for term in terms.values():
        assert term.shape == (6,)
    torch.testing.assert_close(terms["kl/0"] + terms["kl/1"] + terms["kl/2"], terms["kl"])
    torch.testing.assert_close(terms["elbo"], -(terms["recon"] + terms["kl"]))
    torch.testing.assert_close(terms["kl/0"], out.posterior.kl())  # the top prior is N(0, I)
    assert bool((terms["kl/1"] > 0).all()) and bool((terms["kl/2"] > 0).all())


def test_the_analytic_gaussian_kl_matches_torch_distributions():
    g = gen(0)
    q = DiagonalGaussian(torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g))
    p = DiagonalGaussian(torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g))
    expected = kl_divergence(Normal(q.mean, q.std), Normal(p.mean, p.std))
    torch.testing.assert_close(gaussian_kl_per_dim(q, p), expected)


def test_log_weights_draw_the_same_noise_whatever_the_chunking():
    model, x = tiny_ladder(), binary_images(3)
    with torch.no_grad():
        whole = model.log_weights(x, 5, gen(7))
        chunked_generator = gen(7)
        chunks = [model.log_weights(x, k, chunked_generator) for k in (2, 3)]
        bound = importance_weighted_bound(model, x, 5, None, gen(7))
        bound_in_chunks = importance_weighted_bound(model, x, 5, 2, gen(7))
    assert whole.shape == (5, 3)
    torch.testing.assert_close(torch.cat(chunks), whole)
    torch.testing.assert_close(bound_in_chunks, bound)


def test_one_importance_weight_has_the_elbo_as_expectation():
    model, x = tiny_ladder(), binary_images(4)
    draws = 200
    with torch.no_grad():
        log_weights = model.log_weights(x, draws, gen(0))  # (draws, B)
        elbos = model.elbo(x.repeat(draws, 1, 1, 1), gen(1))["elbo"].view(draws, 4)
    standard_error = (log_weights.std(0) + elbos.std(0)) / math.sqrt(draws)
    assert bool(((log_weights.mean(0) - elbos.mean(0)).abs() < 4 * standard_error).all())


def test_the_iw_bound_at_k_50_lies_above_the_elbo_and_equals_a_single_weight_at_k_1():
    model, x = tiny_ladder(), binary_images(4)
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x, gen(i))["elbo"] for i in range(50)]).mean()
        bound_50 = importance_weighted_bound(model, x, 50, 10, gen(0))
        bound_1 = importance_weighted_bound(model, x, 1, None, gen(3))
        weight = model.log_weights(x, 1, gen(3))[0]
    assert bound_50.mean() > elbo
    torch.testing.assert_close(bound_1, weight)


def test_stop_posterior_gradient_keeps_the_weights_and_changes_the_encoder_gradient():
    model, x = tiny_ladder(), binary_images(3)
    weight = model.encoder.head[-1].weight
    gradients, values = [], []
    for stop in (False, True):
        model.zero_grad()
        log_weights = model.log_weights(x, 2, gen(0), stop_posterior_gradient=stop)
        log_weights.sum().backward()
        values.append(log_weights.detach())
        gradients.append(weight.grad.clone())
    torch.testing.assert_close(values[0], values[1])
    assert not torch.allclose(gradients[0], gradients[1])
    assert gradients[1].abs().sum() > 0  # the draws still carry the reparameterised gradient


def test_the_iwae_objective_trains_on_the_bound_over_the_whole_hierarchy():
    model, x = tiny_ladder(), binary_images(3)
    iwae = build_objective(1.0, "constant", {"name": "iwae", "samples": 6})
    with torch.no_grad():
        terms = iwae.terms(model, x, gen(5))[1]
        bound = importance_weighted_bound(model, x, 6, 4, gen(5))
        log_weights = model.log_weights(x, 6, gen(5))
    torch.testing.assert_close(terms["bound"], bound)
    torch.testing.assert_close(terms["elbo"], log_weights.mean(0))
    torch.testing.assert_close(terms["elbo"], -(terms["recon"] + terms["kl"]))
    dreg = build_objective(1.0, "constant", {"name": "iwae", "samples": 6, "dreg": True})
    with pytest.raises(ValueError, match=r"dreg true covers models with one stochastic layer .*; "
                                          r"this one has 3: set dreg false"):
        dreg.terms(model, x, gen(5))


def test_the_gaussian_likelihood_gives_finite_terms_and_bound():
    model = tiny_ladder(likelihood="gaussian",
                        likelihood_options={"sigma": 0.2, "learn_sigma": True})
    x = torch.rand(3, 1, 28, 28, generator=gen(0))
    terms = model.elbo(x, gen(1))
    terms["elbo"].mean().neg().backward()
    assert model.likelihood_head.raw_sigma.grad is not None
    with torch.no_grad():
        bound = importance_weighted_bound(model, x, 8, 4, gen(2))
    assert bool(torch.isfinite(bound).all()) and bound.shape == (3,)


def test_save_and_load_round_trip_gives_the_same_model_and_outputs(tmp_path):
    model, x = tiny_ladder().eval(), binary_images(3)
    model.save_pretrained(tmp_path / "ladder")
    config = json.loads((tmp_path / "ladder" / "config.json").read_text())
    assert set(config) == {*VAEModel.argument_names(), "lightning_vae_version"}
    assert config["arch"] == "ladder" and config["arch_options"] == TINY
    loaded = from_pretrained(tmp_path / "ladder")
    assert type(loaded) is HierarchicalVAE
    with torch.no_grad():
        for name in ("recon", "kl", "elbo"):
            assert torch.equal(loaded.elbo(x, gen(0))[name], model.elbo(x, gen(0))[name])
        assert torch.equal(loaded.log_weights(x, 3, gen(1)), model.log_weights(x, 3, gen(1)))
    assert torch.equal(loaded.sample(2, gen(2)), model.sample(2, gen(2)))
    assert torch.equal(loaded.reconstruct(x), model.reconstruct(x))


def trainer(**options) -> pl.Trainer:
    return pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, accelerator="cpu", **options)


def ladder_module(**options) -> VAE:
    torch.manual_seed(0)
    return VAE(arch="ladder", image_shape=(1, 28, 28), latent_dim=LATENT, arch_options=TINY,
               lr=3e-3, **options)


def test_a_short_training_run_lowers_the_loss_and_logs_every_layer():
    pl.seed_everything(0)
    module, images = ladder_module(iw_samples=0), bar_images(32)
    loader = DataLoader(TensorDataset(images), batch_size=16)
    (before,) = trainer().validate(module, loader, verbose=False)
    trainer(max_steps=30, limit_val_batches=0).fit(module, loader)
    (after,) = trainer().validate(module, loader, verbose=False)
    assert after["val/loss"] < before["val/loss"] - 50
    kl_layers = sum(after[f"val/kl/{layer}"] for layer in range(3))
    assert kl_layers == pytest.approx(after["val/kl"], rel=1e-5)
    per_layer = [after[f"val/active_units/{layer}"] for layer in range(3)]
    assert sum(per_layer) == after["val/active_units"]
    assert "val/active_units/3" not in after


def test_the_test_step_reports_mse_iw_nll_and_the_top_layers_kl_per_dimension():
    pl.seed_everything(0)
    module, images = ladder_module(iw_samples=8, iw_chunk_size=4), bar_images(8)
    (result,) = trainer().test(module, DataLoader(TensorDataset(images), batch_size=4),
                               verbose=False)
    kl_dims = [result[f"test/kl_dim/{i}"] for i in range(LATENT)]
    assert f"test/kl_dim/{LATENT}" not in result
    assert sum(kl_dims) == pytest.approx(result["test/kl/0"], rel=1e-4)
    with torch.no_grad():
        mse = (module.model.reconstruct(images) - images).pow(2).mean().item()
    assert result["test/mse"] == pytest.approx(mse, rel=1e-5)
    assert 0 < result["test/nll_iw"] < result["test/loss"] + 50  # IW at k=8 near −ELBO or below
    assert {"test/kl/1", "test/kl/2", "test/active_units/2"} <= result.keys()


def test_a_channels_last_training_step_matches_the_default_layout():
    x = bar_images(8)
    losses = []
    for channels_last in (False, True):
        module = ladder_module(channels_last=channels_last)
        terms = module.objective.terms(module.model, x, gen(0))[1]
        loss = terms["elbo"].mean().neg()
        loss.backward()
        losses.append(loss.detach())
        assert all(p.grad is not None and bool(torch.isfinite(p.grad).all())
                   for p in module.parameters() if p.requires_grad)
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-4, atol=1e-3)
