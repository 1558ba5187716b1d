"""The Hugging Face Hub integration: save_pretrained / from_pretrained (local folders and the
hub's cache), the model card and its picture, checkpoint export, and pushing.

No Hub server is reachable here, so pushes run for real up to huggingface_hub's upload API,
where the ``hub_api`` fixture (conftest.py) records what would be uploaded.
"""

import hashlib
import inspect
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import write_capped
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
from lightning_vae.imaging import make_grid, save_image

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


def test_saving_over_a_file_is_refused_and_leaves_it(tmp_path):
    (tmp_path / "model").write_text("not a folder")
    with pytest.raises(FileExistsError, match=r"model is a file; a model is saved as a folder"):
        small_vae().save_pretrained(tmp_path / "model")
    assert (tmp_path / "model").read_text() == "not a folder"


def save_beside_a_read_only_parent(target: Path, code: str) -> subprocess.CompletedProcess:
    """Run Python ``code`` (which saves into ``target``) in a child process that may write into
    ``target`` but not into its parent: as root, whom permissions do not stop, under a read-only
    bind mount of the parent in a mount namespace of the child's own, with ``target`` mounted
    writable inside it; otherwise with the parent's write permission taken away."""
    parent = target.parent
    if os.geteuid() != 0:
        parent.chmod(0o555)
        try:
            return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  timeout=300)
        finally:
            parent.chmod(0o755)
    writable = parent.parent / "writable"
    target.rename(writable)
    target.mkdir()
    script = (f"mount --bind {parent} {parent} && mount -o remount,bind,ro {parent} && "
              f"mount --bind {writable} {target} && exec {sys.executable} -c \"$0\"")
    try:
        return subprocess.run(["unshare", "--mount", "sh", "-c", script, code],
                              capture_output=True, text=True, timeout=300)
    finally:
        target.rmdir()
        writable.rename(target)


@pytest.mark.skipif(sys.platform != "linux", reason="POSIX permissions and Linux mounts")
def test_a_model_saves_into_a_writable_folder_whose_parent_is_read_only(saved, tmp_path):
    """The staging folder goes inside the model folder when its parent is read-only."""
    target = tmp_path / "models" / "vae"
    shutil.copytree(saved, target)
    done = save_beside_a_read_only_parent(target, (
        "from lightning_vae import VAE\n"
        "VAE(arch='mlp', image_shape=(1, 16, 16), latent_dim=5, "
        f"arch_options={{'hidden_dims': [16]}}).save_pretrained({str(target)!r})"))
    if "unshare failed" in done.stderr or "mount:" in done.stderr:
        pytest.skip(f"no mount namespace for the read-only parent: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert VAE.from_pretrained(target).latent_dim == 5
    assert sorted(p.name for p in target.iterdir()) == sorted(MODEL_FILES)
    assert [p.name for p in target.parent.iterdir()] == ["vae"]


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


class HubStandIn(BaseHTTPRequestHandler):
    """Answers every request as ``answer`` says: (status, headers, body bytes sent); a
    Content-Length header larger than the body makes a download that breaks off."""

    answer: tuple[int, dict[str, str], bytes] = (500, {}, b"")
    protocol_version = "HTTP/1.1"

    def do_HEAD(self) -> None:
        status, headers, _ = self.answer
        self.send_response(status)
        for name, value in {"Content-Length": "0", **headers, "Connection": "close"}.items():
            self.send_header(name, value)
        self.end_headers()

    def do_GET(self) -> None:
        self.do_HEAD()
        self.wfile.write(self.answer[2])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hub_server(monkeypatch: pytest.MonkeyPatch) -> type[HubStandIn]:
    """A real HTTP server on 127.0.0.1 in the Hub's place, reached as HF_ENDPOINT would reach
    it (huggingface_hub reads HF_ENDPOINT at import, into the constants set here). Set the
    returned class's ``answer``."""
    handler = type("Answers", (HubStandIn,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    yield handler
    server.shutdown()


@pytest.mark.parametrize("status", [401, 404])
def test_a_repo_the_hub_does_not_know_says_so_and_how_to_get_access(status, hub_server,
                                                                     tmp_path):
    hub_server.answer = (status, {"X-Error-Code": "RepoNotFound"}, b"")
    with pytest.raises(FileNotFoundError, match=re.escape(
            "no folder 'someuser/absent' here, and Hub repo 'someuser/absent' (revision main) "
            "was not found on the Hub or is not accessible") + ".*hf auth login"):
        VAE.from_pretrained("someuser/absent", cache_dir=tmp_path)


def test_a_failing_hub_is_not_blamed_on_offline_mode_when_it_is_off(hub_server, tmp_path):
    hub_server.answer = (400, {}, b"")  # a 5xx would be retried for some 20 s
    with pytest.raises(FileNotFoundError, match="check the connection to the Hub") as error:
        VAE.from_pretrained("someuser/some-vae", cache_dir=tmp_path)
    assert "HF_HUB_OFFLINE" not in str(error.value)


@pytest.mark.slow  # huggingface_hub retries the broken download for some 15 s
def test_a_download_that_breaks_off_names_the_file_and_the_cached_model_still_loads(
        hub_server, saved, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    repo = write_hub_cache(saved, cache, "someuser/some-vae", COMMIT).parent.parent
    before = folder_bytes(repo)
    config = (saved / "config.json").read_bytes()
    hub_server.answer = (200, {"X-Repo-Commit": COMMIT,
                               "ETag": f'"{hashlib.sha256(config).hexdigest()}"',
                               "Content-Length": str(len(config))}, config[:10])
    with pytest.raises(OSError, match=re.escape(
            "downloading config.json of Hub repo 'someuser/some-vae' (revision main) failed (")
            + ".*files already in the cache are kept: retry"):
        VAE.from_pretrained("someuser/some-vae", cache_dir=cache, force_download=True)
    assert folder_bytes(repo) == before
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert VAE.from_pretrained("someuser/some-vae", cache_dir=cache).latent_dim == 3


def test_a_repo_missing_from_the_cache_with_local_files_only_says_to_leave_it_out(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"leave out local_files_only=True to download it"):
        VAE.from_pretrained("someuser/absent", cache_dir=tmp_path, local_files_only=True)


def test_token_true_without_a_token_is_huggingface_hubs_own_error_not_a_download_failure(
        hub_server, no_token, tmp_path):
    with pytest.raises(LocalTokenNotFoundError):
        VAE.from_pretrained("someuser/private-vae", cache_dir=tmp_path, token=True)


def test_an_override_that_does_not_build_a_model_is_named_as_an_override(saved):
    with pytest.raises(ValueError, match=re.escape(
            f"{saved}: config.json with the overrides {{'lr': -1}} does not build a model: lr")):
        lightning_vae.from_pretrained(saved, lr=-1)


def test_a_name_that_is_neither_a_folder_nor_a_repo_id_says_both(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no model folder at 'my model', and it is not a "
                       r"Hub repo id \(user/name\) either"):
        VAE.from_pretrained("my model")


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


def test_weights_damaged_into_nan_are_refused_naming_the_file(saved):
    """safetensors keeps no checksum: bytes overwritten past the header load as numbers."""
    weights = saved / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = b"\xff" * 64  # NaN as float32
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=re.escape(f"{weights} (of {saved}) holds NaN or infinite "
                                                   "weights") + ".*force_download=True"):
        VAE.from_pretrained(saved)


def test_the_package_level_from_pretrained_takes_config_overrides(saved):
    assert lightning_vae.from_pretrained(saved, lr=3e-4).hparams.lr == 3e-4


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


def test_save_image_writes_the_array_pillow_reads_back(tmp_path):
    picture = np.arange(12, dtype=np.uint8).reshape(3, 4)
    with Image.open(save_image(picture, tmp_path / "p.png")) as image:
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
        small_vae().push_to_hub("someuser/other")
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
    assert VAE.from_pretrained(tmp_path / "hub").latent_dim == 3
