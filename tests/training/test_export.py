"""From a Lightning checkpoint to the Hugging Face Hub (lightning_vae/training/export.py and the
checkpoint reading of training/checkpoints.py): export to a model folder whose card records the
training settings, and pushing, by function, command and callback.

No Hub server is reachable here, so pushes run for real up to huggingface_hub's upload API,
where the ``hub_api`` fixture (conftest.py) records what would be uploaded.
"""

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_capped
from hub_cache import COMMIT, MODEL_FILES, folder_bytes
from hub_models import MODEL_ARGUMENTS, fit_tiny, model_weights, save_small_model, small_model
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import LocalTokenNotFoundError
from PIL import Image

import lightning_vae
from lightning_vae import VAE, PushToHub, VAEModel, export_checkpoint, push
from lightning_vae.cli import main
from lightning_vae.hub.format import VERSION_KEY
from lightning_vae.hub.zoo import card_numbers
from lightning_vae.training.checkpoints import load_checkpoint


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save_small_model(tmp_path / "model")


def assert_holds_the_checkpoints_weights(folder: Path, checkpoint: str | Path) -> None:
    """The model saved in ``folder`` has exactly the weights of the checkpoint, every one of
    which is the model's (``model.*``)."""
    module_state = torch.load(checkpoint, weights_only=True)["state_dict"]
    state = model_weights(module_state)
    assert len(state) == len(module_state)
    loaded = VAEModel.from_pretrained(folder).state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[name], state[name]) for name in state)


# --- from a Lightning checkpoint to a model folder --------------------------------------------


def test_export_of_a_trainer_checkpoint_round_trips_and_records_steps_and_val_elbo(tmp_path):
    trainer = fit_tiny(tmp_path / "run")
    checkpoint = trainer.checkpoint_callback.best_model_path
    with pytest.warns(UserWarning, match="prior samples only: the checkpoint does not record"):
        folder = export_checkpoint(checkpoint, tmp_path / "hub")
    assert_holds_the_checkpoints_weights(folder, checkpoint)
    text = (folder / "README.md").read_text()
    val_elbo = float(trainer.checkpoint_callback.best_model_score)
    assert f"| Validation ELBO | {val_elbo:.2f} nats per example |" in text
    assert "| Training steps | 4 |" in text and "| Training data | not recorded |" in text


def test_export_records_the_checkpoints_training_settings_on_the_card_not_in_config_json(
        tmp_path):
    checkpoint = fit_tiny(tmp_path / "run").checkpoint_callback.best_model_path
    with pytest.warns(UserWarning, match="prior samples only"):
        folder = export_checkpoint(checkpoint, tmp_path / "hub")
    hparams = torch.load(checkpoint, weights_only=True)["hyper_parameters"]
    config = json.loads((folder / "config.json").read_text())
    assert set(config) == {*MODEL_ARGUMENTS, VERSION_KEY}
    card = ModelCard.load(folder / "README.md")
    assert card.data.training == {name: hparams[name] for name in VAE.training_argument_names()}
    assert card.data.training["lr"] == 1e-3 and card.data.training["iw_samples"] == 5000
    assert "| β | 1.0 |" in card.text and "| β schedule | constant |" in card.text


SCORE_OPTIONS = ["--test-mig", "0.2", "--test-factorvae-score", "0.6", "--test-dci-d", "0.45",
                 "--test-sap", "0.05"]
SCORES = {"mig": 0.2, "factorvae_score": 0.6, "dci_d": 0.45, "sap": 0.05}


def test_export_cli_puts_the_four_disentanglement_scores_on_the_card_without_a_likelihood(
        tmp_path):
    checkpoint = fit_tiny(tmp_path / "run").checkpoint_callback.best_model_path
    with pytest.warns(UserWarning, match="prior samples only"):
        main(["export", checkpoint, str(tmp_path / "hub"), "--dataset", "dsprites",
              "--test-elbo", "-70.25", "--log-likelihood-samples", "0", *SCORE_OPTIONS])
    numbers = card_numbers(tmp_path / "hub")
    assert numbers.scores == SCORES and numbers.test_elbo == -70.25
    assert numbers.test_log_likelihood is None
    text = (tmp_path / "hub" / "README.md").read_text()
    assert "| MIG | 0.200 |" in text and "| FactorVAE score | 0.600 |" in text
    assert "Test log-likelihood" not in text


def test_export_cli_refuses_a_score_outside_zero_one_in_one_line(tmp_path):
    checkpoint = fit_tiny(tmp_path / "run").checkpoint_callback.best_model_path
    with pytest.raises(SystemExit) as stopped, pytest.warns(UserWarning, match="prior samples"):
        main(["export", checkpoint, str(tmp_path / "hub"), "--test-dci-d", "45"])
    assert str(stopped.value.code).startswith(
        "lightning-vae export: error: test_dci_d=45.0: the DCI disentanglement lies in [0, 1]")
    assert not (tmp_path / "hub").exists()


class Unsafe:
    """A Python object in a checkpoint: weights_only loading refuses to build it."""


def test_a_checkpoint_with_python_objects_is_unpickled_only_when_trusted(tmp_path):
    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": {}, "extra": Unsafe()}, path)
    with pytest.raises(ValueError, match=re.escape(f"{path} holds Python objects that safe "
                                                   "(weights_only) loading refuses")
                       + ".*--trust-checkpoint"):
        load_checkpoint(path)
    assert isinstance(load_checkpoint(path, trusted=True)["extra"], Unsafe)


def not_a_checkpoint(kind: str, checkpoint: Path, folder: Path) -> Path:
    """A path given to export where a checkpoint belongs: missing, a folder, a checkpoint cut
    to half its size, or a text file."""
    path = {"folder": folder}.get(kind, folder / f"{kind}.ckpt")
    if kind == "cut":
        path.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    elif kind == "text":
        path.write_text("garbage")
    return path


@pytest.mark.parametrize("kind, message", [
    ("absent", "no checkpoint file at {path}"),
    ("folder", "{path} is a folder, not a checkpoint file"),
    ("cut", "{path} is cut short ("),
    ("text", "{path} is not a PyTorch checkpoint (it starts with b'garb'"),
])
def test_export_of_what_is_not_a_checkpoint_says_what_it_is_in_one_line(kind, message, tmp_path):
    checkpoint = Path(fit_tiny(tmp_path / "run").checkpoint_callback.best_model_path)
    path = not_a_checkpoint(kind, checkpoint, tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(["export", str(path), str(tmp_path / "hub")])
    assert str(stopped.value).startswith("lightning-vae export: error: "
                                         + message.format(path=path))
    assert not (tmp_path / "hub").exists()


@pytest.mark.parametrize("checkpoint, message", [
    ([1, 2], "lacks hyper_parameters or state_dict"),
    ({"hyper_parameters": ["latent_dim"], "state_dict": {}}, "lacks hyper_parameters"),
    ({"hyper_parameters": {"latent_dim": "x"}, "state_dict": {}},
     "its hyper_parameters do not build a VAE"),
])
def test_a_checkpoint_whose_contents_do_not_build_a_vae_is_named(checkpoint, message, tmp_path):
    path = tmp_path / "odd.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match=re.escape(f"{path}") + ".*" + re.escape(message)):
        export_checkpoint(path, tmp_path / "hub")


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_an_export_that_runs_out_of_space_leaves_the_previous_model_and_says_so(tmp_path):
    """RLIMIT_FSIZE makes every write past its size fail with EFBIG, as a full disk does."""
    checkpoint = fit_tiny(tmp_path / "run").checkpoint_callback.best_model_path
    main(["export", checkpoint, str(tmp_path / "hub")])
    before = folder_bytes(tmp_path / "hub")
    size = (tmp_path / "hub" / "model.safetensors").stat().st_size
    failed = write_capped(["export", checkpoint, str(tmp_path / "hub")], max_bytes=size // 2)
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[-2].startswith(
        f"lightning-vae export: error: writing model.safetensors for {tmp_path / 'hub'} failed")
    assert folder_bytes(tmp_path / "hub") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub", "run"]  # no staging folder


def test_export_cli_round_trips_a_checkpoint_written_by_lightning_vae_fit(
        tmp_path, tiny_mnist_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning-vae"])  # LightningCLI warns about pytest's argv
    main(["fit", "--data", "lightning_vae.data.MNISTDataModule",
          "--data.data_dir", str(tiny_mnist_dir), "--data.download", "false",
          "--data.val_size", "64", "--data.batch_size", "64",
          "--model.arch", "mlp", "--model.latent_dim", "4",
          "--model.arch_options", '{"hidden_dims": [16]}',
          "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu",
          "--trainer.default_root_dir", "run", "--trainer.logger", "false",
          "--trainer.enable_progress_bar", "false",
          "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.monitor=val/elbo",
          "--trainer.callbacks.mode=max"])
    [checkpoint] = (tmp_path / "run").rglob("*.ckpt")
    main(["export", str(checkpoint), "hub", "--repo-id", "someuser/mnist-vae",
          "--test-elbo", "-123.456", "--test-log-likelihood", "-120.5",
          "--log-likelihood-samples", "50", "--trust-checkpoint"])

    raw = torch.load(checkpoint, weights_only=True)
    loaded = lightning_vae.from_pretrained("hub")
    assert loaded.image_shape == (1, 28, 28) and loaded.latent_dim == 4
    assert_holds_the_checkpoints_weights(tmp_path / "hub", checkpoint)
    card = ModelCard.load(tmp_path / "hub" / "README.md")
    assert card.data.datasets == ["mnist"] and "beta-vae" not in card.data.tags
    [val_score] = [state["best_model_score"] for state in raw["callbacks"].values()]
    assert {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results} == {
        ("validation", "elbo"): round(float(val_score), 4), ("test", "elbo"): -123.456,
        ("test", "log-likelihood"): -120.5}
    assert card.data.training["beta"] == 1.0 and card.data.training["optimizer"] == "adam"
    assert f"| Training steps | {raw['global_step']} |" in card.text
    assert "val_size=64" in card.text and str(tiny_mnist_dir) not in card.text
    assert "Top two rows: validation images" in card.text
    with Image.open(tmp_path / "hub" / "samples.png") as picture:
        assert picture.size == (2 + 8 * 30, 2 + 4 * 30)


def test_export_from_another_folder_finds_a_relative_data_dir_where_training_ran(
        tmp_path, tiny_mnist_dir, monkeypatch, recwarn):
    """``--data.data_dir data`` is relative to the folder fit ran in; export run elsewhere finds
    the data there (the checkpoint records that folder), so the card keeps its reconstructions.
    A checkpoint that does not record it (0.1.0's) gets a warning saying so."""
    training = tmp_path / "project"
    (training / "data").mkdir(parents=True)
    for file in tiny_mnist_dir.iterdir():
        (training / "data" / file.name).symlink_to(file)
    monkeypatch.chdir(training)
    monkeypatch.setattr(sys, "argv", ["lightning-vae"])
    main(["fit", "--data", "lightning_vae.data.MNISTDataModule", "--data.data_dir", "data",
          "--data.download", "false", "--data.val_size", "64", "--model.arch", "mlp",
          "--model.latent_dim", "2", "--model.arch_options", '{"hidden_dims": [8]}',
          "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1",
          "--trainer.accelerator", "cpu", "--trainer.logger", "false",
          "--trainer.enable_progress_bar", "false"])
    [checkpoint] = training.rglob("*.ckpt")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    main(["export", str(checkpoint), "hub", "--trust-checkpoint"])
    assert "Top two rows: validation images" in (elsewhere / "hub" / "README.md").read_text()
    assert not [w for w in recwarn if "prior samples only" in str(w.message)]

    raw = torch.load(checkpoint, weights_only=True)
    del raw["lightning_vae_working_folder"]
    torch.save(raw, elsewhere / "old.ckpt")
    with pytest.warns(UserWarning, match=r"(?s)prior samples only: .*its data_dir 'data' is "
                      r"relative, and this checkpoint does not record the folder training ran "
                      r"in: run export from that folder"):
        main(["export", str(elsewhere / "old.ckpt"), "old", "--trust-checkpoint"])


# --- pushing ----------------------------------------------------------------------------------


def test_push_uploads_the_folder_as_it_is(saved, token, hub_api):
    url = push(saved, "someuser/some-vae", private=True, commit_message="first model")
    assert url == f"https://huggingface.co/someuser/some-vae/commit/{COMMIT}"
    assert hub_api.created == [{"repo_id": "someuser/some-vae", "private": True,
                                "token": token}]
    [upload] = hub_api.uploads
    assert upload["files"] == folder_bytes(saved)
    assert upload["commit_message"] == "first model"


def test_push_leaves_out_what_an_interrupted_save_left_in_the_folder(saved, token, hub_api):
    staging = saved / ".model.x1y2.partial"  # as a save killed midway leaves it
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"half a file")
    push(saved, "someuser/some-vae")
    [upload] = hub_api.uploads
    assert sorted(upload["files"]) == sorted(MODEL_FILES)


def test_push_without_credentials_fails_before_anything_is_uploaded(saved, no_token, hub_api):
    with pytest.raises(LocalTokenNotFoundError, match=r"cannot push to 'someuser/some-vae'.*"
                       r"hf auth login.*HF_TOKEN"):
        push(saved, "someuser/some-vae")
    with pytest.raises(LocalTokenNotFoundError, match="someuser/other"):
        small_model().push_to_hub("someuser/other")
    assert hub_api.created == [] and hub_api.uploads == []


def test_a_failed_upload_leaves_the_local_folder_byte_identical(saved, token, hub_api):
    before = folder_bytes(saved)
    hub_api.fail = ConnectionError("connection reset by peer")
    with pytest.raises(SystemExit, match=r"^lightning-vae push: error: connection reset by peer"):
        main(["push", str(saved), "--repo-id", "someuser/some-vae"])
    assert folder_bytes(saved) == before


def test_push_refuses_an_incomplete_folder(saved, token, hub_api):
    (saved / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"has no model\.safetensors"):
        push(saved, "someuser/some-vae")
    assert hub_api.uploads == []


@pytest.fixture
def account(hub_api, monkeypatch: pytest.MonkeyPatch) -> str:
    """The token's Hub account, "someuser", as the Hub shows it: ``whoami`` names it, and a repo
    created by a bare name is created in it (``create_repo("name")`` gives ``someuser/name``),
    which the upload then goes to. Builds on the ``hub_api`` recording."""
    record_repo = HfApi.create_repo

    def whoami(api, token=None, **kwargs):
        return {"type": "user", "name": "someuser"}

    def create_repo(api, repo_id, **kwargs):
        return record_repo(api, repo_id if "/" in repo_id else f"someuser/{repo_id}", **kwargs)

    monkeypatch.setattr(HfApi, "whoami", whoami)
    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    return "someuser"


def test_a_bare_repo_name_is_pushed_to_the_accounts_repo_whose_id_the_card_names(
        tmp_path, token, hub_api, account):
    """save_pretrained(push_to_hub=True) names the repo after the folder, without a namespace,
    as huggingface_hub's mixin does; the card's snippet must load what was pushed."""
    small_model().save_pretrained(tmp_path / "mnist-vae", push_to_hub=True)
    [upload] = hub_api.uploads
    assert upload["repo_id"] == "someuser/mnist-vae"
    assert 'from_pretrained("someuser/mnist-vae")' in upload["files"]["README.md"].decode()


def test_push_cli_with_a_bare_repo_name_writes_the_accounts_repo_into_the_card(
        tmp_path, token, hub_api, account):
    checkpoint = fit_tiny(tmp_path / "run").checkpoint_callback.best_model_path
    with pytest.warns(UserWarning, match="prior samples only"):
        main(["push", checkpoint, "--repo-id", "tiny"])
    [upload] = hub_api.uploads
    assert upload["repo_id"] == "someuser/tiny"
    assert 'from_pretrained("someuser/tiny")' in upload["files"]["README.md"].decode()


def test_push_to_hub_callback_with_a_bare_repo_name_writes_the_accounts_repo_into_the_card(
        tmp_path, token, hub_api, account):
    fit_tiny(tmp_path, callbacks=[PushToHub("tiny-vae")])
    [upload] = hub_api.uploads
    assert upload["repo_id"] == "someuser/tiny-vae"
    assert 'from_pretrained("someuser/tiny-vae")' in upload["files"]["README.md"].decode()


def test_model_push_to_hub_uploads_a_complete_folder_whose_card_names_the_repo(token, hub_api):
    small_model().push_to_hub("someuser/pushed", model_card_kwargs={"dataset": "mnist"})
    [upload] = hub_api.uploads
    assert set(upload["files"]) == MODEL_FILES
    card = upload["files"]["README.md"].decode()
    assert 'from_pretrained("someuser/pushed")' in card and "| Training data | mnist |" in card


def test_push_cli_exports_a_checkpoint_and_uploads_it(tmp_path, token, hub_api, capsys):
    checkpoint = fit_tiny(tmp_path / "run").checkpoint_callback.best_model_path
    with pytest.warns(UserWarning, match="prior samples only"):
        main(["push", checkpoint, "--repo-id", "someuser/tiny", "--private",
              "--test-elbo", "-50"])
    assert capsys.readouterr().out.strip().endswith(COMMIT)
    [upload] = hub_api.uploads
    assert set(upload["files"]) == MODEL_FILES and hub_api.created[0]["private"] is True
    card = upload["files"]["README.md"].decode()
    assert 'from_pretrained("someuser/tiny")' in card
    assert "| Test ELBO | -50.00 nats per example |" in card
    assert "| β | 1.0 |" in card and "| β schedule | constant |" in card


def test_push_cli_takes_the_disentanglement_scores_as_export_does(tmp_path, token, hub_api):
    checkpoint = fit_tiny(tmp_path / "run").checkpoint_callback.best_model_path
    with pytest.warns(UserWarning, match="prior samples only"):
        main(["push", checkpoint, "--repo-id", "someuser/tcvae", "--dataset", "dsprites",
              *SCORE_OPTIONS])
    [upload] = hub_api.uploads
    card = ModelCard(upload["files"]["README.md"].decode())
    assert {r.metric_type: r.metric_value for r in card.data.eval_results
            if r.dataset_split == "test"} == SCORES


def test_push_to_hub_callback_pushes_the_best_checkpoint_when_fit_ends(tmp_path, token, hub_api):
    trainer = fit_tiny(tmp_path, callbacks=[PushToHub("someuser/tiny-vae", private=True)])
    [upload] = hub_api.uploads
    folder = tmp_path / "hub"
    assert set(upload["files"]) == MODEL_FILES and upload["files"] == folder_bytes(folder)
    assert_holds_the_checkpoints_weights(folder, trainer.checkpoint_callback.best_model_path)
    card = upload["files"]["README.md"].decode()
    assert 'from_pretrained("someuser/tiny-vae")' in card and "Top two rows" in card
    assert "| β | 1.0 |" in card and "| β schedule | constant |" in card
    assert hub_api.created[0]["private"] is True


def test_push_to_hub_callback_without_credentials_stops_fit_before_training(
        tmp_path, no_token, hub_api):
    with pytest.raises(LocalTokenNotFoundError, match="someuser/tiny-vae"):
        fit_tiny(tmp_path, callbacks=[PushToHub("someuser/tiny-vae")])
    assert not list(tmp_path.rglob("*.ckpt")) and hub_api.created == []


def test_push_to_hub_callback_while_offline_stops_fit_before_training(tmp_path, token, offline,
                                                                      hub_api):
    with pytest.raises(ValueError, match=r"PushToHub pushes to someuser/tiny-vae when fit ends, "
                       r"but offline mode is on \(HF_HUB_OFFLINE\).*lightning-vae push"):
        fit_tiny(tmp_path, callbacks=[PushToHub("someuser/tiny-vae")])
    assert not list(tmp_path.rglob("*.ckpt")) and hub_api.created == []


def test_push_to_hub_callback_failed_upload_keeps_the_folder_and_says_how_to_retry(
        tmp_path, token, hub_api):
    hub_api.fail = ConnectionError("connection reset by peer")
    retry = f"retry with `lightning-vae push {tmp_path / 'hub'} --repo-id someuser/tiny-vae`"
    with pytest.raises(RuntimeError, match=re.escape(retry)):
        fit_tiny(tmp_path, callbacks=[PushToHub("someuser/tiny-vae")])
    assert VAEModel.from_pretrained(tmp_path / "hub").latent_dim == 3
