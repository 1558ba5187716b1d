"""The MLP architecture: the plain layers 0.1.0 models were saved with, the gated layers and the
bounded log-variance of the VampPrior paper, and why the VampPrior recipe needs them."""

import pytest
import torch

from lightning_vae import VAEModel
from lightning_vae.data.idx import read_idx
from lightning_vae.model.nets.mlp import BoundLogVariance, GatedLinear, build_mlp


def test_the_plain_mlp_keeps_the_parameter_names_of_0_1_0_models():
    encoder, decoder = build_mlp((1, 4, 4), 2, 1, hidden_dims=[8, 6], activation="tanh")
    assert list(encoder.state_dict()) == [
        "1.0.weight", "1.0.bias", "1.2.weight", "1.2.bias", "1.4.weight", "1.4.bias"]
    assert next(iter(decoder.state_dict())) == "0.0.weight"


def test_a_gated_layer_is_its_value_times_the_sigmoid_of_its_gate():
    torch.manual_seed(0)
    layer = GatedLinear(5, 3, "tanh")
    x = torch.randn(4, 5)
    expected = torch.tanh(layer.value(x)) * torch.sigmoid(layer.gate(x))
    torch.testing.assert_close(layer(x), expected)


def test_the_gated_mlp_gates_every_hidden_layer_and_keeps_the_output_layers_plain():
    torch.manual_seed(0)
    encoder, decoder = build_mlp((1, 4, 4), 3, 2, hidden_dims=[8, 6], activation="identity",
                                 gated=True)
    gated = [m for m in encoder.modules() if isinstance(m, GatedLinear)]
    assert [m.value.out_features for m in gated] == [8, 6]
    assert isinstance(encoder[1][-1], torch.nn.Linear) and encoder[1][-1].out_features == 6
    assert encoder(torch.rand(5, 1, 4, 4)).shape == (5, 6)
    assert decoder(torch.randn(5, 3)).shape == (5, 2, 4, 4)


def test_the_log_variance_is_bounded_and_the_mean_left_alone():
    params = torch.tensor([[100.0, -100.0, 50.0, -50.0]])
    bounded = BoundLogVariance(-6, 2)(params)
    torch.testing.assert_close(bounded, torch.tensor([[100.0, -100.0, 2.0, -6.0]]))
    encoder, _ = build_mlp((1, 4, 4), 2, 1, hidden_dims=[8], logvar_bounds=[-6, 2])
    with torch.no_grad():
        encoder[1][-1].bias.fill_(1e3)
    out = encoder(torch.rand(3, 1, 4, 4))
    assert torch.all(out[:, 2:] == 2.0) and torch.all(out[:, :2] > 2.0)


@pytest.mark.parametrize("options, message", [
    ({"logvar_bounds": [2, -6]}, "'logvar_bounds' must be two numbers"),
    ({"logvar_bounds": [-6]}, "'logvar_bounds' must be two numbers"),
    ({"logvar_bounds": "[-6, 2]"}, "'logvar_bounds' must be two numbers"),
    ({"gated": "yes"}, "'gated' must be true or false"),
    ({"activation": "sigmoidish"}, "unknown activation 'sigmoidish'"),
])
def test_bad_options_are_refused_naming_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        VAEModel(arch="mlp", image_shape=(1, 4, 4), latent_dim=2,
                 arch_options={"hidden_dims": [8], **options})


def test_a_gated_model_saves_and_loads(tmp_path):
    torch.manual_seed(0)
    model = VAEModel(arch="mlp", image_shape=(1, 4, 4), latent_dim=2,
                     arch_options={"hidden_dims": [8], "activation": "identity", "gated": True,
                                   "logvar_bounds": [-6, 2]})
    model.save_pretrained(tmp_path)
    loaded = VAEModel.from_pretrained(tmp_path)
    x = torch.rand(3, 1, 4, 4)
    torch.testing.assert_close(loaded.posterior(x).logvar, model.posterior(x).logvar)


def train_with_vamp_prior(images: torch.Tensor, arch_options: dict, steps: int) -> float:
    """Train an MLP VAE with a VampPrior on ``images`` at β = 1 from the first step (no warm-up)
    and return its mean KL on held-out images afterwards."""
    torch.manual_seed(0)
    model = VAEModel(arch="mlp", image_shape=(1, 28, 28), latent_dim=40,
                     arch_options={"hidden_dims": [300, 300], **arch_options},
                     prior={"name": "vamp", "components": 50, "init_mean": 0.05,
                            "init_std": 0.01})
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    generator = torch.Generator().manual_seed(0)
    train, held_out = images[:-500], images[-500:]
    for _ in range(steps):
        x = torch.bernoulli(train[torch.randint(len(train), (100,), generator=generator)],
                            generator=generator)
        terms = model.elbo(x, generator)
        optimizer.zero_grad()
        (terms["recon"] + terms["kl"]).mean().backward()
        optimizer.step()
    with torch.no_grad():
        x = torch.bernoulli(held_out, generator=torch.Generator().manual_seed(1))
        return model.elbo(x, torch.Generator().manual_seed(2))["kl"].mean().item()


@pytest.mark.slow
def test_with_a_vamp_prior_a_tanh_mlp_collapses_and_the_gated_one_does_not(shared_mnist_dir):
    """The regression behind recipes/iwae_mnist_mlp_vamp.yaml. With a VampPrior the tanh MLP's
    posterior collapses to the prior within ~100 steps (KL 0); the paper's gated layers keep
    information in the latents (measured: KL −0.001 against 2.05 nats after 300 steps)."""
    images = torch.from_numpy(
        read_idx(shared_mnist_dir / "train-images-idx3-ubyte.gz")[:3000]).float().div(255)
    images = images.unsqueeze(1)
    kl_tanh = train_with_vamp_prior(images, {"activation": "tanh"}, steps=200)
    kl_gated = train_with_vamp_prior(
        images, {"activation": "identity", "gated": True, "logvar_bounds": [-6, 2]}, steps=200)
    assert abs(kl_tanh) < 0.1, kl_tanh
    assert kl_gated > 1.0, kl_gated
