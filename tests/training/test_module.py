"""The VAE LightningModule (lightning_vae.training.module): the model it holds, its objective,
logging and evaluation, its checks of every argument, what a model loaded only to sample from
leaves out, and the files 0.1.0 wrote."""

import csv
import functools
import inspect
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torchmetrics
from pytorch_lightning.loggers import CSVLogger
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightning_vae
from lightning_vae import VAE, VAEModel, available_architectures, register_architecture
from lightning_vae.objectives import base as objectives_base
from lightning_vae.training import module as training_module

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "v0_1_0"
CHECKPOINT_0_1_0 = FIXTURES / "mlp-tiny.ckpt"
"""A Lightning checkpoint written by 0.1.0 after 8 training steps (see its README.md)."""


def tiny_images(n: int = 64, shape=(1, 8, 8)) -> torch.Tensor:
    """Binary images of bars at random positions: structure a VAE can learn quickly."""
    generator = torch.Generator().manual_seed(0)
    images = torch.zeros(n, *shape)
    rows = torch.randint(0, shape[1], (n,), generator=generator)
    images[torch.arange(n), :, rows, :] = 1.0
    return images


def read_csv_metrics(logger: CSVLogger) -> list[dict[str, str]]:
    with open(f"{logger.log_dir}/metrics.csv") as f:
        return list(csv.DictReader(f))


def fit_tiny(tmp_path, steps: int, **model_args) -> tuple[VAE, list[dict[str, str]]]:
    pl.seed_everything(0)
    model = VAE(image_shape=(1, 8, 8), latent_dim=4, arch="mlp",
                arch_options={"hidden_dims": [32]}, **model_args)
    loader = DataLoader(TensorDataset(tiny_images()), batch_size=16, shuffle=True)
    logger = CSVLogger(tmp_path)
    trainer = pl.Trainer(max_steps=steps, logger=logger, log_every_n_steps=1,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, loader)
    return model, read_csv_metrics(logger)


def test_step_methods_keep_their_signatures_and_a_subclass_step_its_own(tmp_path):
    """Lightning reads a step method's signature at every batch (does it take batch_idx?): the
    stored ones are the methods' own, and an override without batch_idx is called without it."""
    assert inspect.getfullargspec(VAE.training_step).args == ["self", "batch", "batch_idx"]
    assert list(inspect.signature(VAE.test_step).parameters) == [
        "self", "batch", "batch_idx", "dataloader_idx"]

    class BatchOnly(VAE):
        steps = 0

        def training_step(self, batch):
            self.steps += 1
            return super().training_step(batch, self.steps - 1)

    model = BatchOnly(image_shape=(1, 8, 8), latent_dim=2, arch="mlp",
                      arch_options={"hidden_dims": [8]})
    trainer = pl.Trainer(max_steps=3, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", default_root_dir=tmp_path)
    trainer.fit(model, DataLoader(TensorDataset(tiny_images()), batch_size=16))
    assert model.steps == 3


@pytest.mark.parametrize("schedule", [
    {"name": "linear", "steps": 20},
    {"name": "cyclical", "cycle_steps": 16, "ratio": 0.5},
])
def test_every_elbo_term_is_logged_at_every_step_and_consistent(tmp_path, schedule):
    _, rows = fit_tiny(tmp_path, steps=50, beta=2.0, beta_schedule=schedule)
    train_rows = [r for r in rows if r.get("train/loss")]
    assert [int(r["step"]) for r in train_rows] == list(range(50))
    for row in train_rows:
        loss, recon, kl, elbo, beta = (float(row[f"train/{k}"])
                                       for k in ("loss", "recon", "kl", "elbo", "beta"))
        assert elbo == pytest.approx(-(recon + kl), rel=1e-5, abs=1e-4)
        assert loss == pytest.approx(recon + beta * kl, rel=1e-5, abs=1e-4)
        assert kl >= 0
    betas = [float(r["train/beta"]) for r in train_rows]
    assert betas[0] == 0.0 and max(betas) == 2.0


def test_capacity_objective_is_logged_with_its_target(tmp_path):
    _, rows = fit_tiny(tmp_path, steps=10, beta=5.0,
                       beta_schedule={"name": "capacity", "capacity_max": 10.0, "steps": 10})
    for row in (r for r in rows if r.get("train/loss")):
        recon, kl, beta, capacity = (float(row[f"train/{k}"])
                                     for k in ("recon", "kl", "beta", "capacity"))
        assert capacity == pytest.approx(int(row["step"]))  # 10 nats over 10 steps
        assert float(row["train/loss"]) == pytest.approx(recon + beta * abs(kl - capacity),
                                                         rel=1e-5, abs=1e-4)


def test_training_improves_the_elbo(tmp_path):
    _, rows = fit_tiny(tmp_path, steps=60)
    elbos = [float(r["train/elbo"]) for r in rows if r.get("train/elbo")]
    assert sum(elbos[-10:]) / 10 > sum(elbos[:10]) / 10 + 5


def test_validation_and_test_log_epoch_means_of_the_same_terms(tmp_path):
    model = VAE(image_shape=(1, 8, 8), latent_dim=4, arch="mlp", iw_samples=16)
    loader = DataLoader(TensorDataset(tiny_images(48)), batch_size=16)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, accelerator="cpu")
    (result,) = trainer.test(model, loader, verbose=False)
    assert {"test/loss", "test/recon", "test/kl", "test/elbo"} <= result.keys()
    assert result["test/elbo"] == pytest.approx(-(result["test/recon"] + result["test/kl"]),
                                                rel=1e-5)
    (result,) = trainer.validate(model, loader, verbose=False)
    assert {"val/loss", "val/recon", "val/kl", "val/elbo", "val/beta"} <= result.keys()


def test_a_nan_in_validation_makes_the_mean_nan_instead_of_being_dropped():
    """A model that diverges on some examples must not report a flattering ELBO."""
    images = tiny_images(32)
    images[5] = float("nan")
    model = VAE(image_shape=(1, 8, 8), latent_dim=4, arch="mlp", iw_samples=0)
    model.model.validate_inputs = False  # score the NaN batch as a diverged model would
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, accelerator="cpu")
    (result,) = trainer.validate(model, DataLoader(TensorDataset(images), batch_size=16),
                                 verbose=False)
    assert torch.isnan(torch.tensor(result["val/elbo"]))
    (result,) = trainer.validate(model, DataLoader(TensorDataset(images[16:]), batch_size=16),
                                 verbose=False)
    assert torch.isfinite(torch.tensor(result["val/elbo"]))


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("likelihood, options", [
    ("bernoulli", None), ("gaussian", {"sigma": 0.1, "learn_sigma": True})])
def test_sample_returns_images_of_the_shape_within_the_likelihood_range(arch, likelihood,
                                                                        options):
    model = VAE(arch=arch, image_shape=(3, 16, 16), latent_dim=6, likelihood=likelihood,
                likelihood_options=options)
    images = model.model.sample(5)
    assert images.shape == (5, 3, 16, 16)
    assert images.min() >= 0 and images.max() <= 1


def test_encode_decode_reconstruct_shapes():
    model = VAE(arch="conv", image_shape=(1, 28, 28), latent_dim=7).model
    x = torch.rand(4, 1, 28, 28)
    posterior = model.encode(x)
    assert posterior.mean.shape == posterior.logvar.shape == (4, 7)
    assert model.decode(posterior.sample()).shape == (4, 1, 28, 28)
    assert model.reconstruct(x).shape == (4, 1, 28, 28)
    out = model(x)
    assert out.z.shape == (4, 7)
    terms = model.elbo(x)
    assert {k: v.shape for k, v in terms.items()} == {k: (4,) for k in ("recon", "kl", "elbo")}


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("fill", [0.0, 1.0, 1e6, -1e6])
def test_no_nan_or_inf_on_constant_or_extreme_inputs(likelihood, fill):
    model = VAE(arch="mlp", image_shape=(1, 8, 8), latent_dim=3, likelihood=likelihood)
    model.model.validate_inputs = False  # numerical stability here, not the support check
    x = torch.full((2, 1, 8, 8), fill)
    terms = model.model.elbo(x)
    loss = terms["elbo"].mean()
    loss.backward()
    assert all(torch.isfinite(v).all() for v in terms.values())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_hyperparameters_are_json_serialisable_and_rebuild_the_model():
    import json

    model = VAE(arch="conv", image_shape=(1, 28, 28), latent_dim=5,
                arch_options={"channels": [8, 16], "hidden_dim": 32},
                beta_schedule={"name": "linear", "steps": 10})
    config = json.loads(json.dumps(dict(model.hparams)))
    rebuilt = VAE(**config)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in model.parameters()]


def test_users_can_register_their_own_architecture():
    @register_architecture("test-linear")
    def build(image_shape, latent_dim, out_channels):
        c, h, w = image_shape
        return (nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 2 * latent_dim)),
                nn.Sequential(nn.Linear(latent_dim, out_channels * h * w),
                              nn.Unflatten(1, (out_channels, h, w))))

    assert "test-linear" in available_architectures()
    model = VAE(arch="test-linear", image_shape=(1, 4, 4), latent_dim=2)
    assert model.model.sample(3).shape == (3, 1, 4, 4)


@pytest.mark.parametrize("kwargs, message", [
    ({"arch": "resnet9000"}, "unknown architecture 'resnet9000'"),
    ({"arch": "conv", "image_shape": (1, 30, 30)}, "divisible by 4"),
    ({"arch": "mlp", "arch_options": {"widths": [3]}}, "bad arch_options"),
    ({"likelihood": "poisson"}, "unknown likelihood"),
    ({"latent_dim": 0}, "latent_dim"),
    ({"image_shape": (28, 28)}, "image_shape"),
    ({"beta": None}, r"beta must be a number >= 0 .*got None"),
    ({"lr": 0}, "lr must be a number > 0, got 0"),
    ({"lr": "1e-3"}, "lr must be a number > 0, got '1e-3'"),
    ({"weight_decay": -0.1}, r"weight_decay must be a number >= 0, got -0.1"),
])
def test_bad_configuration_raises_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAE(**kwargs)


@pytest.mark.parametrize("arch, option, value", [
    ("conv", "channels", []),
    ("conv", "channels", [-4, 64]),
    ("conv", "channels", [0, 64]),
    ("conv", "channels", [32.0, 64]),
    ("conv", "channels", [True, 64]),
    ("conv", "channels", 64),
    ("conv", "channels", "64"),
    ("conv", "hidden_dim", -1),
    ("conv", "hidden_dim", 0),
    ("conv", "hidden_dim", 256.0),
    ("conv", "hidden_dim", True),
    ("conv", "hidden_dim", "256"),
    ("mlp", "hidden_dims", [0]),
    ("mlp", "hidden_dims", []),
    ("mlp", "hidden_dims", [512.0]),
    ("mlp", "hidden_dims", [False]),
    ("mlp", "hidden_dims", 512),
])
def test_a_layer_width_that_is_no_int_at_least_one_is_refused_naming_the_option(arch, option,
                                                                                 value):
    with pytest.raises(ValueError, match=re.escape(f"arch_options {option!r} must be") + ".*"
                       + re.escape(f"got {value!r}")):
        VAE(arch=arch, arch_options={option: value})


@pytest.mark.parametrize("arch", ["conv", "mlp"])
def test_an_activation_that_is_no_name_is_refused_naming_the_option(arch):
    with pytest.raises(ValueError, match=re.escape(
            "unknown activation ['relu'] (arch_options 'activation'); choose one of")):
        VAE(arch=arch, arch_options={"activation": ["relu"]})


@pytest.mark.parametrize("name, value, minimum", [
    ("latent_dim", 32.0, 1),
    ("latent_dim", "32", 1),
    ("latent_dim", True, 1),
    ("latent_dim", 0, 1),
    ("iw_samples", "5", 0),
    ("iw_samples", 5.0, 0),
    ("iw_samples", False, 0),
    ("iw_samples", -1, 0),
    ("iw_chunk_size", "100", 1),
    ("iw_chunk_size", True, 1),
    ("iw_chunk_size", 0, 1),
])
def test_an_integer_argument_that_is_no_int_in_range_is_refused_naming_it(name, value, minimum):
    wrong_type = not isinstance(value, int) or isinstance(value, bool)
    got = f", got a {type(value).__name__}" if wrong_type else ""
    with pytest.raises(TypeError if wrong_type else ValueError, match=re.escape(
            f"{name}={value!r}: expected an integer >= {minimum}{got}")):
        VAE(**{name: value})


@pytest.mark.parametrize("image_shape, message", [
    ((1, 28.0, 28), "image_shape height=28.0: expected an integer >= 1, got a float"),
    ((True, 28, 28), "image_shape channels=True: expected an integer >= 1, got a bool"),
    ([1, 28, "28"], "image_shape width='28': expected an integer >= 1, got a str"),
    ((1, 0, 28), "image_shape height=0: expected an integer >= 1"),
    (28, "image_shape must be (channels, height, width), got 28"),
])
def test_an_image_shape_that_is_no_three_ints_is_refused_naming_the_entry(image_shape, message):
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        VAE(image_shape=image_shape)


@pytest.mark.parametrize("arguments, error, message", [
    ({"likelihood_options": "x"}, TypeError, "likelihood_options='x': expected a dict of options"),
    ({"arch_options": ["channels"]}, TypeError, "arch_options=['channels']: expected a dict"),
    ({"preprocessing": 1}, TypeError, "preprocessing=1: expected a dict of options or null"),
    ({"optimizer": ["adam"]}, ValueError, "unknown optimizer ['adam']"),
    ({"compile_mode": ["default"]}, ValueError, "compile_mode=['default'] is not a torch.compile"),
    ({"arch": ["conv"]}, ValueError, "unknown architecture ['conv']"),
])
def test_an_argument_of_another_json_type_is_refused_naming_it(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        VAE(**arguments)


def test_a_large_gaussian_sigma_builds_its_head_exactly():
    """The inverse softplus that sets the head's raw value overflowed math.expm1 from ~710."""
    for sigma in (0.1, 1000.0):
        model = VAE(arch="mlp", image_shape=(1, 8, 8), likelihood="gaussian",
                    likelihood_options={"sigma": sigma, "learn_sigma": True},
                    arch_options={"hidden_dims": [8]}, iw_samples=0)
        learned = model.model.likelihood_head.sigma.detach()
        assert torch.allclose(learned, torch.full_like(learned, sigma), rtol=1e-5)


@pytest.mark.parametrize("name", ["fused_optimizer", "channels_last", "cuda_graph"])
@pytest.mark.parametrize("value", ["false", "no", 0, 1, None])
def test_a_switch_that_is_no_bool_is_refused_naming_it(name, value):
    """A string "false" from a hand-edited config.json is truthy: it would turn the switch on."""
    with pytest.raises(TypeError, match=re.escape(
            f"{name}={value!r}: expected true or false, got a {type(value).__name__}")):
        VAE(**{name: value})


@pytest.mark.parametrize("key, value, named", [
    ("latent_dim", 2.0, "latent_dim=2.0: expected an integer >= 1, got a float"),
    ("arch_options", {"channels": [0, 8], "hidden_dim": 8}, "arch_options 'channels'"),
    ("likelihood_options", {"sigma": "0.1"}, "likelihood_options sigma"),
])
def test_from_pretrained_of_a_config_json_with_a_bad_value_names_the_key(tmp_path, key, value,
                                                                         named):
    VAE(arch="conv", image_shape=(1, 8, 8), latent_dim=2, likelihood="gaussian",
        arch_options={"channels": [4, 8], "hidden_dim": 8}).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {key: value}))
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path}: config.json does not build a model: ") + ".*" + re.escape(named)):
        VAE.from_pretrained(tmp_path)


@pytest.mark.parametrize("key, value, default", [
    ("cuda_graph", "false", False),
    ("beta_schedule", {"name": "cyclical", "cycle_steps": 10, "cycles": 0}, "constant"),
])
def test_a_training_setting_in_a_0_1_config_json_is_not_read(tmp_path, key, value, default):
    """config.json holds the architecture only; training settings that a folder written before
    0.2.0 holds (0.1.0 wrote them) are dropped, even bad ones: the caller sets them."""
    VAE(arch="mlp", image_shape=(1, 8, 8), latent_dim=2,
        arch_options={"hidden_dims": [8]}).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert key not in config
    config |= {key: value, "lightning_vae_version": "0.1.0"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = VAE.from_pretrained(tmp_path)
    assert loaded.hparams[key] == default


def test_a_training_setting_in_a_0_2_config_json_is_an_unknown_option(tmp_path):
    VAE(arch="mlp", image_shape=(1, 8, 8), latent_dim=2,
        arch_options={"hidden_dims": [8]}).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"lr": 0.1}))
    with pytest.raises(ValueError, match=re.escape("does not know: ['lr']")):
        VAE.from_pretrained(tmp_path)


@pytest.mark.parametrize("key, value, error, named", [
    ("cuda_graph", "false", TypeError, "cuda_graph='false': expected true or false, got a str"),
    ("beta_schedule", {"name": "cyclical", "cycle_steps": 10, "cycles": 0}, ValueError,
     "got cycles=0"),
])
def test_from_pretrained_with_a_bad_training_setting_names_it(tmp_path, key, value, error,
                                                              named):
    VAE(arch="mlp", image_shape=(1, 8, 8), latent_dim=2,
        arch_options={"hidden_dims": [8]}).save_pretrained(tmp_path)
    with pytest.raises(error, match=re.escape(named)):
        VAE.from_pretrained(tmp_path, **{key: value})


def test_testing_a_checkpoint_weights_the_kl_with_the_beta_it_was_saved_at(tmp_path):
    model = VAE(image_shape=(1, 8, 8), latent_dim=4, arch="mlp", iw_samples=0,
                beta_schedule={"name": "linear", "steps": 100})
    loader = DataLoader(TensorDataset(tiny_images(32)), batch_size=16)
    trainer = pl.Trainer(max_steps=20, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu",
                         default_root_dir=tmp_path)
    trainer.fit(model, loader)
    checkpoint = tmp_path / "saved.ckpt"
    trainer.save_checkpoint(checkpoint)
    tester = pl.Trainer(logger=False, enable_progress_bar=False, accelerator="cpu")
    fresh = VAE(**model.hparams)
    (result,) = tester.test(fresh, loader, ckpt_path=checkpoint, verbose=False)
    assert result["test/beta"] == pytest.approx(0.2)  # step 20 of a 100-step warm-up


class RecordOrder(pl.Callback):
    """The example indices of every training batch, by epoch."""

    def __init__(self) -> None:
        self.orders: dict[int, list[int]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.orders.setdefault(trainer.current_epoch, []).extend(batch[1].tolist())


def test_validation_leaves_a_shuffled_training_loader_a_new_order_every_epoch():
    """Validation seeds its sampling noise from the batch position. Were that noise drawn from
    the CPU's default generator, which also shuffles DataLoaders, every epoch after the first
    would see the data in the same order; it comes from the module's own generator."""
    pl.seed_everything(0)
    images = tiny_images(64)
    train = DataLoader(TensorDataset(images, torch.arange(64)), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(images[:32]), batch_size=16)
    model = VAE(image_shape=(1, 8, 8), latent_dim=2, arch="mlp",
                arch_options={"hidden_dims": [8]}, iw_samples=0)
    record = RecordOrder()
    trainer = pl.Trainer(max_epochs=4, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", callbacks=[record])
    trainer.fit(model, train, val)
    orders = [tuple(record.orders[epoch]) for epoch in range(4)]
    assert all(sorted(order) == list(range(64)) for order in orders)
    assert len(set(orders)) == 4


def test_fitting_a_model_loaded_from_a_checkpoint_restarts_the_schedule_at_its_step_0(
        tmp_path):
    """A new fit's β follows its own trainer's global_step, not the step of the checkpoint the
    weights came from; evaluating afterwards weights the KL with the β the fit ended at."""
    model, _ = fit_tiny(tmp_path / "first", steps=40,
                        beta_schedule={"name": "linear", "steps": 100})
    checkpoint = tmp_path / "first.ckpt"
    model.trainer.save_checkpoint(checkpoint)
    tuned = VAE.load_from_checkpoint(checkpoint)
    logger = CSVLogger(tmp_path / "tuned")
    trainer = pl.Trainer(max_steps=3, logger=logger, log_every_n_steps=1,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    loader = DataLoader(TensorDataset(tiny_images()), batch_size=16)
    trainer.fit(tuned, loader)
    betas = [float(r["train/beta"]) for r in read_csv_metrics(logger) if r.get("train/beta")]
    assert betas == pytest.approx([0.0, 0.01, 0.02])
    tester = pl.Trainer(logger=False, enable_progress_bar=False, accelerator="cpu")
    (result,) = tester.validate(tuned, loader, verbose=False)
    assert result["val/beta"] == pytest.approx(0.03)  # the fit ended after step 3


def test_a_model_in_bfloat16_trains_validates_and_reconstructs():
    """With the weights themselves in bfloat16 (``--trainer.precision bf16-true``), the latents
    the float32 posterior draws are fed to the bfloat16 decoder in its dtype."""
    images = tiny_images(32)
    loader = DataLoader(TensorDataset(images), batch_size=16)
    model = VAE(image_shape=(1, 8, 8), latent_dim=2, arch="mlp",
                arch_options={"hidden_dims": [8]}, iw_samples=4)
    trainer = pl.Trainer(max_steps=2, precision="bf16-true", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, loader, loader)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    assert model.dtype == torch.bfloat16
    assert all(math.isfinite(value) for value in metrics.values())
    assert metrics["val/elbo"] == pytest.approx(-(metrics["val/recon"] + metrics["val/kl"]),
                                                rel=1e-2)
    (result,) = trainer.test(model, loader, verbose=False)
    assert 0 < result["test/nll_iw"] < -metrics["val/elbo"] + 5
    assert model.model.reconstruct(images[:3]).dtype == torch.bfloat16


def test_lightnings_hook_names_skip_nn_modules_attribute_checks(monkeypatch):
    """Lightning sets ``_current_fx_name`` around every hook call, about 24 times a step; on the
    VAE that is a plain attribute write. Every other attribute still goes through nn.Module, so
    parameters and submodules assigned later are registered as usual."""
    model = VAE(image_shape=(1, 8, 8), latent_dim=2, arch="mlp", iw_samples=0)
    checked = []
    module_setattr = torch.nn.Module.__setattr__

    def counting(self, name, value):
        checked.append(name)
        module_setattr(self, name, value)

    monkeypatch.setattr(torch.nn.Module, "__setattr__", counting)
    trainer = pl.Trainer(max_steps=4, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, DataLoader(TensorDataset(tiny_images(32)), batch_size=8))
    assert trainer.global_step == 4
    assert "_current_fx_name" not in checked and "_current_fx_name" in vars(model)
    model.scale = torch.nn.Parameter(torch.ones(1))
    model.head = torch.nn.Linear(1, 1)
    assert "scale" in model._parameters and "head" in model._modules
    assert {"scale", "head"} <= set(checked)


# --- a model to sample from builds nothing of training --------------------------------------


def counted_calls(calls: Counter, name: str, function: Callable) -> Callable:
    """``function`` itself, counting its calls in ``calls[name]``."""
    @functools.wraps(function)
    def counted(*args, **kwargs):
        calls[name] += 1
        return function(*args, **kwargs)

    return counted


def test_a_zoo_model_loaded_to_sample_from_builds_no_optimizer_objective_or_metric(
        monkeypatch, offline):
    """``lightning_vae.from_pretrained`` gives the model alone (from the copy of the zoo model
    installed with the package): no optimizer, objective or torchmetrics Metric is built on the
    way, nor held. The real constructors run, counted; building the training module afterwards
    shows that the counters count."""
    calls = Counter()
    monkeypatch.setattr(torch.optim.Optimizer, "__init__",
                        counted_calls(calls, "optimizer", torch.optim.Optimizer.__init__))
    monkeypatch.setattr(torchmetrics.Metric, "__init__",
                        counted_calls(calls, "metric", torchmetrics.Metric.__init__))
    build_objective = counted_calls(calls, "objective", objectives_base.build_objective)
    for namespace in (objectives_base, lightning_vae.objectives, lightning_vae, training_module):
        monkeypatch.setattr(namespace, "build_objective", build_objective)

    model = lightning_vae.from_pretrained("lightning-vae/mnist-vae")
    assert calls == Counter()
    assert type(model) is VAEModel and not model.training
    assert not any(isinstance(module, torchmetrics.Metric) for module in model.modules())
    assert not hasattr(model, "objective") and not hasattr(model, "optimizers")

    VAE(**model.config).configure_optimizers()
    assert calls["objective"] == 1 and calls["optimizer"] == 1 and calls["metric"] > 0


# --- the global random state ----------------------------------------------------------------


def test_validation_noise_leaves_the_global_cpu_generator_untouched():
    """The ε of validation comes from the module's own generator, so the CPU's default
    generator (which also shuffles DataLoaders and draws their worker seeds) is neither drawn
    from nor reseeded. The loader has its own generator too: a DataLoader without one draws a
    seed from the default generator each time it is iterated."""
    model = VAE(image_shape=(1, 8, 8), latent_dim=2, arch="mlp",
                arch_options={"hidden_dims": [8]}, iw_samples=0)
    loader = DataLoader(TensorDataset(tiny_images(32)), batch_size=16,
                        generator=torch.Generator().manual_seed(0))
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu")
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    (result,) = trainer.validate(model, loader, verbose=False)
    assert math.isfinite(result["val/elbo"])
    assert torch.equal(torch.get_rng_state(), before)


# --- files written by 0.1.0 -------------------------------------------------------------------


def test_a_0_1_0_checkpoint_loads_with_its_hyperparameters():
    """0.1.0 wrote flat hyper_parameters without ``prior`` and weights without the ``model.``
    prefix (tests/fixtures/v0_1_0/README.md)."""
    vae = VAE.load_from_checkpoint(CHECKPOINT_0_1_0)
    assert vae.hparams.beta == 2.0 and vae.hparams.lr == 0.003
    assert vae.hparams.beta_schedule == {"name": "linear", "steps": 10}
    assert (vae.hparams.arch, vae.hparams.latent_dim, vae.hparams.prior) == (
        "mlp", 4, "standard_normal")
    assert vae.model.config["arch_options"] == {"hidden_dims": [16]}


def test_a_0_1_0_checkpoint_reproduces_what_0_1_0_computed_with_it():
    outputs = load_file(FIXTURES / "mlp-tiny-outputs.safetensors")
    model = VAE.load_from_checkpoint(CHECKPOINT_0_1_0).model.eval()
    with torch.no_grad():
        assert torch.allclose(model.reconstruct(outputs["x"]), outputs["recon"])
        assert torch.allclose(model.encode(outputs["x"]).kl(), outputs["kl"])
        assert torch.allclose(model.sample(2, generator=torch.Generator().manual_seed(0)),
                              outputs["sample"])


class RecordBeta(pl.Callback):
    """The global step and logged β after each training step."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.betas: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.steps.append(trainer.global_step)
        self.betas.append(float(trainer.callback_metrics["train/beta"]))


def test_fitting_resumes_from_a_0_1_0_checkpoint(tmp_path):
    """Eight steps were saved: two more continue the step count, the β warm-up (2.0 over 10
    steps) and Adam's state."""
    images = (torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    loader = DataLoader(TensorDataset(images), batch_size=16)
    model = VAE.load_from_checkpoint(CHECKPOINT_0_1_0)
    saved = [p.detach().clone() for p in model.parameters()]
    record = RecordBeta()
    trainer = pl.Trainer(max_steps=10, logger=False, log_every_n_steps=1,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu",
                         default_root_dir=tmp_path, callbacks=[record])
    trainer.fit(model, loader, ckpt_path=CHECKPOINT_0_1_0)
    assert record.steps == [9, 10]
    assert record.betas == pytest.approx([1.6, 1.8])  # steps 8 and 9 of the warm-up
    (optimizer,) = trainer.optimizers
    assert {int(state["step"]) for state in optimizer.state.values()} == {10}
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(not torch.equal(p, before) for p, before in zip(model.parameters(), saved,
                                                               strict=True))


def test_a_fit_checks_its_first_training_batch_once_and_then_no_step_reads_the_device(
        monkeypatch, tmp_path):
    """The model's input check reads the batch's range back (a host synchronisation): a fit
    runs it on its first training batch only, and restores the model's switch afterwards."""
    from lightning_vae.model import vae as model_vae
    from lightning_vae.model import validation

    checked = []

    def counted(x, *args):
        checked.append(len(x))
        return validation.check_batch(x, *args)

    for where in (training_module, model_vae):  # the module's first-batch check, the model's
        monkeypatch.setattr(where, "check_batch", counted)
    module = VAE(arch="mlp", arch_options={"hidden_dims": [8]}, latent_dim=2, iw_samples=0)
    images = torch.rand(32, 1, 28, 28).round()
    trainer = pl.Trainer(max_steps=4, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         default_root_dir=tmp_path)
    trainer.fit(module, DataLoader(TensorDataset(images), batch_size=8))
    assert checked == [8]  # the first batch, not one a step
    assert module.model.validate_inputs

    bad = VAE(arch="mlp", arch_options={"hidden_dims": [8]}, latent_dim=2, iw_samples=0)
    with pytest.raises(ValueError, match=r"outside \[0, 1\], the support of the Bernoulli"):
        pl.Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, default_root_dir=tmp_path).fit(
            bad, DataLoader(TensorDataset(images * 255), batch_size=8))
    assert bad.model.validate_inputs
