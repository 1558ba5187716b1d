"""`lightning-vae fit --test_after_fit true`: the fit's last weights tested in the same run and
loggers, which is how a sweep's runs log their test scores (test/mig on dSprites)."""

import csv
from pathlib import Path

from dsprites_args import tiny_dsprites_args

from lightning_vae.cli import main

ROOT = Path(__file__).resolve().parents[2]


def logged_keys(root: Path) -> set[str]:
    (log,) = root.glob("lightning_logs/version_*/metrics.csv")
    return {key for row in csv.DictReader(log.open()) for key, value in row.items() if value}


def test_a_fit_tests_after_training_only_when_asked(tmp_path):
    recipe = str(ROOT / "recipes" / "dsprites_beta_vae.yaml")
    for flag, root in (("true", tmp_path / "tested"), ("false", tmp_path / "untested")):
        main(["fit", "--config", recipe, *tiny_dsprites_args(tmp_path / "data", root),
              "--test_after_fit", flag, "--trainer.logger", "CSVLogger",
              "--trainer.logger.save_dir", str(root)])
    tested, untested = logged_keys(tmp_path / "tested"), logged_keys(tmp_path / "untested")
    assert {"val/elbo", "test/elbo", "test/mig", "test/factorvae_score", "test/dci_d",
            "test/sap"} <= tested
    assert "val/elbo" in untested and not any(key.startswith("test/") for key in untested)
