"""The saved form of a model (lightning_vae/hub/format.py): save_pretrained / from_pretrained on
local folders, atomic saving, the checks made on loading, and folders written by 0.1.0.

Where the files come from (the hub's cache, the Hub) is tested in test_fetch.py, the model card
in test_card.py, export and push of checkpoints in tests/training/test_export.py.
"""

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
from hub_cache import COMMIT, MODEL_FILES, folder_bytes, write_hub_cache
from hub_models import (
    IMAGE_SHAPE,
    MODEL_ARGUMENTS,
    assert_identical,
    edit_config,
    images,
    model_weights,
    outputs,
    save_small_model,
    small_model,
    small_module,
)
from safetensors.torch import load_file

import lightning_vae
from lightning_vae import VAE, VAEModel, available_architectures
from lightning_vae.hub.format import LEGACY_TRAINING_KEYS, VERSION_KEY

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "v0_1_0"
"""Files written by lightning-vae 0.1.0 (see its README.md)."""


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save_small_model(tmp_path / "model")


# --- saving and loading ----------------------------------------------------------------------


@pytest.mark.parametrize("arch", available_architectures())
def test_save_then_load_gives_identical_outputs_for_every_architecture(tmp_path, arch):
    model = small_model(arch)
    x = images(4)
    model.save_pretrained(tmp_path / arch)
    loaded = VAEModel.from_pretrained(tmp_path / arch)
    assert isinstance(loaded, VAEModel) and not loaded.training
    assert_identical(outputs(loaded, x), outputs(model, x))


def test_the_package_level_from_pretrained_gives_a_vae_model_in_eval_mode(saved):
    """A model to use, not to train: no optimizer, objective nor metric comes with it."""
    loaded = lightning_vae.from_pretrained(saved)
    assert type(loaded) is VAEModel and not loaded.training
    assert loaded.config == small_model().config
    assert_identical(outputs(loaded, images(2)), outputs(small_model(), images(2)))


def test_learned_gaussian_variance_is_saved_with_the_weights(tmp_path):
    model = small_model(likelihood="gaussian", likelihood_options={"learn_sigma": True})
    with torch.no_grad():
        model.likelihood_head.raw_sigma.fill_(-1.5)
    model.save_pretrained(tmp_path / "gaussian")
    loaded = lightning_vae.from_pretrained(tmp_path / "gaussian")
    assert torch.equal(loaded.likelihood_head.sigma, model.likelihood_head.sigma)
    assert_identical(outputs(loaded, images(2)), outputs(model, images(2)))


def test_config_json_holds_the_model_arguments_and_the_package_version(saved):
    config = json.loads((saved / "config.json").read_text())
    arguments = list(inspect.signature(VAEModel).parameters)
    assert set(arguments) == MODEL_ARGUMENTS
    assert set(config) == {*arguments, "lightning_vae_version"}
    assert config["lightning_vae_version"] == lightning_vae.__version__
    assert config["arch"] == "mlp" and config["latent_dim"] == 3
    assert config["image_shape"] == list(IMAGE_SHAPE)
    assert config["arch_options"] == {"hidden_dims": [16]}
    assert config["prior"] == "standard_normal"


def test_a_training_module_saves_its_model_and_no_training_setting_into_config_json(tmp_path):
    """β, the optimizer, the learning rate, compile and evaluation settings are how the weights
    were trained, not the model: the card states them (test_card.py), config.json does not."""
    module = small_module(beta=4.0, lr=3e-4, optimizer="adamw", iw_samples=10,
                          compile_mode="default", channels_last=True)
    module.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert set(config) == {*MODEL_ARGUMENTS, VERSION_KEY}
    assert config == module.model.config | {VERSION_KEY: lightning_vae.__version__}
    loaded = VAEModel.from_pretrained(tmp_path / "m")
    assert_identical(outputs(loaded, images(2)), outputs(module.model, images(2)))


def test_weights_are_stored_as_safetensors_only(saved):
    assert {p.name for p in saved.iterdir()} == MODEL_FILES
    stored = load_file(saved / "model.safetensors")
    assert stored.keys() == small_model().state_dict().keys()


def test_save_into_an_existing_folder_replaces_the_model_and_keeps_other_files(saved):
    (saved / "notes.txt").write_text("mine")
    small_model(latent_dim=5).save_pretrained(saved)
    assert (saved / "notes.txt").read_text() == "mine"
    assert VAEModel.from_pretrained(saved).latent_dim == 5
    assert not [p for p in saved.parent.iterdir() if p.name.endswith(".partial")]


@pytest.mark.skipif(os.name != "posix", reason="file modes and the umask are POSIX's")
@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664)])
def test_saved_files_get_the_mode_the_umask_gives_new_files(tmp_path, mask, mode):
    """safetensors writes its file owner-only (0600) and the save moves files in from a temporary
    folder; a saved folder must still be readable as a shared or served folder is."""
    previous = os.umask(mask)
    try:
        small_model().save_pretrained(tmp_path / "model")
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "model").iterdir()}
    assert modes == dict.fromkeys(MODEL_FILES, mode)


# --- a training module from a saved model ------------------------------------------------------


def test_vae_from_pretrained_builds_a_training_module_with_the_weights_and_given_settings(saved):
    """``VAE.from_pretrained`` is for fine-tuning: the saved model's config and weights, the
    training settings from its arguments (the module's defaults for the others)."""
    module = VAE.from_pretrained(saved, lr=3e-4, beta=2.0)
    assert isinstance(module, VAE)
    assert module.hparams.lr == 3e-4 and module.hparams.beta == 2.0
    assert module.hparams.optimizer == "adam"  # a default
    assert module.model.config == small_model().config
    state = module.model.state_dict()
    assert all(torch.equal(value, state[name])
               for name, value in small_model().state_dict().items())
    assert model_weights(module.state_dict()).keys() == state.keys()


# --- atomic saving ---------------------------------------------------------------------------


def test_a_save_that_fails_leaves_no_folder_and_no_temporary_files(tmp_path):
    parent = tmp_path / "models"
    with pytest.raises(ValueError, match="card images have shape"):
        small_model().save_pretrained(parent / "new",
                                      model_card_kwargs={"images": images(2, (1, 8, 8))})
    assert list(parent.iterdir()) == []


def test_a_save_that_fails_leaves_the_previous_model_byte_identical(saved):
    before = folder_bytes(saved)
    with pytest.raises(ValueError, match="card images have shape"):
        small_model().save_pretrained(saved, model_card_kwargs={"images": images(2, (1, 8, 8))})
    assert folder_bytes(saved) == before
    assert [p.name for p in saved.parent.iterdir()] == ["model"]


def test_saving_over_a_file_is_refused_and_leaves_it(tmp_path):
    (tmp_path / "model").write_text("not a folder")
    with pytest.raises(FileExistsError, match=r"model is a file; a model is saved as a folder"):
        small_model().save_pretrained(tmp_path / "model")
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
        "from lightning_vae import VAEModel\n"
        "VAEModel(arch='mlp', image_shape=(1, 16, 16), latent_dim=5, "
        f"arch_options={{'hidden_dims': [16]}}).save_pretrained({str(target)!r})"))
    if "unshare failed" in done.stderr or "mount:" in done.stderr:
        pytest.skip(f"no mount namespace for the read-only parent: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert VAEModel.from_pretrained(target).latent_dim == 5
    assert sorted(p.name for p in target.iterdir()) == sorted(MODEL_FILES)
    assert [p.name for p in target.parent.iterdir()] == ["vae"]


# --- loading errors name the file at fault and the fix ---------------------------------------


def test_a_folder_without_weights_is_refused(saved):
    (saved / "model.safetensors").unlink()
    expected = re.escape(f"{saved} has no model.safetensors") + ".*export"
    with pytest.raises(FileNotFoundError, match=expected):
        VAEModel.from_pretrained(saved)


def test_a_folder_without_config_is_refused(saved):
    (saved / "config.json").unlink()
    expected = re.escape(f"{saved} has no config.json") + ".*save_pretrained"
    with pytest.raises(FileNotFoundError, match=expected):
        VAEModel.from_pretrained(saved)


def test_a_config_from_a_newer_major_version_is_refused(saved):
    major = int(lightning_vae.__version__.split(".")[0])
    edit_config(saved, lightning_vae_version=f"{major + 1}.0.0")
    expected = f"{saved / 'config.json'} was written by lightning-vae {major + 1}.0.0"
    with pytest.raises(ValueError, match=re.escape(expected) + ".*pip install -U lightning-vae"):
        VAEModel.from_pretrained(saved)


def test_a_config_from_a_newer_minor_version_loads(saved):
    major = int(lightning_vae.__version__.split(".")[0])
    edit_config(saved, lightning_vae_version=f"{major}.999.0")
    assert VAEModel.from_pretrained(saved).latent_dim == 3


def test_a_config_with_options_this_version_does_not_know_is_refused(saved):
    edit_config(saved, decoder_norm="layer")
    with pytest.raises(ValueError, match=r"does not know: \['decoder_norm'\].*upgrade"):
        VAEModel.from_pretrained(saved)


def test_an_unregistered_architecture_is_refused(saved):
    edit_config(saved, arch="resnet9000")
    expected = (f"{saved / 'config.json'} names architecture 'resnet9000', which is not "
                "registered")
    with pytest.raises(ValueError, match=re.escape(expected) + ".*register_architecture"):
        VAEModel.from_pretrained(saved)


def test_weights_whose_shapes_do_not_match_the_config_are_refused(saved):
    edit_config(saved, latent_dim=4)
    with pytest.raises(ValueError, match=r"does not fit the model its config\.json") as error:
        VAEModel.from_pretrained(saved)
    assert str(error.value).startswith(f"{saved / 'model.safetensors'} (of {saved})")
    assert "\n  encoder.1.2.weight: stored (6, 16), config builds (8, 16)\n" in str(error.value)


@pytest.mark.parametrize(("key", "value"), [("latent_dim", "3"), ("image_shape", 16),
                                            ("likelihood_options", "x")])
def test_a_config_value_of_the_wrong_type_is_refused_naming_the_file(saved, key, value):
    """A hand-edited config.json: its TypeError must name the folder, not only the operands."""
    edit_config(saved, **{key: value})
    with pytest.raises(ValueError, match=re.escape(
            f"{saved}: config.json does not build a model") + ".*save the model again"):
        VAEModel.from_pretrained(saved)


def test_weights_damaged_into_nan_are_refused_naming_the_file(saved):
    """safetensors keeps no checksum: bytes overwritten past the header load as numbers."""
    weights = saved / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = b"\xff" * 64  # NaN as float32
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=re.escape(f"{weights} (of {saved}) holds NaN or infinite "
                                                   "weights") + ".*force_download=True"):
        VAEModel.from_pretrained(saved)


def test_the_package_level_from_pretrained_takes_config_overrides(saved):
    binarized = {"binarize": "dynamic", "crop_size": None, "input_size": None}
    loaded = lightning_vae.from_pretrained(saved, preprocessing=binarized)
    assert loaded.config["preprocessing"] == binarized
    assert loaded.preprocessing.binarize == "dynamic"


def test_an_override_that_does_not_build_a_model_is_named_as_an_override(saved):
    with pytest.raises(ValueError, match=re.escape(
            f"{saved}: config.json with the overrides {{'latent_dim': 0}} does not build a "
            "model: latent_dim")):
        lightning_vae.from_pretrained(saved, latent_dim=0)


def test_an_override_that_is_no_constructor_argument_is_refused_naming_it(saved):
    with pytest.raises(TypeError, match=r"unknown arguments \['strict'\].*config\.json.*"
                       r"choose from \[.*'latent_dim'"):
        VAEModel.from_pretrained(saved, strict=False)


def test_a_training_setting_is_no_override_of_a_model(saved):
    """A model to use has no learning rate; VAE.from_pretrained takes one, to fine-tune."""
    with pytest.raises(TypeError, match=r"unknown arguments \['lr'\]"):
        lightning_vae.from_pretrained(saved, lr=3e-4)


# --- a folder written by 0.1.0 ----------------------------------------------------------------


def assert_reproduces_0_1_0_outputs(model: VAEModel) -> None:
    """What 0.1.0 computed with tests/fixtures/v0_1_0/mlp-tiny: reconstructions, KL of the
    posterior and prior samples drawn with torch.Generator().manual_seed(0), up to float32
    rounding (another CPU's kernels differ in the last bits, ~1e-7; a weight loaded wrongly
    moves them by far more)."""
    expected = load_file(FIXTURES / "mlp-tiny-outputs.safetensors")
    assert type(model) is VAEModel and not model.training
    x = expected["x"]
    float32_rounding = {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(model.reconstruct(x), expected["recon"], **float32_rounding)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x).kl(), expected["kl"], **float32_rounding)
    samples = model.sample(2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples, expected["sample"], **float32_rounding)


def test_a_folder_written_by_0_1_0_holds_its_training_settings_in_config_json():
    """The premise of the tests below: the fixture is 0.1.0's format, not 0.2.0's."""
    config = json.loads((FIXTURES / "mlp-tiny" / "config.json").read_text())
    assert config[VERSION_KEY] == "0.1.0"
    assert set(config) == {*MODEL_ARGUMENTS, *LEGACY_TRAINING_KEYS, VERSION_KEY} - {"prior"}


def test_a_folder_written_by_0_1_0_loads_and_reproduces_its_outputs():
    model = lightning_vae.from_pretrained(FIXTURES / "mlp-tiny")
    assert model.config == {
        "arch": "mlp", "image_shape": [1, 28, 28], "latent_dim": 4,
        "arch_options": {"hidden_dims": [16]}, "likelihood": "bernoulli",
        "likelihood_options": None, "prior": "standard_normal",
        "preprocessing": {"binarize": "dynamic", "crop_size": None, "input_size": None}}
    assert_reproduces_0_1_0_outputs(model)


def test_a_repo_written_by_0_1_0_loads_offline_from_the_hub_cache_and_reproduces_its_outputs(
        tmp_path, offline):
    assert os.environ["HF_HUB_OFFLINE"] == "1" and huggingface_hub.constants.is_offline_mode()
    cache = tmp_path / "hf-cache"
    write_hub_cache(FIXTURES / "mlp-tiny", cache, "someuser/mlp-tiny", COMMIT)
    model = lightning_vae.from_pretrained("someuser/mlp-tiny", cache_dir=cache)
    assert_reproduces_0_1_0_outputs(model)
    pinned = lightning_vae.from_pretrained("someuser/mlp-tiny", cache_dir=cache, revision=COMMIT)
    assert_reproduces_0_1_0_outputs(pinned)


def test_a_folder_written_by_0_1_0_saved_again_holds_the_0_2_0_format(tmp_path):
    model = lightning_vae.from_pretrained(FIXTURES / "mlp-tiny")
    model.save_pretrained(tmp_path / "again")
    config = json.loads((tmp_path / "again" / "config.json").read_text())
    assert set(config) == {*MODEL_ARGUMENTS, VERSION_KEY}
    assert config[VERSION_KEY] == lightning_vae.__version__
    assert_reproduces_0_1_0_outputs(lightning_vae.from_pretrained(tmp_path / "again"))


def test_a_folder_written_by_0_1_0_fine_tunes_with_its_weights_and_new_training_settings():
    """0.1.0's training settings in config.json are dropped on loading, not reused."""
    module = VAE.from_pretrained(FIXTURES / "mlp-tiny", lr=3e-4)
    assert module.hparams.lr == 3e-4 and module.hparams.beta == 1.0  # not 0.1.0's β of 2
    assert_reproduces_0_1_0_outputs(module.model.eval())


# --- diffusers' loading arguments --------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, "float16"])
def test_torch_dtype_casts_the_loaded_weights_as_diffusers_does(tmp_path, dtype):
    saved = save_small_model(tmp_path / "model")
    full = lightning_vae.from_pretrained(saved)
    half = lightning_vae.from_pretrained(saved, torch_dtype=dtype)
    expected = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    assert half.dtype == expected
    assert {tensor.dtype for tensor in half.state_dict().values()} == {expected}
    for name, tensor in full.state_dict().items():
        assert torch.equal(half.state_dict()[name], tensor.to(expected))


def test_a_torch_dtype_that_is_not_floating_point_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError, match=r"torch_dtype=torch.int8 is not a floating-point torch "
                       r"dtype; pass one such as torch.float16"):
        lightning_vae.from_pretrained(save_small_model(tmp_path / "m"), torch_dtype=torch.int8)


def test_subfolder_loads_the_model_inside_a_folder_and_a_hub_repo(tmp_path, offline):
    saved = save_small_model(tmp_path / "pipeline" / "vae")
    x = images(3)
    expected = outputs(lightning_vae.from_pretrained(saved), x)
    assert_identical(outputs(lightning_vae.from_pretrained(
        tmp_path / "pipeline", subfolder="vae"), x), expected)
    snapshot = write_hub_cache(saved, tmp_path / "hf-cache", "someuser/pipeline", COMMIT)
    (snapshot / "vae").mkdir()
    for link in [path for path in snapshot.iterdir() if path.is_symlink()]:
        blob = (snapshot / os.readlink(link)).resolve()
        link.unlink()
        (snapshot / "vae" / link.name).symlink_to(os.path.relpath(blob, snapshot / "vae"))
    by_id = lightning_vae.from_pretrained("someuser/pipeline", subfolder="vae",
                                          cache_dir=tmp_path / "hf-cache")
    assert_identical(outputs(by_id, x), expected)
    with pytest.raises(FileNotFoundError, match=r"pipeline has no subfolder 'unet'; its "
                       r"folders: vae$"):
        lightning_vae.from_pretrained(tmp_path / "pipeline", subfolder="unet")
