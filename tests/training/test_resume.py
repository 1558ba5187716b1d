"""Resuming: `lightning-vae fit --ckpt_path last` continues a stopped run exactly.

Exactly means: the step counter, the β schedule, the optimizer state, the data order, the
binarization noise and the reparameterization noise all continue where they stopped, so the final
weights equal those of a run that was never stopped, bit for bit. Three pieces make that hold:
Lightning restores the loops and the optimizer; the DeviceLoader's ``state_dict`` (saved by
Lightning in the checkpoint) skips the batches of the epoch already trained on; and the module
seeds its sampling noise from (seed, rank, step), not from a generator state that checkpoints do
not hold.
"""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import write_tiny_mnist

from lightning_vae.cli import main, run_lightning
from lightning_vae.data.device_loader import DeviceLoader

ROOT = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 6  # 191 training images (256 - 65 for validation) in batches of 32


def tiny_run_config(data_dir: Path, root: Path, keep_every_step: bool = False) -> dict:
    """A small model with a linear KL warm-up, and a ModelCheckpoint that writes ``last.ckpt``
    after every step (so a stop anywhere leaves a checkpoint of where it stopped), and with
    ``keep_every_step`` also ``step=N.ckpt``: what a run killed after step N leaves."""
    return {
        "seed_everything": 0,
        "model": {"arch": "mlp", "arch_options": {"hidden_dims": [32]}, "latent_dim": 4,
                  "iw_samples": 0, "beta_schedule": {"name": "linear", "steps": 8}},
        "data": {"class_path": "lightning_vae.data.MNISTDataModule",
                 "init_args": {"data_dir": str(data_dir), "download": False, "val_size": 65,
                               "batch_size": 32, "binarize": "dynamic"}},
        "trainer": {
            "accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
            "enable_model_summary": False, "log_every_n_steps": 1,
            "default_root_dir": str(root),
            "logger": {"class_path": "pytorch_lightning.loggers.CSVLogger",
                       "init_args": {"save_dir": str(root)}},
            "callbacks": [{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                           "init_args": {"dirpath": str(root / "checkpoints"), "monitor": None,
                                         "every_n_train_steps": 1, "filename": "{step}",
                                         "save_top_k": -1 if keep_every_step else 0,
                                         "save_last": True}}],
        },
    }


def write_config(folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def checkpoint(root: Path) -> dict:
    return torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def train_rows(root: Path) -> dict[int, dict[str, str]]:
    """The training rows of every CSV log under ``root`` (a resumed run starts a new version),
    by step."""
    rows = {}
    for log in sorted(root.glob("lightning_logs/version_*/metrics.csv")):
        rows |= {int(r["step"]): r for r in csv.DictReader(log.open()) if r.get("train/loss")}
    return rows


def assert_same_training_state(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"]
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    (opt_a,), (opt_b,) = a["optimizer_states"], b["optimizer_states"]
    for param, state in opt_a["state"].items():
        for name, value in state.items():
            assert torch.equal(value, opt_b["state"][param][name]), (param, name)


# --- the data loader's part ------------------------------------------------------------------


def grey_images(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randint(0, 256, (n, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    return images.to(torch.uint8), torch.arange(n)


def make_device_loader() -> DeviceLoader:
    return DeviceLoader(*grey_images(), batch_size=8, shuffle=True, binarize=True, seed=3)


def epoch_batches(loader: DeviceLoader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_a_device_loader_resumed_mid_epoch_yields_the_rest_of_that_epoch_unchanged():
    uninterrupted = epoch_batches(make_device_loader(), 1)
    stopped = make_device_loader()
    stopped.sampler.set_epoch(1)
    batches = iter(stopped)
    for _ in range(2):
        next(batches)
    state = stopped.state_dict()
    assert state == {"epoch": 1, "batches": 2}

    resumed = make_device_loader()
    resumed.load_state_dict(state)
    rest = epoch_batches(resumed, 1)
    assert len(rest) == len(uninterrupted) - 2
    for (images, labels), (want_images, want_labels) in zip(rest, uninterrupted[2:], strict=True):
        assert torch.equal(labels, want_labels)
        assert torch.equal(images, want_images)  # the binarization noise too


def test_a_device_loader_state_applies_to_its_own_epoch_only():
    resumed = make_device_loader()
    resumed.load_state_dict({"epoch": 1, "batches": 5})  # epoch 1 had been finished
    fresh = epoch_batches(make_device_loader(), 2)
    for (images, labels), (want_images, want_labels) in zip(
            epoch_batches(resumed, 2), fresh, strict=True):
        assert torch.equal(labels, want_labels) and torch.equal(images, want_images)
    assert resumed.state_dict() == {"epoch": 2, "batches": len(fresh)}


# --- the whole run, one process --------------------------------------------------------------


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return write_tiny_mnist(tmp_path / "data")


def fit(config: Path, *args: str) -> None:
    main(["fit", "--config", str(config), *args])


@pytest.mark.slow
def test_fit_stopped_mid_epoch_and_resumed_from_last_ends_with_the_uninterrupted_weights(
        tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    total, stop = 10, 4  # stop inside the first epoch (6 steps), finish inside the second
    full, cut = tmp_path / "full", tmp_path / "cut"
    fit(write_config(full, tiny_run_config(tiny_data, full)), "--trainer.max_steps", str(total))
    cut_config = write_config(cut, tiny_run_config(tiny_data, cut))
    fit(cut_config, "--trainer.max_steps", str(stop))
    stopped = checkpoint(cut)
    assert stopped["global_step"] == stop
    assert stopped["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 0, "batches": stop}]

    fit(cut_config, "--trainer.max_steps", str(total), "--ckpt_path", "last")

    assert_same_training_state(checkpoint(full), checkpoint(cut))
    full_rows, cut_rows = train_rows(full), train_rows(cut)
    assert sorted(cut_rows) == sorted(full_rows) == list(range(total))
    # β warms up over 8 steps and carries on from step 4 after the restart, and every logged
    # loss, including those after the restart, is the uninterrupted run's.
    assert [float(cut_rows[s]["train/beta"]) for s in range(stop, total)] == [
        min(1.0, s / 8) for s in range(stop, total)]
    for step in range(total):
        assert cut_rows[step]["train/loss"] == full_rows[step]["train/loss"], step


# --- the recipes -----------------------------------------------------------------------------

TRAINING_RECIPES = sorted(
    p for p in (ROOT / "recipes").glob("*.yaml") if "trainer" in yaml.safe_load(p.read_text()))
CHECKPOINT = "pytorch_lightning.callbacks.ModelCheckpoint"


def last_checkpoints(recipe: Path) -> list[dict]:
    """The init_args of the recipe's ModelCheckpoints that write ``last.ckpt``."""
    callbacks = yaml.safe_load(recipe.read_text())["trainer"].get("callbacks", [])
    return [c.get("init_args", {}) for c in callbacks
            if c["class_path"] == CHECKPOINT and c.get("init_args", {}).get("save_last")]


@pytest.mark.parametrize("recipe", TRAINING_RECIPES, ids=lambda p: p.stem)
def test_every_training_recipe_writes_last_ckpt_after_every_epoch(recipe):
    """In Lightning 2.6 a ModelCheckpoint that monitors a metric writes ``last.ckpt`` only when
    the metric improves, which makes it the best checkpoint, not the last: the one ModelCheckpoint
    with ``save_last`` must monitor nothing (the best model needs a second one)."""
    keeping_last = last_checkpoints(recipe)
    assert len(keeping_last) == 1, f"{recipe.name}: one ModelCheckpoint with save_last: true"
    assert keeping_last[0].get("monitor") is None, (
        f"{recipe.name}: the ModelCheckpoint with save_last must not monitor a metric")


RECIPE = ROOT / "recipes" / "mnist_vae.yaml"


def tiny_recipe_args(data: Path, logs: Path) -> list[str]:
    """The default recipe, made small: the tiny MNIST, 64 validation images, batches of 64,
    no IW bound, one validation batch, CSV logs under ``logs``."""
    return ["--data.init_args.data_dir", str(data), "--data.init_args.download", "false",
            "--data.init_args.val_size", "64", "--data.init_args.batch_size", "64",
            "--model.iw_samples", "0", "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "1",
            "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(logs)]


def test_ckpt_path_last_resumes_the_newest_run_of_a_recipe(tiny_data, tmp_path, monkeypatch):
    """Lightning alone would look for "last" in the resuming run's own new ``version_1``
    folder, find nothing and train from scratch; the CLI finds ``version_0``'s."""
    monkeypatch.chdir(tmp_path)
    args = [*tiny_recipe_args(tiny_data, tmp_path), "--trainer.log_every_n_steps", "1"]
    fit(RECIPE, *args, "--trainer.max_epochs", "1")  # 192 images: 3 steps per epoch
    fit(RECIPE, *args, "--trainer.max_epochs", "2", "--ckpt_path", "last")
    resumed = [r for r in csv.DictReader(
        (tmp_path / "lightning_logs" / "version_1" / "metrics.csv").open()) if r.get("train/loss")]
    assert sorted(int(r["step"]) for r in resumed) == [3, 4, 5]


def test_test_with_ckpt_path_last_evaluates_the_newest_trained_weights(tiny_data, tmp_path,
                                                                        monkeypatch):
    """Lightning alone would evaluate the untrained weights with a warning."""
    monkeypatch.chdir(tmp_path)
    args = tiny_recipe_args(tiny_data, tmp_path)
    with pytest.raises(SystemExit, match=r"^lightning-vae test: error: --ckpt_path last: no "
                       r"last\*\.ckpt in .*train first"):
        main(["test", "--config", str(RECIPE), *args, "--ckpt_path", "last"])
    fit(RECIPE, *args, "--trainer.max_epochs", "1")
    trained = torch.load(next(tmp_path.glob("lightning_logs/version_*/checkpoints/last.ckpt")),
                         weights_only=False)["state_dict"]
    cli = run_lightning(["test", "--config", str(RECIPE), *args, "--ckpt_path", "last"])
    for name, value in cli.model.state_dict().items():
        assert torch.equal(value, trained[name]), name



FASHION_RECIPE = ROOT / "recipes" / "fashion_mnist_vae.yaml"


def last_ckpt(logs: Path, version: int) -> Path:
    return logs / "lightning_logs" / f"version_{version}" / "checkpoints" / "last.ckpt"


def logged_steps(logs: Path, version: int) -> list[int]:
    rows = csv.DictReader((logs / "lightning_logs" / f"version_{version}" / "metrics.csv").open())
    return sorted(int(r["step"]) for r in rows if r.get("train/loss"))


def test_test_with_ckpt_path_last_passes_over_a_newer_run_of_another_model(tiny_data, tmp_path,
                                                                           monkeypatch):
    """The newest last.ckpt holds a model with another latent size, whose weights would not
    load: the recipe's own run, older, is tested, and the warning names the one passed over."""
    monkeypatch.chdir(tmp_path)
    args = [*tiny_recipe_args(tiny_data, tmp_path), "--trainer.max_steps", "1"]
    fit(RECIPE, *args)
    fit(RECIPE, *args, "--model.latent_dim", "8")
    ours, other = last_ckpt(tmp_path, 0), last_ckpt(tmp_path, 1)
    with pytest.warns(match=rf"took {re.escape(str(ours))}; passed over 1 last\*\.ckpt of other "
                            rf"models or data, the newest {re.escape(str(other))} "
                            r"\(latent_dim 8 != 32\)"):
        cli = run_lightning(["test", "--config", str(RECIPE), *args, "--ckpt_path", "last"])
    trained = torch.load(ours, weights_only=True)["state_dict"]
    for name, value in cli.model.state_dict().items():
        assert torch.equal(value, trained[name]), name


def test_fit_with_ckpt_path_last_and_only_another_models_checkpoint_trains_from_scratch(
        tiny_data, tmp_path, monkeypatch):
    """Loading the other model's weights would stop with a size mismatch."""
    monkeypatch.chdir(tmp_path)
    args = [*tiny_recipe_args(tiny_data, tmp_path), "--trainer.max_steps", "1",
            "--trainer.log_every_n_steps", "1"]
    fit(RECIPE, *args, "--model.latent_dim", "8")
    with pytest.warns(match=r"no last\.ckpt .*; passed over 1 last\*\.ckpt of other models or "
                            r"data, the newest .*version_0.* \(latent_dim 8 != 32\); training "
                            r"from scratch"):
        fit(RECIPE, *args, "--ckpt_path", "last")
    assert logged_steps(tmp_path, 1) == [0]
    assert torch.load(last_ckpt(tmp_path, 1), weights_only=True)["hyper_parameters"][
        "latent_dim"] == 32


def test_fit_with_ckpt_path_last_passes_over_a_run_on_another_data_module(tiny_data, tmp_path,
                                                                          monkeypatch):
    """Fashion-MNIST weights fit the MNIST model's shapes (both binarized here): only the data
    module's class tells that they were trained on other images."""
    monkeypatch.chdir(tmp_path)
    args = [*tiny_recipe_args(tiny_data, tmp_path), "--trainer.log_every_n_steps", "1"]
    fit(FASHION_RECIPE, *args, "--data.init_args.binarize", "dynamic", "--trainer.max_steps", "1")
    with pytest.warns(match=r"passed over 1 .*\(data FashionMNISTDataModule != MNISTDataModule\); "
                            r"training from scratch"):
        fit(RECIPE, *args, "--trainer.max_steps", "2", "--ckpt_path", "last")
    assert logged_steps(tmp_path, 1) == [0, 1]


def test_validate_with_ckpt_path_last_and_only_another_models_checkpoint_names_it(
        tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = tiny_recipe_args(tiny_data, tmp_path)
    fit(RECIPE, *args, "--trainer.max_steps", "1", "--model.latent_dim", "8")
    other = re.escape(str(last_ckpt(tmp_path, 0)))
    with pytest.raises(SystemExit, match=rf"no last\*\.ckpt in .*; passed over 1 last\*\."
                                         rf"ckpt of other models or data, the newest "
                                         rf"{other} \(latent_dim 8 != 32\); train first"):
        main(["validate", "--config", str(RECIPE), *args, "--ckpt_path", "last"])


def test_ckpt_path_last_passes_over_an_unreadable_checkpoint_naming_why(tiny_data, tmp_path,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    damaged = last_ckpt(tmp_path, 0)
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match=rf"the newest {re.escape(str(damaged))} "
                                         r"\(cannot be read: .*not a PyTorch checkpoint"):
        main(["test", "--config", str(RECIPE), *tiny_recipe_args(tiny_data, tmp_path),
              "--ckpt_path", "last"])


# --- the whole run, two processes ------------------------------------------------------------


def run_ddp_fit(config: Path, cwd: Path, *args: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "lightning_vae.cli", "fit", "--config", str(config),
         "--config", str(ROOT / "recipes" / "trainer" / "cpu_ddp.yaml"), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.mark.slow
def test_ddp_fit_stopped_mid_epoch_and_resumed_ends_with_the_uninterrupted_weights(
        tiny_data, tmp_path):
    # Two ranks: 96 images each per epoch, 3 steps of 32; stop inside epoch 0, end in epoch 1.
    # The stopped run is the uninterrupted one's checkpoint after step 2, which is what a run
    # killed during step 3 leaves behind (and it saves a third two-process run).
    total, stop = 5, 2
    full, cut = tmp_path / "full", tmp_path / "cut"
    run_ddp_fit(write_config(full, tiny_run_config(tiny_data, full, keep_every_step=True)),
                tmp_path, "--trainer.max_steps", str(total))
    stopped = full / "checkpoints" / f"step={stop}.ckpt"
    assert torch.load(stopped, weights_only=False)["loops"]["fit_loop"]["state_dict"][
        "combined_loader"] == [{"epoch": 0, "batches": stop}]
    run_ddp_fit(write_config(cut, tiny_run_config(tiny_data, cut)), tmp_path,
                "--trainer.max_steps", str(total), "--ckpt_path", str(stopped))

    assert_same_training_state(checkpoint(full), checkpoint(cut))
    full_rows, cut_rows = train_rows(full), train_rows(cut)
    assert sorted(cut_rows) == list(range(stop, total))
    for step in range(stop, total):
        assert cut_rows[step]["train/loss"] == full_rows[step]["train/loss"], step
        assert float(cut_rows[step]["train/beta"]) == min(1.0, step / 8)
