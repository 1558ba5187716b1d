"""The training-speed options: fused Adam, channels_last, torch.compile, bf16 autocast, and
logging without host synchronisation; none of them may change the ELBO a run reaches."""

import csv
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, Timer, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from lightning_vae import VAE
from lightning_vae.cli import run_lightning
from lightning_vae.data import MNISTDataModule
from lightning_vae.data.device_loader import DeviceLoader
from lightning_vae.speed import (
    COMPILE_MODES,
    device_scalar,
    fused_supported,
    per_step_progress_bar,
    progress_bar_refreshes,
    seed_device_generator,
    step_values_read,
)

ROOT = Path(__file__).resolve().parents[1]
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
RECIPE_CONV = {"arch": "conv", "arch_options": {"channels": [32, 64], "hidden_dim": 256},
               "latent_dim": 32}


def small_conv(**options) -> VAE:
    return VAE(arch="conv", image_shape=(1, 16, 16), latent_dim=4,
               arch_options={"channels": [4, 8], "hidden_dim": 16}, **options)


def tiny_bars(n: int = 64) -> torch.Tensor:
    """Binary 8x8 images of one horizontal bar each: learnable in a few dozen steps."""
    rows = torch.randint(0, 8, (n,), generator=torch.Generator().manual_seed(0))
    images = torch.zeros(n, 1, 8, 8)
    images[torch.arange(n), :, rows, :] = 1.0
    return images


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


# --- fused optimizers --------------------------------------------------------------------


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_the_fused_optimizer_is_chosen_where_torch_has_a_kernel(name, cls):
    model = small_conv(optimizer=name)
    if not fused_supported(model.parameters()):
        pytest.skip(f"torch {torch.__version__} has no fused Adam for the CPU (2.4 and later do)")
    optimizer = model.configure_optimizers()
    assert type(optimizer) is cls
    assert optimizer.defaults["fused"] is True


def test_fused_optimizer_false_keeps_torchs_default_implementation():
    optimizer = small_conv(fused_optimizer=False).configure_optimizers()
    assert not optimizer.defaults["fused"]


def test_fused_kernels_are_not_claimed_for_devices_or_dtypes_without_one():
    assert not fused_supported([torch.zeros(2, device="meta")])
    assert not fused_supported([torch.zeros(2, dtype=torch.int64)])


# --- channels_last -----------------------------------------------------------------------


def test_channels_last_lays_out_conv_weights_and_the_decoder_output_that_way():
    model = small_conv(channels_last=True)
    conv_weights = [p for p in model.parameters() if p.ndim == 4]
    assert len(conv_weights) == 4
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)
    logits = model.decoder(torch.randn(3, 4))
    assert logits.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_gives_the_same_elbo_terms_from_the_same_weights():
    plain, fast = small_conv(), small_conv(channels_last=True)
    fast.load_state_dict(plain.state_dict())
    x = (torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    torch.manual_seed(1)
    expected = plain.elbo(x)
    torch.manual_seed(1)
    for name, value in fast.elbo(x).items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-4)


def test_a_channels_last_model_saves_and_loads_like_any_other(tmp_path):
    model = small_conv(channels_last=True)
    model.save_pretrained(tmp_path / "model")
    loaded = VAE.from_pretrained(tmp_path / "model")
    assert loaded.hparams.channels_last is True
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
    assert rebuilt.decoder[-1].weight.is_contiguous(memory_format=torch.channels_last)


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


# --- logging without host synchronisation -----------------------------------------------


def test_the_training_loss_is_in_the_progress_bar_only_where_reading_it_is_free():
    assert per_step_progress_bar(torch.device("cpu"))
    assert not per_step_progress_bar(torch.device("cuda", 0))
    assert not per_step_progress_bar(torch.device("mps"))


def test_python_numbers_are_logged_as_tensors_filled_on_the_device():
    value = device_scalar(0.25, torch.device("cpu"))
    assert value.shape == () and value.dtype == torch.float32 and value.item() == 0.25
    model = small_conv(beta_schedule={"name": "capacity", "capacity_max": 5.0, "steps": 10})
    means = model._objective(model.elbo(torch.rand(2, 1, 16, 16)))
    assert all(isinstance(v, torch.Tensor) for v in means.values())
    assert means["beta"].item() == 1.0 and means["capacity"].item() == 0.0


def test_on_the_cpu_the_progress_bar_shows_the_training_loss():
    model = VAE(image_shape=(1, 8, 8), latent_dim=2, arch="mlp", iw_samples=0)
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, DataLoader(TensorDataset(tiny_bars(32)), batch_size=16))
    assert set(trainer.progress_bar_metrics) == {"train/loss"}


def test_noise_seeding_seeds_the_generator_of_the_models_device():
    seed_device_generator(torch.device("cpu"), 1234)
    seeded = torch.randn(4)
    torch.manual_seed(1234)
    assert torch.equal(seeded, torch.randn(4))


def test_the_training_loss_is_logged_for_the_bar_only_when_it_redraws():
    logged = []

    class RecordsLogging(VAE):
        def log(self, name, value, *args, **kwargs):
            logged.append((self.trainer.global_step, name))
            super().log(name, value, *args, **kwargs)

    model = RecordsLogging(image_shape=(1, 8, 8), latent_dim=2, arch="mlp", iw_samples=0)
    trainer = pl.Trainer(max_steps=7, limit_train_batches=7, logger=False,
                         enable_checkpointing=False, enable_model_summary=False,
                         accelerator="cpu", callbacks=[TQDMProgressBar(refresh_rate=3)])
    trainer.fit(model, DataLoader(TensorDataset(tiny_bars(56)), batch_size=8))
    # batches 3 and 6 (refresh_rate) and 7 (the epoch's last), which is also read by loggers
    assert [step for step, name in logged if name == "train/loss"] == [2, 5, 6]
    assert set(trainer.progress_bar_metrics) == {"train/loss"}


def test_without_a_progress_bar_nothing_is_logged_for_it():
    model = VAE(image_shape=(1, 8, 8), latent_dim=2, arch="mlp", iw_samples=0)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, DataLoader(TensorDataset(tiny_bars(32)), batch_size=16))
    assert not any(progress_bar_refreshes(trainer, i) for i in range(3))


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
    trainer.fit(model, DataLoader(TensorDataset(tiny_bars(32)), batch_size=8))
    assert trainer.global_step == 4
    assert "_current_fx_name" not in checked and "_current_fx_name" in vars(model)
    model.scale = torch.nn.Parameter(torch.ones(1))
    model.head = torch.nn.Linear(1, 1)
    assert "scale" in model._parameters and "head" in model._modules
    assert {"scale", "head"} <= set(checked)


class LogsEveryStep(VAE):
    """The reference: every term through ``self.log`` at every training step."""

    def training_step(self, batch, batch_idx):
        means = self._objective(self.elbo(batch[0]))
        self.log_dict({f"train/{name}": value for name, value in means.items()})
        return means["loss"]


def logged_training_rows(model_class: type[VAE], root: Path, **trainer_options
                         ) -> tuple[list[dict], dict]:
    """CSV rows of the training terms and the final callback metrics of 2 epochs of 5 steps
    (unless ``trainer_options`` end the run sooner), written every 3 steps."""
    pl.seed_everything(0)
    model = model_class(image_shape=(1, 8, 8), latent_dim=2, arch="mlp", iw_samples=0)
    trainer = pl.Trainer(**{"max_epochs": 2, **trainer_options}, log_every_n_steps=3,
                         logger=CSVLogger(root), enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, DataLoader(TensorDataset(tiny_bars(40)), batch_size=8))
    rows = list(csv.DictReader((root / "lightning_logs/version_0/metrics.csv").open()))
    return rows, {k: v.item() for k, v in trainer.callback_metrics.items()}


def test_skipping_unread_step_values_leaves_the_logs_and_callback_metrics_unchanged(tmp_path):
    rows, final = logged_training_rows(VAE, tmp_path / "skips")
    reference_rows, reference_final = logged_training_rows(LogsEveryStep, tmp_path / "every")
    assert [row["step"] for row in rows] == ["2", "5", "8"]
    assert rows == reference_rows
    assert final == reference_final
    assert {"train/loss", "train/recon", "train/kl", "train/elbo", "train/beta"} <= final.keys()


class TimesOutAtStep(Timer):
    """``max_time`` as Lightning applies it (a ``Timer`` that sets ``trainer.should_stop`` after
    a training step), with the time running out at global step ``step``."""

    def __init__(self, step: int) -> None:
        super().__init__(duration={"hours": 1})
        self.step, self.steps_done = step, 0

    def on_train_batch_end(self, trainer, *args, **kwargs) -> None:
        self.steps_done = trainer.global_step
        super().on_train_batch_end(trainer, *args, **kwargs)

    def time_elapsed(self, stage: str = "train") -> float:
        return 3600.0 if self.steps_done >= self.step else 0.0


@pytest.mark.parametrize("ending", ["max_steps", "max_time"])
def test_a_run_ending_mid_epoch_logs_and_keeps_the_values_of_its_last_step(tmp_path, ending):
    """``max_steps`` 7 ends the run at the second step of the second epoch, ``max_time`` at
    step 4, which makes Lightning write the loggers then; neither is a step that
    ``log_every_n_steps`` writes, nor an epoch's last."""
    def end() -> dict:  # a fresh Timer for each run
        return {"max_steps": 7} if ending == "max_steps" else {"callbacks": [TimesOutAtStep(4)]}

    rows, final = logged_training_rows(VAE, tmp_path / "skips", **end())
    reference_rows, reference_final = logged_training_rows(LogsEveryStep, tmp_path / "every",
                                                           **end())
    assert rows == reference_rows
    assert final == reference_final


def test_step_values_are_read_at_logger_writes_and_at_the_end_of_each_epoch():
    seen = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen.append(step_values_read(trainer, batch_idx))

    model = VAE(image_shape=(1, 8, 8), latent_dim=2, arch="mlp", iw_samples=0)
    trainer = pl.Trainer(max_epochs=2, log_every_n_steps=4, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", callbacks=[Record()])
    trainer.fit(model, DataLoader(TensorDataset(tiny_bars(40)), batch_size=8))
    epoch_0 = [False, False, False, True, True]  # global step 3 (every 4th); last batch
    epoch_1 = [False, False, True, False, True]  # global step 7; last batch
    assert seen == [*epoch_0, *epoch_1]


class RecordLoss(pl.Callback):
    """The training loss each step returned, by global step."""

    def __init__(self) -> None:
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses[trainer.global_step] = outputs["loss"].item()


def test_a_checkpoint_monitoring_the_training_loss_every_n_steps_reads_that_steps_loss(
        tmp_path):
    """Logging only at the steps loggers write must not hand a step-wise ModelCheckpoint the
    value of an older step: the best checkpoint's score is the lowest loss of its steps."""
    record = RecordLoss()
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="train/loss", mode="min",
                                 every_n_train_steps=2, save_top_k=1)
    model = VAE(image_shape=(1, 8, 8), latent_dim=2, arch="mlp", iw_samples=0)
    trainer = pl.Trainer(max_steps=9, log_every_n_steps=50, logger=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", callbacks=[record, checkpoint])
    trainer.fit(model, DataLoader(TensorDataset(tiny_bars(160)), batch_size=16))
    scores = {step: loss for step, loss in record.losses.items() if step % 2 == 0}
    best_step = min(scores, key=scores.get)
    assert checkpoint.best_model_score.item() == pytest.approx(scores[best_step])
    assert checkpoint.best_model_path.endswith(f"step={best_step}.ckpt")


@pytest.mark.parametrize("monitor_class", [ModelCheckpoint, EarlyStopping])
def test_a_monitor_of_the_training_loss_at_validations_within_an_epoch_reads_that_steps_loss(
        tmp_path, monitor_class):
    """Validation every 3 steps of 10, loggers written every 50: the monitor compares the loss
    of the step before each validation (and finds one at the first)."""
    record = RecordLoss()
    options = {"dirpath": tmp_path, "save_top_k": 1} if monitor_class is ModelCheckpoint else {}
    monitor = monitor_class(monitor="train/loss", mode="min", **options)
    model = VAE(image_shape=(1, 8, 8), latent_dim=2, arch="mlp", iw_samples=0)
    data = DataLoader(TensorDataset(tiny_bars(160)), batch_size=16)
    trainer = pl.Trainer(max_epochs=1, val_check_interval=3, limit_val_batches=1,
                         num_sanity_val_steps=0, log_every_n_steps=50, logger=False,
                         enable_checkpointing=monitor_class is ModelCheckpoint,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", callbacks=[record, monitor])
    trainer.fit(model, data, data)
    best = min(record.losses[step] for step in (3, 6, 9))
    score = monitor.best_model_score if monitor_class is ModelCheckpoint else monitor.best_score
    assert score.item() == pytest.approx(best)


class FailOnGPUSync(pl.Callback):
    """Turn any host-device synchronisation into an error from the start of training step
    ``first`` to the end of step ``last``: the step, backward, optimizer, logging, progress bar
    and the next batch's fetch."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last, self.checked = first, last, []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == self.first:
            torch.cuda.set_sync_debug_mode("error")

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.first <= batch_idx <= self.last:
            self.checked.append(batch_idx)
        if batch_idx == self.last:
            torch.cuda.set_sync_debug_mode("default")


@CUDA
@pytest.mark.parametrize("compile_mode, precision, cuda_graph", [
    (None, "32-true", False), ("reduce-overhead", "bf16-mixed", False),
    (None, "bf16-mixed", True)])
def test_training_steps_on_a_gpu_never_wait_for_it(compile_mode, precision, cuda_graph,
                                                   tmp_path):
    """With a logger, a checkpoint callback and the progress bar, as a recipe runs; with
    ``cuda_graph``, steps after the capture (which waits once, at step 3), under a β warm-up
    whose weight is refilled at every step."""
    images = torch.randint(0, 256, (640, 1, 28, 28), dtype=torch.uint8)
    loader = DeviceLoader(images, torch.zeros(640, dtype=torch.long), 32, shuffle=True,
                          drop_last=True, binarize=True, device="cuda")
    model = VAE(**RECIPE_CONV, channels_last=True, compile_mode=compile_mode, iw_samples=0,
                cuda_graph=cuda_graph, beta_schedule={"name": "linear", "steps": 100})
    check = FailOnGPUSync(first=8, last=15)
    trainer = pl.Trainer(max_steps=18, accelerator="gpu", devices=1, precision=precision,
                         logger=CSVLogger(tmp_path), log_every_n_steps=1000,
                         default_root_dir=tmp_path, callbacks=[check])
    try:
        trainer.fit(model, loader)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert check.checked == list(range(8, 16))


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
        terms = model.elbo(x)
    assert {name: value.dtype for name, value in terms.items()} == dict.fromkeys(
        ("recon", "kl", "elbo"), torch.float32)
