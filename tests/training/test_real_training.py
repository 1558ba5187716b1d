"""The default command on the real MNIST: `lightning-vae fit --config recipes/mnist_vae.yaml`."""

import csv
from pathlib import Path

import pytest

from lightning_vae.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_epochs_of_the_default_recipe_reach_a_validation_elbo_above_minus_115(
        shared_mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTNING_VAE_DATA", str(shared_mnist_dir))
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(ROOT / "recipes" / "mnist_vae.yaml"),
          "--trainer.max_epochs", "2", "--data.init_args.download", "false",
          "--trainer.enable_progress_bar", "false",
          "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(tmp_path)])
    (metrics_file,) = tmp_path.glob("lightning_logs/version_0/metrics.csv")
    val_elbos = [float(r["val/elbo"]) for r in csv.DictReader(metrics_file.open())
                 if r.get("val/elbo")]
    assert len(val_elbos) == 2
    assert val_elbos[-1] > -115
    assert val_elbos[-1] > val_elbos[0]
