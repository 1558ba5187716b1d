"""The Hugging Face Hub integration: save_pretrained / from_pretrained (local folders and the
hub's cache), the model card and its picture, checkpoint export, and pushing.

No Hub server is reachable here, so pushes run for real up to huggingface_hub's upload API,
where the ``hub_api`` fixture (conftest.py) records what would be uploaded.
"""

import inspect
import json
import os
import pickle
import re
import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hub_cache import COMMIT, MODEL_FILES, folder_bytes, write_hub_cache
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import LocalTokenNotFoundError
from PIL import Image
from pytorch_lightning.callbacks import ModelCheckpoint
from safetensors.torch import load_file
from torch.utils.data import DataLoader, TensorDataset

import lightning_vae
from lightning_vae import VAE, PushToHub, available_architectures, export_checkpoint, push
from lightning_vae.cli import main
from lightning_vae.hub import load_checkpoint
from lightning_vae.images_grid import make_grid, save_png

SMALL_OPTIONS = {"mlp": {"hidden_dims": [16]}, "conv": {"channels": [4, 8], "hidden_dim": 16}}
"""Small widths for the built-in architectures; any other registered one gets its defaults."""
IMAGE_SHAPE = (1, 16, 16)


def small_vae(arch: str = "mlp", image_shape=IMAGE_SHAPE, latent_dim: int = 3,
              **kwargs) -> VAE:
    torch.manual_seed(0)
    return VAE(arch=arch, image_shape=image_shape, latent_dim=latent_dim,
               arch_options=SMALL_OPTIONS.get(arch), **kwargs)


def images(n: int = 8, shape=IMAGE_SHAPE) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(1))


def outputs(model: VAE, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Everything the model computes from x with the global seed fixed: posterior, latent draw,
    decoded mean, ELBO terms and prior samples."""
    model.eval()
    torch.manual_seed(0)
    out = model(x)
    torch.manual_seed(0)
    terms = model.elbo(x)
    return {"mu": out.posterior.mean, "logvar": out.posterior.logvar, "z": out.z,
            "mean": out.likelihood.mean, **terms,
            "samples": model.sample(4, generator=torch.Generator().manual_seed(2))}


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | changes))


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    small_vae().save_pretrained(folder)
    return folder


def fit_tiny(root: Path, callbacks=(), **trainer_args) -> pl.Trainer:
    """Four steps of an 8x8 MLP VAE, validated once and checkpointed on ``val/elbo``."""
    pl.seed_everything(0)
    x = (images(64, (1, 8, 8)) > 0.5).float()
    data = TensorDataset(x, torch.zeros(64))
    trainer = pl.Trainer(
        max_steps=4, default_root_dir=root, accelerator="cpu", logger=False,
        enable_progress_bar=False, enable_model_summary=False,
        callbacks=[ModelCheckpoint(monitor="val/elbo", mode="max"), *callbacks], **trainer_args)
    trainer.fit(small_vae(image_shape=(1, 8, 8)), DataLoader(data, batch_size=16),
                DataLoader(data, batch_size=32))
    return trainer


# --- saving and loading ----------------------------------------------------------------------


@pytest.mark.parametrize("arch", available_architectures())
def test_save_then_load_gives_identical_outputs_for_every_architecture(tmp_path, arch):
    model = small_vae(arch)
    x = images(4)
    model.save_pretrained(tmp_path / arch)
    loaded = VAE.from_pretrained(tmp_path / arch)
    assert not loaded.training
    assert_identical(outputs(loaded, x), outputs(model, x))


def test_learned_gaussian_variance_is_saved_with_the_weights(tmp_path):
    model = small_vae(likelihood="gaussian", likelihood_options={"learn_sigma": True})
    with torch.no_grad():
        model.likelihood_head.raw_sigma.fill_(-1.5)
    model.save_pretrained(tmp_path / "gaussian")
    loaded = lightning_vae.from_pretrained(tmp_path / "gaussian")
    assert torch.equal(loaded.likelihood_head.sigma, model.likelihood_head.sigma)
    assert_identical(outputs(loaded, images(2)), outputs(model, images(2)))


def test_config_json_holds_the_constructor_arguments_and_the_package_version(saved):
    config = json.loads((saved / "config.json").read_text())
    arguments = list(inspect.signature(VAE).parameters)
    assert set(config) == {*arguments, "lightning_vae_version"}
    assert config["lightning_vae_version"] == lightning_vae.__version__
    assert config["arch"] == "mlp" and config["latent_dim"] == 3
    assert config["image_shape"] == list(IMAGE_SHAPE)
    assert config["arch_options"] == {"hidden_dims": [16]}


def test_weights_are_stored_as_safetensors_only(saved):
    assert {p.name for p in saved.iterdir()} == MODEL_FILES
    stored = load_file(saved / "model.safetensors")
    assert stored.keys() == small_vae().state_dict().keys()


def test_save_into_an_existing_folder_replaces_the_model_and_keeps_other_files(saved):
    (saved / "notes.txt").write_text("mine")
    small_vae(latent_dim=5).save_pretrained(saved)
    assert (saved / "notes.txt").read_text() == "mine"
    assert VAE.from_pretrained(saved).latent_dim == 5
    assert not [p for p in saved.parent.iterdir() if p.name.endswith(".partial")]



@pytest.mark.skipif(os.name != "posix", reason="file modes and the umask are POSIX's")
@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664)])
def test_saved_files_get_the_mode_the_umask_gives_new_files(tmp_path, mask, mode):
    """safetensors writes its file owner-only (0600) and the save moves files in from a temporary
    folder; a saved folder must still be readable as a shared or served folder is."""
    previous = os.umask(mask)
    try:
        small_vae().save_pretrained(tmp_path / "model")
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "model").iterdir()}
    assert modes == dict.fromkeys(MODEL_FILES, mode)


# --- atomic saving ---------------------------------------------------------------------------


def test_a_save_that_fails_leaves_no_folder_and_no_temporary_files(tmp_path):
    parent = tmp_path / "models"
    with pytest.raises(ValueError, match="card images have shape"):
        small_vae().save_pretrained(parent / "new",
                                    model_card_kwargs={"images": images(2, (1, 8, 8))})
    assert list(parent.iterdir()) == []


def test_a_save_that_fails_leaves_the_previous_model_byte_identical(saved):
    before = folder_bytes(saved)
    with pytest.raises(ValueError, match="card images have shape"):
        small_vae().save_pretrained(saved, model_card_kwargs={"images": images(2, (1, 8, 8))})
    assert folder_bytes(saved) == before
    assert [p.name for p in saved.parent.iterdir()] == ["model"]


def test_a_save_interrupted_while_moving_files_in_never_loads_as_a_model(saved, monkeypatch):
    """A crash between the renames cannot be produced on cue, so os.replace raises
    KeyboardInterrupt when config.json (moved last) is due: the state a kill leaves there."""
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name == "config.json":
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        small_vae(latent_dim=5).save_pretrained(saved)
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{saved} has no config.json")):
        VAE.from_pretrained(saved)


# --- loading by repo id from the hub's cache -------------------------------------------------


def test_from_pretrained_by_repo_id_is_served_offline_from_the_hub_cache(
        tmp_path, saved, offline):
    assert huggingface_hub.constants.is_offline_mode()
    cache = tmp_path / "hf-cache"
    write_hub_cache(saved, cache, "someuser/some-vae", COMMIT)
    x = images(3)
    expected = outputs(VAE.from_pretrained(saved), x)
    by_branch = lightning_vae.from_pretrained("someuser/some-vae", cache_dir=cache)
    by_commit = VAE.from_pretrained("someuser/some-vae", cache_dir=cache, revision=COMMIT)
    assert_identical(outputs(by_branch, x), expected)
    assert_identical(outputs(by_commit, x), expected)


def test_from_pretrained_uses_hf_hub_cache_by_default(tmp_path, saved, offline, monkeypatch):
    """HF_HUB_CACHE too is read at import (into ``constants.HF_HUB_CACHE``, which
    hf_hub_download reads at each call), so the constant is what a test can set."""
    write_hub_cache(saved, tmp_path / "hf-cache", "someuser/some-vae", COMMIT)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    assert lightning_vae.from_pretrained("someuser/some-vae").latent_dim == 3


def test_a_repo_missing_from_the_cache_while_offline_names_repo_and_fix(tmp_path, offline):
    with pytest.raises(FileNotFoundError, match=r"config.json of Hub repo 'someuser/absent' "
                       r"\(revision main\) is not in the Hugging Face cache.*HF_HUB_OFFLINE"):
        VAE.from_pretrained("someuser/absent", cache_dir=tmp_path)


def test_a_pickled_weights_file_in_a_repo_is_never_unpickled(tmp_path, saved, offline):
    """huggingface_hub's own PyTorchModelHubMixin falls back to pytorch_model.bin; ours must
    not: this pickle would create ``marker`` if it were ever loaded."""
    marker = tmp_path / "unpickled"
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "config.json").write_bytes((saved / "config.json").read_bytes())
    (repo / "pytorch_model.bin").write_bytes(_touching_pickle(marker))
    write_hub_cache(repo, tmp_path / "cache", "someuser/pickled", COMMIT)
    with pytest.raises(FileNotFoundError, match=re.escape(
            "model.safetensors of Hub repo 'someuser/pickled'")):
        VAE.from_pretrained("someuser/pickled", cache_dir=tmp_path / "cache")
    assert not marker.exists()


def _touching_pickle(marker: Path) -> bytes:
    class Touch:
        def __reduce__(self):
            return (Path.touch, (marker,))

    return pickle.dumps(Touch())


# --- loading errors name the file at fault and the fix ---------------------------------------


def test_a_folder_without_weights_is_refused(saved):
    (saved / "model.safetensors").unlink()
    expected = re.escape(f"{saved} has no model.safetensors") + ".*export"
    with pytest.raises(FileNotFoundError, match=expected):
        VAE.from_pretrained(saved)


def test_a_folder_without_config_is_refused(saved):
    (saved / "config.json").unlink()
    expected = re.escape(f"{saved} has no config.json") + ".*save_pretrained"
    with pytest.raises(FileNotFoundError, match=expected):
        VAE.from_pretrained(saved)


def test_a_config_from_a_newer_major_version_is_refused(saved):
    major = int(lightning_vae.__version__.split(".")[0])
    edit_config(saved, lightning_vae_version=f"{major + 1}.0.0")
    expected = f"{saved}: config.json was written by lightning-vae {major + 1}.0.0"
    with pytest.raises(ValueError, match=re.escape(expected) + ".*pip install -U lightning-vae"):
        VAE.from_pretrained(saved)


def test_a_config_from_a_newer_minor_version_loads(saved):
    major = int(lightning_vae.__version__.split(".")[0])
    edit_config(saved, lightning_vae_version=f"{major}.999.0")
    assert VAE.from_pretrained(saved).latent_dim == 3


def test_a_config_with_options_this_version_does_not_know_is_refused(saved):
    edit_config(saved, decoder_norm="layer")
    with pytest.raises(ValueError, match=r"does not know: \['decoder_norm'\].*upgrade"):
        VAE.from_pretrained(saved)


def test_an_unregistered_architecture_is_refused(saved):
    edit_config(saved, arch="resnet9000")
    expected = f"{saved}: config.json names architecture 'resnet9000', which is not registered"
    with pytest.raises(ValueError, match=re.escape(expected) + ".*register_architecture"):
        VAE.from_pretrained(saved)


def test_weights_whose_shapes_do_not_match_the_config_are_refused(saved):
    edit_config(saved, latent_dim=4)
    with pytest.raises(ValueError, match=r"does not fit the model its config\.json") as error:
        VAE.from_pretrained(saved)
    assert str(error.value).startswith(f"{saved / 'model.safetensors'} (of {saved})")
    assert "\n  encoder.1.2.weight: stored (6, 16), config builds (8, 16)\n" in str(error.value)


@pytest.mark.parametrize(("key", "value"), [("latent_dim", "3"), ("image_shape", 16),
                                            ("likelihood_options", "x")])
def test_a_config_value_of_the_wrong_type_is_refused_naming_the_file(saved, key, value):
    """A hand-edited config.json: its TypeError must name the folder, not only the operands."""
    edit_config(saved, **{key: value})
    with pytest.raises(ValueError, match=re.escape(
            f"{saved}: config.json does not build a model") + ".*save the model again"):
        VAE.from_pretrained(saved)


def test_an_override_that_is_no_constructor_argument_is_refused_naming_it(saved):
    with pytest.raises(TypeError, match=r"unknown arguments \['strict'\].*config\.json.*"
                       r"choose from \[.*'latent_dim'"):
        VAE.from_pretrained(saved, strict=False)


def test_a_checkpoint_file_is_pointed_to_export(tmp_path):
    checkpoint = tmp_path / "last.ckpt"
    checkpoint.write_bytes(b"")
    expected = re.escape(f"lightning-vae export {checkpoint} FOLDER")
    with pytest.raises(FileNotFoundError, match=expected):
        VAE.from_pretrained(checkpoint)


# --- the model card and its picture ----------------------------------------------------------


def test_model_card_parses_with_huggingface_hub_and_states_model_training_and_numbers(tmp_path):
    model = small_vae("conv", beta=4.0, beta_schedule={"name": "linear", "steps": 100})
    model.save_pretrained(tmp_path / "card", model_card_kwargs={
        "repo_id": "someuser/beta-vae", "dataset": "mnist", "data_options": {"binarize": "dynamic"},
        "steps": 1200, "val_elbo": -101.234, "test_elbo": -100.5, "test_log_likelihood": -95.25,
        "log_likelihood_samples": 5000, "images": images(8)})
    card = ModelCard.load(tmp_path / "card" / "README.md")
    data = card.data
    assert data.library_name == "lightning-vae" and data.license == "apache-2.0"
    assert {"vae", "beta-vae", "mnist"} <= set(data.tags)
    assert data.datasets == ["mnist"] and data.metrics == ["elbo", "log-likelihood"]
    assert {(r.dataset_split, r.metric_type): r.metric_value for r in data.eval_results} == {
        ("validation", "elbo"): -101.234, ("test", "elbo"): -100.5,
        ("test", "log-likelihood"): -95.25}
    for row in ("| Architecture | `conv` (channels=[4, 8], hidden_dim=16) |",
                "| Latent size | 3 |", "| β | 4.0 |", "| β schedule | linear (steps=100) |",
                '| Training data | mnist (binarize="dynamic") |', "| Training steps | 1200 |",
                "| Validation ELBO | -101.23 nats per example |",
                "| Test ELBO | -100.50 nats per example |",
                "| Test log-likelihood | -95.25 nats per example (importance-weighted bound, "
                "5000 samples per image) |"):
        assert row in card.text
    assert 'model = lightning_vae.from_pretrained("someuser/beta-vae")' in card.text
    assert "![Reconstructions and prior samples](samples.png)" in card.text
    assert "Top two rows: validation images and their reconstructions" in card.text
    for citation in ("@software{lightning_vae", f"version = {{{lightning_vae.__version__}}}",
                     "title = {Auto-Encoding Variational Bayes}", "@inproceedings{higgins2017"):
        assert citation in card.text


def test_model_card_says_missing_numbers_are_missing(saved):
    card = ModelCard.load(saved / "README.md")
    assert "beta-vae" not in card.data.tags and "vae" in card.data.tags
    assert card.data.datasets is None and card.data.eval_results is None
    for row in ("| Training data | not recorded |", "| Training steps | not recorded |",
                "| Validation ELBO | not recorded |", "| Test ELBO | not evaluated |",
                "| Test log-likelihood | not evaluated |", "reconstructions are not shown"):
        assert row in card.text
    assert "higgins2017" not in card.text and "kingma2014" in card.text


def test_card_picture_is_a_png_of_the_models_reconstructions_and_prior_samples(tmp_path):
    model = small_vae()
    model.save_pretrained(tmp_path / "m", model_card_kwargs={"images": images(8)})
    with Image.open(tmp_path / "m" / "samples.png") as picture:
        assert picture.format == "PNG" and picture.mode == "L"
        assert picture.size == (2 + 8 * 18, 2 + 4 * 18)  # 8 columns; inputs, recons, 2 sample rows
        pixels = np.asarray(picture)
    assert np.array_equal(pixels, model.card_picture(images(8)))
    recon = model.reconstruct(images(8)[:1])[0, 0].numpy()
    row2 = pixels[2 + 18:2 + 18 + 16, 2:2 + 16]
    assert np.array_equal(row2, np.round(recon * 255).astype(np.uint8))


def test_card_picture_of_a_colour_model_is_rgb_prior_samples_when_no_images(tmp_path):
    model = small_vae(image_shape=(3, 8, 8))
    model.save_pretrained(tmp_path / "rgb")
    with Image.open(tmp_path / "rgb" / "samples.png") as picture:
        assert picture.mode == "RGB" and picture.size == (2 + 8 * 10, 2 + 2 * 10)


def test_unknown_model_card_kwargs_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown model_card_kwargs \['val_loss'\]"):
        small_vae().save_pretrained(tmp_path / "m", model_card_kwargs={"val_loss": 1.0})


def test_make_grid_tiles_images_row_by_row_with_grey_padding():
    batch = torch.tensor([0.0, 1.0, 0.2]).reshape(3, 1, 1, 1).expand(3, 1, 2, 2)
    grid = make_grid(batch, nrow=2, padding=1)
    assert grid.dtype == np.uint8 and grid.shape == (7, 7)
    assert (grid[1:3, 1:3] == 0).all() and (grid[1:3, 4:6] == 255).all()
    assert (grid[4:6, 1:3] == 51).all()
    assert (grid[0] == 128).all() and (grid[4:6, 4:6] == 128).all()  # padding and empty cell


def test_make_grid_keeps_colour_clips_values_and_refuses_other_channel_counts():
    grid = make_grid(torch.full((2, 3, 4, 4), 2.0, requires_grad=True), nrow=8, padding=0)
    assert grid.shape == (4, 8, 3) and (grid == 255).all()
    with pytest.raises(ValueError, match=r"\(N, 1 or 3, H, W\), got \(2, 2, 4, 4\)"):
        make_grid(np.zeros((2, 2, 4, 4)))


def test_save_png_writes_the_array_pillow_reads_back(tmp_path):
    picture = np.arange(12, dtype=np.uint8).reshape(3, 4)
    with Image.open(save_png(picture, tmp_path / "p.png")) as image:
        assert np.array_equal(np.asarray(image), picture)


# --- from a Lightning checkpoint to a model folder --------------------------------------------


def test_export_of_a_trainer_checkpoint_round_trips_and_records_steps_and_val_elbo(tmp_path):
    trainer = fit_tiny(tmp_path / "run")
    checkpoint = trainer.checkpoint_callback.best_model_path
    with pytest.warns(UserWarning, match="prior samples only: the checkpoint does not record"):
        folder = export_checkpoint(checkpoint, tmp_path / "hub")
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    loaded = VAE.from_pretrained(folder).state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[name], state[name]) for name in state)
    text = (folder / "README.md").read_text()
    val_elbo = float(trainer.checkpoint_callback.best_model_score)
    assert f"| Validation ELBO | {val_elbo:.2f} nats per example |" in text
    assert "| Training steps | 4 |" in text and "| Training data | not recorded |" in text


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
          "--log-likelihood-samples", "50"])

    raw = torch.load(checkpoint, weights_only=True)
    loaded = lightning_vae.from_pretrained("hub")
    assert loaded.image_shape == (1, 28, 28) and loaded.latent_dim == 4
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in raw["state_dict"].items())
    card = ModelCard.load(tmp_path / "hub" / "README.md")
    assert card.data.datasets == ["mnist"] and "beta-vae" not in card.data.tags
    [val_score] = [state["best_model_score"] for state in raw["callbacks"].values()]
    assert {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results} == {
        ("validation", "elbo"): round(float(val_score), 4), ("test", "elbo"): -123.456,
        ("test", "log-likelihood"): -120.5}
    assert f"| Training steps | {raw['global_step']} |" in card.text
    assert "val_size=64" in card.text and str(tiny_mnist_dir) not in card.text
    assert "Top two rows: validation images" in card.text
    with Image.open(tmp_path / "hub" / "samples.png") as picture:
        assert picture.size == (2 + 8 * 30, 2 + 4 * 30)


# --- pushing ----------------------------------------------------------------------------------


def test_push_uploads_the_folder_as_it_is(saved, token, hub_api):
    url = push(saved, "someuser/some-vae", private=True, commit_message="first model")
    assert url == f"https://huggingface.co/someuser/some-vae/commit/{COMMIT}"
    assert hub_api.created == [{"repo_id": "someuser/some-vae", "private": True,
                                "token": token}]
    [upload] = hub_api.uploads
    assert upload["files"] == folder_bytes(saved)
    assert upload["commit_message"] == "first model"


def test_push_without_credentials_fails_before_anything_is_uploaded(saved, no_token, hub_api):
    with pytest.raises(LocalTokenNotFoundError, match=r"cannot push to 'someuser/some-vae'.*"
                       r"hf auth login.*HF_TOKEN"):
        push(saved, "someuser/some-vae")
    with pytest.raises(LocalTokenNotFoundError, match="someuser/other"):
        small_vae().push_to_hub("someuser/other")
    assert hub_api.created == [] and hub_api.uploads == []


def test_a_failed_upload_leaves_the_local_folder_byte_identical(saved, token, hub_api):
    before = folder_bytes(saved)
    hub_api.fail = ConnectionError("connection reset by peer")
    with pytest.raises(ConnectionError):
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
    small_vae().save_pretrained(tmp_path / "mnist-vae", push_to_hub=True)
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
    small_vae().push_to_hub("someuser/pushed", model_card_kwargs={"dataset": "mnist"})
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


def test_push_to_hub_callback_pushes_the_best_checkpoint_when_fit_ends(tmp_path, token, hub_api):
    trainer = fit_tiny(tmp_path, callbacks=[PushToHub("someuser/tiny-vae", private=True)])
    [upload] = hub_api.uploads
    folder = tmp_path / "hub"
    assert set(upload["files"]) == MODEL_FILES and upload["files"] == folder_bytes(folder)
    best = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    loaded = VAE.from_pretrained(folder).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in best["state_dict"].items())
    card = upload["files"]["README.md"].decode()
    assert 'from_pretrained("someuser/tiny-vae")' in card and "Top two rows" in card
    assert hub_api.created[0]["private"] is True


def test_push_to_hub_callback_without_credentials_stops_fit_before_training(
        tmp_path, no_token, hub_api):
    with pytest.raises(LocalTokenNotFoundError, match="someuser/tiny-vae"):
        fit_tiny(tmp_path, callbacks=[PushToHub("someuser/tiny-vae")])
    assert not list(tmp_path.rglob("*.ckpt")) and hub_api.created == []


def test_push_to_hub_callback_failed_upload_keeps_the_folder_and_says_how_to_retry(
        tmp_path, token, hub_api):
    hub_api.fail = ConnectionError("connection reset by peer")
    retry = f"retry with `lightning-vae push {tmp_path / 'hub'} --repo-id someuser/tiny-vae`"
    with pytest.raises(RuntimeError, match=re.escape(retry)):
        fit_tiny(tmp_path, callbacks=[PushToHub("someuser/tiny-vae")])
    assert VAE.from_pretrained(tmp_path / "hub").latent_dim == 3
