"""An offline W&B run of a dSprites recipe, read back from wandb's own run files: the β-TCVAE
terms, the disentanglement scores of the test after the fit, and the traversal animations."""

from pathlib import Path

import pytest
import yaml
from dsprites_args import tiny_dsprites_args
from PIL import Image
from test_wandb import offline_env, read_offline_runs  # noqa: F401  (offline_env: a fixture)

from lightning_vae.cli import main, run_lightning

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "dsprites_tcvae.yaml"
SCORES = ("test/mig", "test/factorvae_score", "test/dci_d", "test/sap")
SWEEPS = {"dsprites_beta_vae.yaml": ["model.beta"], "dsprites_tcvae.yaml": ["model.beta"],
          "dsprites_factorvae.yaml": ["model.beta", "model.objective.gamma"]}


@pytest.mark.parametrize(("sweep", "parameters"), SWEEPS.items())
def test_the_dsprites_sweeps_maximise_mig_over_their_grid(sweep, parameters):
    config = yaml.safe_load((ROOT / "recipes" / "sweeps" / sweep).read_text())
    assert config["method"] == "grid"
    assert config["metric"] == {"name": "test/mig", "goal": "maximize"}
    assert list(config["parameters"]) == parameters
    command = config["command"]
    assert command[:4] == ["lightning-vae", "fit", "--config", f"recipes/{sweep}"]
    recipe = yaml.safe_load((ROOT / "recipes" / sweep).read_text())
    assert recipe["test_after_fit"] is True  # what logs test/mig in the run


def test_the_arguments_wandb_passes_set_the_factorvae_gamma_in_the_cli(tmp_path):
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    config = yaml.safe_load((ROOT / "recipes" / "sweeps" / "dsprites_factorvae.yaml").read_text())
    args = create_sweep_command_args({"args": {"model.beta": {"value": 4},
                                               "model.objective.gamma": {"value": 10}}})["args"]
    cli = run_lightning(["--config", str(ROOT / config["command"][3]),
                         "--data.init_args.data_dir", str(tmp_path), "--trainer.logger", "false",
                         *args], run=False)
    assert cli.model.hparams.beta == 4.0
    assert cli.model.objective.gamma == 10.0 and cli.model.objective.layers == 6


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
