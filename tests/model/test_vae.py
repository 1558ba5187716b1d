"""VAEModel: the VAE as an nn.Module whose config is its architecture, and whose random draws
come from the generator it is given."""

import torch

from lightning_vae import VAEModel

ARCHITECTURE = ("arch", "image_shape", "latent_dim", "arch_options", "likelihood",
                "likelihood_options", "prior", "preprocessing")


def small_model(**kwargs) -> VAEModel:
    torch.manual_seed(0)
    options = {"arch": "mlp", "image_shape": (1, 6, 6), "latent_dim": 3,
               "arch_options": {"hidden_dims": [16]}} | kwargs
    return VAEModel(**options)


def binary_images(n: int = 5) -> torch.Tensor:
    return torch.randint(0, 2, (n, 1, 6, 6), generator=torch.Generator().manual_seed(0)).float()


def test_the_config_holds_exactly_the_eight_architecture_arguments_as_json_values():
    model = small_model(likelihood="gaussian", likelihood_options={"sigma": 0.2},
                        preprocessing={"binarize": "static"})
    assert model.config == {
        "arch": "mlp", "image_shape": [1, 6, 6], "latent_dim": 3,
        "arch_options": {"hidden_dims": [16]}, "likelihood": "gaussian",
        "likelihood_options": {"sigma": 0.2}, "prior": "standard_normal",
        "preprocessing": {"binarize": "static"},
    }
    assert tuple(VAEModel.argument_names()) == ARCHITECTURE


def test_the_default_config_names_every_architecture_argument():
    assert tuple(VAEModel().config) == ARCHITECTURE


def test_elbo_draws_from_the_generator_given_and_leaves_the_global_one_alone():
    model, x = small_model(), binary_images()
    state = torch.get_rng_state()
    with torch.no_grad():
        first = model.elbo(x, torch.Generator().manual_seed(3))
        second = model.elbo(x, torch.Generator().manual_seed(3))
        other = model.elbo(x, torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), state)
    assert first.keys() == {"recon", "kl", "elbo"}
    for term in first:
        assert first[term].shape == (5,)
        assert torch.equal(first[term], second[term]), term
    assert not torch.equal(first["recon"], other["recon"])  # the draw is the generator's
    torch.testing.assert_close(first["elbo"], -(first["recon"] + first["kl"]))


def test_elbo_terms_are_the_likelihood_and_the_prior_kl_of_the_pass_they_return():
    model, x = small_model(), binary_images()
    with torch.no_grad():
        out, terms = model.elbo_terms(x, torch.Generator().manual_seed(3))
        assert torch.equal(out.z, out.posterior.sample(generator=torch.Generator().manual_seed(3)))
        torch.testing.assert_close(terms["recon"], -model.likelihood(out.z).log_prob(x))
    torch.testing.assert_close(terms["kl"], out.posterior.kl())


def test_sample_draws_from_the_generator_given_and_leaves_the_global_one_alone():
    model = small_model()
    state = torch.get_rng_state()
    first = model.sample(4, generator=torch.Generator().manual_seed(1))
    second = model.sample(4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    assert first.shape == (4, 1, 6, 6)
    assert torch.equal(first, second)
    assert first.min() >= 0 and first.max() <= 1
