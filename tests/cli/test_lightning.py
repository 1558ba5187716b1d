"""The `lightning-vae` command: every recipe runs a few steps, on tiny generated data."""

import csv
from pathlib import Path

import pytest
import yaml
from pytorch_lightning.callbacks import TQDMProgressBar

from lightning_vae.cli import main, run_lightning
from lightning_vae.cli.lightning import PROGRESS_BAR_INTERVAL
from lightning_vae.training.progress_bar import TimedProgressBar

ROOT = Path(__file__).resolve().parents[2]
TRAINING_RECIPES = sorted(
    p for p in (ROOT / "recipes").glob("*.yaml") if "trainer" in yaml.safe_load(p.read_text()))


def fit_args(recipe: Path, data_dir: Path, root: Path, steps: int = 3) -> list[str]:
    return [
        "fit", "--config", str(recipe),
        "--data.init_args.data_dir", str(data_dir),
        "--data.init_args.download", "false",
        "--data.init_args.val_size", "64",
        "--model.iw_samples", "8",
        "--trainer.max_steps", str(steps),
        "--trainer.limit_val_batches", "1",
        "--trainer.val_check_interval", "1",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(root),
        "--trainer.logger", "CSVLogger",
        "--trainer.logger.save_dir", str(root),
        "--trainer.log_every_n_steps", "1",
    ]


def test_there_are_recipes_for_the_default_model_fashion_mnist_and_a_beta_vae():
    names = {p.name for p in TRAINING_RECIPES}
    assert {"mnist_vae.yaml", "fashion_mnist_vae.yaml", "mnist_beta_vae.yaml"} <= names


@pytest.mark.parametrize("recipe", TRAINING_RECIPES, ids=lambda p: p.stem)
def test_every_recipe_trains_a_few_steps_and_logs_every_elbo_term(recipe, tiny_mnist_dir,
                                                                  tmp_path):
    data_class = yaml.safe_load(recipe.read_text())["data"]["class_path"]
    if not data_class.endswith("MNISTDataModule"):
        pytest.skip(f"{data_class} recipes have their own test on generated data")
    main(fit_args(recipe, tiny_mnist_dir, tmp_path))
    (metrics_file,) = tmp_path.glob("lightning_logs/version_0/metrics.csv")
    rows = list(csv.DictReader(metrics_file.open()))
    steps = sorted({int(r["step"]) for r in rows if r.get("train/loss")})
    assert steps == [0, 1, 2]
    assert {"train/recon", "train/kl", "train/elbo", "train/beta", "val/elbo"} <= rows[0].keys()
    assert list(tmp_path.glob("lightning_logs/version_0/checkpoints/last.ckpt"))


def test_validate_and_test_run_from_a_fit_checkpoint_with_the_command_lines_model_arguments(
        tiny_mnist_dir, tmp_path, capsys):
    """Lightning sets a checkpoint's hyperparameters over the whole configuration; the
    command line's own ``--model.*`` arguments must still have the last word (a test at
    another k), while the checkpoint's values stay over the recipe's (its architecture)."""
    recipe = ROOT / "recipes" / "mnist_vae.yaml"
    main([*fit_args(recipe, tiny_mnist_dir, tmp_path), "--model.latent_dim", "6"])
    checkpoint = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    for verb in ("validate", "test"):
        cli = run_lightning([
            verb, "--config", str(recipe), "--data.init_args.data_dir", str(tiny_mnist_dir),
            "--data.init_args.download", "false", "--data.init_args.val_size", "64",
            "--model.iw_samples", "3", "--model.beta=2.5", "--trainer.accelerator", "cpu",
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--ckpt_path", str(checkpoint), "--trainer.default_root_dir", str(tmp_path)])
        assert cli.model.hparams.iw_samples == 3 and cli.model.hparams.beta == 2.5
        assert cli.model.hparams.latent_dim == 6  # the checkpoint's, not the recipe's 32
        assert cli.config[verb].data.init_args.data_dir == str(tiny_mnist_dir)
    out = capsys.readouterr().out
    assert "val/elbo" in out and "test/elbo" in out


@pytest.mark.parametrize("verb", ["fit", "test"])
def test_a_damaged_ckpt_path_is_named_before_torch_reads_it(verb, tiny_mnist_dir, tmp_path):
    recipe = ROOT / "recipes" / "mnist_vae.yaml"
    main(fit_args(recipe, tiny_mnist_dir, tmp_path, steps=1))
    checkpoint = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(checkpoint.read_bytes()[:4096])
    args = [verb, "--config", str(recipe), "--data.init_args.data_dir", str(tiny_mnist_dir),
            "--data.init_args.download", "false", "--trainer.accelerator", "cpu",
            "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "again"),
            "--ckpt_path", str(cut)]
    with pytest.raises(SystemExit, match=f"^lightning-vae {verb}: error: {cut} is cut short "
                       "\\(4096 bytes"):
        main(args)


def test_bad_input_to_a_lightning_subcommand_ends_in_a_message_or_a_traceback_on_request(
        tmp_path, monkeypatch):
    args = ["fit", "--config", str(ROOT / "recipes" / "mnist_vae.yaml"),
            "--data.init_args.data_dir", str(tmp_path / "empty"), "--data.init_args.download",
            "false", "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false"]
    with pytest.raises(SystemExit) as stopped:
        main(args)
    first, *_, hint = str(stopped.value).splitlines()
    assert first.startswith("lightning-vae fit: error: MNIST: ")
    assert str(tmp_path / "empty") in str(stopped.value)  # where it looked
    assert hint == "(run with LIGHTNING_VAE_TRACEBACK=1 to see where it was raised)"
    monkeypatch.setenv("LIGHTNING_VAE_TRACEBACK", "1")
    with pytest.raises(FileNotFoundError, match="MNIST: "):
        main(args)


@pytest.mark.parametrize("command", ["fit", "test"])
def test_a_subcommands_help_names_the_command_and_ends_with_what_the_package_adds(command,
                                                                                   capsys):
    """The program name is lightning-vae however it runs (``python -m lightning_vae.cli``, as
    sweeps do, would show __main__.py)."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert out.startswith(f"usage: lightning-vae {command} [--config RECIPE] ")
    notes = " ".join(out.split()[-60:])
    assert "--ckpt_path last is the newest last.ckpt of this recipe's earlier runs" in notes
    assert "--wandb logs to Weights & Biases" in notes and "LIGHTNING_VAE_TRACEBACK=1" in notes


def test_an_unknown_command_lists_every_command():
    with pytest.raises(SystemExit) as stopped:
        main(["frobnicate", "--help"])
    message = str(stopped.value)
    assert message.startswith("lightning-vae: error: unknown command 'frobnicate'; choose from ")
    for command in ("fit", "validate", "test", "predict", "export", "push", "recipes",
                    "reconstruct", "sample", "sweep", "zoo"):
        assert f" {command}," in message or f" {command} (" in message


def test_model_image_shape_follows_the_datamodule(tiny_mnist_dir):
    """A recipe cannot pair a model with data of another shape: the CLI links the two."""
    cli = run_lightning(["--config", str(ROOT / "recipes" / "mnist_vae.yaml"),
                         "--data.init_args.data_dir", str(tiny_mnist_dir),
                         "--data.init_args.val_size", "64", "--trainer.logger", "false"], run=False)
    assert tuple(cli.model.hparams.image_shape) == cli.datamodule.image_shape == (1, 28, 28)


def test_celeba_recipe_trains_a_few_steps_on_a_generated_celeba(tmp_path):
    from celeba_fixture import make_celeba

    data_dir = tmp_path / "data"
    make_celeba(data_dir / "celeba")
    root = tmp_path / "run"
    main(["fit", "--config", str(ROOT / "recipes" / "celeba_beta_vae.yaml"),
          "--data.init_args.data_dir", str(data_dir), "--data.init_args.download", "false",
          "--data.init_args.batch_size", "4", "--data.init_args.progress", "false",
          "--trainer.max_steps", "3", "--trainer.limit_val_batches", "1",
          "--trainer.val_check_interval", "1", "--trainer.accelerator", "cpu",
          "--trainer.enable_progress_bar", "false",
          "--trainer.default_root_dir", str(root), "--trainer.logger", "CSVLogger",
          "--trainer.logger.save_dir", str(root), "--trainer.log_every_n_steps", "1"])
    (metrics_file,) = root.glob("lightning_logs/version_0/metrics.csv")
    rows = list(csv.DictReader(metrics_file.open()))
    assert sorted({int(r["step"]) for r in rows if r.get("train/loss")}) == [0, 1, 2]
    assert any(r.get("val/elbo") for r in rows)


TIMED_BAR = (TimedProgressBar, PROGRESS_BAR_INTERVAL)


@pytest.mark.parametrize("bar_args, expected", [
    ([], TIMED_BAR),
    (["--trainer.enable_progress_bar", "false"], None),
    (["--trainer.callbacks+=pytorch_lightning.callbacks.TQDMProgressBar",
      "--trainer.callbacks.refresh_rate=3"], (TQDMProgressBar, 3)),
    (["--trainer.callbacks", "ModelCheckpoint"], TIMED_BAR),  # one callback, not a list
])
def test_the_progress_bar_redraws_every_tenth_of_a_second_unless_configured(
        bar_args, expected, tiny_mnist_dir, tmp_path):
    """Redrawing at every step costs more than a GPU step; a bar the user names, or turns off,
    is left as asked (Lightning refuses a bar in the callbacks with the bar turned off)."""
    cli = run_lightning(["--config", str(ROOT / "recipes" / "mnist_vae.yaml"),
                         "--data.init_args.data_dir", str(tiny_mnist_dir),
                         "--trainer.default_root_dir", str(tmp_path), *bar_args], run=False)
    bar = cli.trainer.progress_bar_callback
    setting = None if bar is None else getattr(bar, "interval", bar.refresh_rate)
    assert (None if bar is None else (type(bar), setting)) == expected
