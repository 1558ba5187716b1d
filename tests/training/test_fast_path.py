"""The speed path of training (lightning_vae.training.fast_path and the module's switches):
channels_last, torch.compile, bf16 autocast and the options as configuration; none of them may
change the ELBO a run reaches."""

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset
from training_models import CUDA, RECIPE_CONV, small_conv, tiny_bars

from lightning_vae import VAE
from lightning_vae.cli import run_lightning
from lightning_vae.data import MNISTDataModule
from lightning_vae.training.fast_path import COMPILE_MODES

ROOT = Path(__file__).resolve().parents[2]


def fit_tiny_and_validate(steps: int = 60, precision: str = "32-true", **options
                          ) -> tuple[VAE, float]:
    """Train an MLP VAE on the bars and return it with its validation ELBO (nats)."""
    pl.seed_everything(0)
    model = VAE(image_shape=(1, 8, 8), latent_dim=4, arch="mlp",
                arch_options={"hidden_dims": [32]}, iw_samples=0, **options)
    data = TensorDataset(tiny_bars())
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", precision=precision, limit_val_batches=0)
    trainer.fit(model, DataLoader(data, batch_size=16, shuffle=True))
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, accelerator="cpu")
    (result,) = trainer.validate(model, DataLoader(data, batch_size=64), verbose=False)
    return model, result["val/elbo"]


# --- channels_last -----------------------------------------------------------------------


def test_channels_last_lays_out_conv_weights_and_the_decoder_output_that_way():
    model = small_conv(channels_last=True)
    conv_weights = [p for p in model.parameters() if p.ndim == 4]
    assert len(conv_weights) == 4
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)
    logits = model.model.decoder(torch.randn(3, 4))
    assert logits.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_gives_the_same_elbo_terms_from_the_same_weights():
    plain, fast = small_conv(), small_conv(channels_last=True)
    fast.load_state_dict(plain.state_dict())
    x = (torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    expected = plain.model.elbo(x, torch.Generator().manual_seed(1))
    for name, value in fast.model.elbo(x, torch.Generator().manual_seed(1)).items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-4)


def test_a_channels_last_model_saves_and_loads_like_any_other(tmp_path):
    """channels_last is a training switch: the saved model is the architecture and weights
    only, and the switch is passed again to fine-tune with it."""
    model = small_conv(channels_last=True)
    model.save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert "channels_last" not in config
    loaded = VAE.from_pretrained(tmp_path / "model", channels_last=True)
    assert loaded.hparams.channels_last is True
    assert loaded.model.decoder[-1].weight.is_contiguous(memory_format=torch.channels_last)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0)


# --- the options as configuration --------------------------------------------------------


def test_speed_options_are_json_hyperparameters_that_rebuild_the_model():
    model = small_conv(fused_optimizer=False, channels_last=True, compile_mode="reduce-overhead")
    config = json.loads(json.dumps(dict(model.hparams)))
    assert {k: config[k] for k in ("fused_optimizer", "channels_last", "compile_mode")} == {
        "fused_optimizer": False, "channels_last": True, "compile_mode": "reduce-overhead"}
    rebuilt = VAE(**config)
    assert json.loads(json.dumps(dict(rebuilt.hparams))) == config
    assert rebuilt.model.decoder[-1].weight.is_contiguous(memory_format=torch.channels_last)


def test_the_defaults_are_fused_adam_contiguous_weights_and_no_compilation():
    hparams = VAE().hparams
    assert (hparams.fused_optimizer, hparams.channels_last, hparams.compile_mode) == (
        True, False, None)


def test_an_unknown_compile_mode_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"compile_mode='fast'.*reduce-overhead"):
        small_conv(compile_mode="fast")
    assert "max-autotune" in COMPILE_MODES


def test_the_gpu_fragment_adds_bf16_a_graphed_training_pass_and_static_shapes(tiny_mnist_dir):
    fragment = ROOT / "recipes" / "trainer" / "gpu_fast.yaml"
    assert yaml.safe_load(fragment.read_text())["trainer"]["precision"] == "bf16-mixed"
    cli = run_lightning([
        "--config", str(ROOT / "recipes" / "mnist_vae.yaml"), "--config", str(fragment),
        "--trainer.accelerator=cpu", "--trainer.precision=32-true",  # no GPU needed to parse
        f"--data.init_args.data_dir={tiny_mnist_dir}", "--data.init_args.download=false",
    ], run=False)
    assert cli.datamodule.drop_last is True
    hparams = cli.model.hparams
    assert (hparams.cuda_graph, hparams.compile_mode, hparams.channels_last) == (True, None, True)


# --- the same ELBO, fast or not ----------------------------------------------------------


@pytest.fixture
def one_thread():
    """Run on one torch thread: two threads on two cores that other processes share stall
    each other (see docs/results.md), one does not."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fit_mnist_and_validate(data_dir: Path, root: Path, accelerator: str, batch_size: int,
                           training: dict, drop_last: bool = False, **options) -> float:
    """Validation ELBO (nats, 5 000 images) of the default recipe's model trained on real MNIST
    from seed 0 with device-resident batches; ``training`` holds the fit's Trainer arguments
    (its length, precision) and ``options`` the model's."""
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False,
             "accelerator": accelerator, "devices": 1, "default_root_dir": root}
    pl.seed_everything(0)
    data = MNISTDataModule(str(data_dir), batch_size=batch_size, download=False,
                           loader="device", drop_last=drop_last, eval_batch_size=1000)
    model = VAE(**RECIPE_CONV, iw_samples=0, **options)
    trainer = pl.Trainer(limit_val_batches=0, enable_checkpointing=False, **training, **quiet)
    trainer.fit(model, datamodule=data)
    (result,) = pl.Trainer(**quiet).validate(model, datamodule=data, verbose=False)
    return result["val/elbo"]


@pytest.mark.slow
def test_the_fast_and_the_plain_path_reach_the_same_validation_elbo_on_mnist(
        shared_mnist_dir, tmp_path, one_thread):
    """150 steps of the default recipe's model, same seed and data; the options change only
    rounding, which must not move the ELBO by more than noise."""
    def run(**options) -> float:
        return fit_mnist_and_validate(shared_mnist_dir, tmp_path, "cpu", batch_size=64,
                                      training={"max_steps": 150}, **options)

    plain = run(fused_optimizer=False, channels_last=False)
    fast = run(fused_optimizer=True, channels_last=True)
    assert plain < -100  # 150 steps: well short of convergence, so differences would show
    assert fast == pytest.approx(plain, abs=1.0)


@CUDA
@pytest.mark.slow
def test_the_gpu_fast_path_reaches_the_float32_eager_elbo_on_mnist(shared_mnist_dir, tmp_path):
    """The GPU fast paths (bf16 autocast, channels_last, static batches, and the training pass
    replayed as CUDA graphs by torch.compile or by ``cuda_graph``) against float32 eager: four
    epochs of the default recipe's model from the same seed, ε drawn as eager draws it.

    bf16 rounding soon sends the two runs down different paths, so they can differ as much as
    runs from different seeds. Those differ by up to 10 nats after one epoch (a plateau some runs
    leave later) and by up to 1.7 nats after four (float32, CPU, seeds 0-2: -103.8, -103.6,
    -105.4): hence four epochs and 2 nats."""
    def run(precision: str, **options) -> float:
        return fit_mnist_and_validate(shared_mnist_dir, tmp_path, "gpu", batch_size=128,
                                      drop_last=True,
                                      training={"max_epochs": 4, "precision": precision},
                                      **options)

    plain = run("32-true")
    with torch._inductor.config.patch(fallback_random=True):
        compiled = run("bf16-mixed", compile_mode="reduce-overhead", channels_last=True)
    graphed = run("bf16-mixed", cuda_graph=True, channels_last=True)
    assert -130 < plain < -95  # trained, and short of convergence where differences would shrink
    assert {"compiled": compiled, "graphed": graphed} == pytest.approx(
        {"compiled": plain, "graphed": plain}, abs=2.0)


@pytest.mark.slow
def test_a_compiled_training_pass_reaches_the_eager_elbo_and_keeps_the_weight_names():
    eager_model, eager = fit_tiny_and_validate()
    # Inductor draws ε with its own generator unless told to fall back to eager's.
    with torch._inductor.config.patch(fallback_random=True):
        compiled_model, compiled = fit_tiny_and_validate(compile_mode="default")
    assert compiled == pytest.approx(eager, abs=0.1)
    assert list(compiled_model.state_dict()) == list(eager_model.state_dict())


@pytest.mark.slow
def test_bf16_autocast_reaches_the_float32_elbo():
    _, full = fit_tiny_and_validate()
    _, bf16 = fit_tiny_and_validate(precision="bf16-mixed")
    assert bf16 == pytest.approx(full, abs=1.0)


def test_under_bf16_autocast_the_elbo_terms_are_summed_in_float32():
    model = small_conv()
    x = (torch.rand(4, 1, 16, 16) < 0.3).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = model.model.elbo(x)
    assert {name: value.dtype for name, value in terms.items()} == dict.fromkeys(
        ("recon", "kl", "elbo"), torch.float32)
