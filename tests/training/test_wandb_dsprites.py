"""An offline W&B run of a dSprites recipe, read back from wandb's own run files: the β-TCVAE
terms, the disentanglement scores of the test after the fit, and the traversal animations."""

from pathlib import Path

import pytest
from PIL import Image
from test_wandb import offline_env, read_offline_runs  # noqa: F401  (offline_env: a fixture)

from lightning_vae.cli import main

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "dsprites_tcvae.yaml"
SCORES = ("test/mig", "test/factorvae_score", "test/dci_d", "test/sap")


def tiny_dsprites_args(data_dir: Path, root: Path) -> list[str]:
    """After ``fit --config recipes/dsprites_*.yaml``: 600 re-rendered images (64 to validate, 128
    to test), a small conv model with 3 latents, two steps validated once, files under root."""
    return ["--data.init_args.data_dir", str(data_dir), "--data.init_args.size", "600",
            "--data.init_args.val_size", "64", "--data.init_args.test_size", "128",
            "--data.init_args.batch_size", "32", "--data.init_args.source", "rendered",
            "--model.arch_options", '{"channels": [4, 8], "hidden_dim": 16}',
            "--model.latent_dim", "3", "--trainer.max_steps", "2",
            "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
            "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
            "--trainer.log_every_n_steps", "1", "--trainer.default_root_dir", str(root)]


@pytest.mark.slow
def test_offline_tcvae_run_records_its_terms_scores_and_traversal_animations(
        tmp_path, offline_env):  # noqa: F811
    import wandb

    main(["fit", "--config", str(RECIPE), *tiny_dsprites_args(tmp_path / "data", tmp_path),
          "--model.objective.dataset_size", "408", "--wandb",
          "--trainer.logger.init_args.save_dir", str(tmp_path / "wandb_dir")])
    wandb.finish()
    wandb.teardown()
    (run,) = read_offline_runs(tmp_path / "wandb_dir")
    assert {"train/mi", "train/tc", "train/dim_kl", "train/beta", "val/tc"} <= run.keys()
    (scores,) = [row for row in run.history if "test/mig" in row]
    assert all(0 <= scores[name] <= 1 for name in SCORES)
    assert run.config["objective"]["name"] == "tcvae"
    for dim in range(3):
        (row,) = [row for row in run.history if f"traversals/latent_{dim}/path" in row]
        media = run.folder / "files" / row[f"traversals/latent_{dim}/path"]
        with Image.open(media) as gif:
            assert gif.format == "GIF" and gif.n_frames == 16
            assert gif.size == (2 + 8 * 66, 2 + 66)  # 8 validation images of 64 pixels in a row
    written = sorted(tmp_path.rglob("traversals/epoch=000-step=000002/latent_*.gif"))
    assert [path.name for path in written] == ["latent_0.gif", "latent_1.gif", "latent_2.gif"]
