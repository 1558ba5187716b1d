"""Hostile or mistaken command lines end in one line naming the fault (cli/main.py's contract):
YAML alias bombs, --ckpt_path files of another model, of no dict or of a pickle payload,
devices this machine lacks, sample counts no memory holds, β values that are not numbers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hub_models import save_small_model

from lightning_vae.cli import main
from lightning_vae.cli.sample import MAX_SAMPLES
from lightning_vae.cli.sweep import parse_betas
from lightning_vae.safe_yaml import MAX_YAML_NODES

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "mnist_vae.yaml"


def one_line_exit(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    message = str(stopped.value)
    assert len(message.splitlines()) == 2 and "LIGHTNING_VAE_TRACEBACK" in message
    return message.splitlines()[0]


def alias_bomb(path: Path, levels: int = 9) -> Path:
    """Nine lines whose aliases expand to 9**levels values."""
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_yaml_alias_bomb_in_a_config_stops_at_once_in_one_line(tmp_path):
    line = one_line_exit(["fit", "--config", str(alias_bomb(tmp_path / "bomb.yaml"))])
    assert line.startswith(f"lightning-vae fit: error: a YAML configuration expands to more "
                           f"than {MAX_YAML_NODES:,} values through its aliases")


def test_recipes_with_anchors_still_load(tmp_path):
    """recipes/logging/wandb.yaml and recipes/sweeps/beta.yaml use anchors legitimately."""
    import yaml

    from lightning_vae.safe_yaml import bounded_loader
    load = bounded_loader(yaml.safe_load)
    for recipe in ROOT.glob("recipes/**/*.yaml"):
        assert load(recipe.read_text()) == yaml.safe_load(recipe.read_text())


@pytest.fixture
def ckpt_args(tiny_mnist_dir, tmp_path):
    def args(verb: str, checkpoint: Path) -> list[str]:
        return [verb, "--config", str(RECIPE), "--data.init_args.data_dir", str(tiny_mnist_dir),
                "--data.init_args.download", "false", "--data.init_args.val_size", "64",
                "--trainer.accelerator", "cpu", "--trainer.logger", "false",
                "--trainer.default_root_dir", str(tmp_path / "r"), "--ckpt_path", str(checkpoint)]
    return args


class Payload:
    """A Python object in a checkpoint, as a pickle payload would carry."""


@pytest.mark.parametrize(("content", "message"), [
    ([1, 2, 3], "holds no state_dict: it is not a checkpoint Lightning wrote"),
    ({"state_dict": {}, "x": Payload()}, "holds Python objects that safe (weights_only) "
                                         "loading refuses"),
])
def test_validate_with_a_ckpt_path_that_is_no_checkpoint_says_so_in_one_line(
        ckpt_args, tmp_path, content, message):
    path = tmp_path / "odd.ckpt"
    torch.save(content, path)
    line = one_line_exit(ckpt_args("validate", path))
    assert line.startswith(f"lightning-vae validate: error: {path} {message}")
    if "Python objects" in message:
        assert line.endswith("pass --weights_only false to unpickle it")


def test_test_with_a_checkpoint_whose_weights_have_other_shapes_names_them(ckpt_args, tmp_path):
    """Weights of a 3-dimensional latent under hyperparameters saying 5 (as a checkpoint of
    another model, or an edited one, holds)."""
    main([*ckpt_args("fit", tmp_path / "none.ckpt")[:-2], "--trainer.max_steps", "1",
          "--model.latent_dim", "3", "--model.iw_samples", "0"])
    checkpoint = sorted((tmp_path / "r").rglob("*.ckpt"))[0]
    content = torch.load(checkpoint, weights_only=True)
    content["hyper_parameters"]["latent_dim"] = 5
    other = tmp_path / "other.ckpt"
    torch.save(content, other)
    line = one_line_exit(ckpt_args("test", other))
    assert line.startswith("lightning-vae test: error: the checkpoint's weights do not fit this "
                           "model (model.")
    assert line.endswith("pass the model options it was trained with")


@pytest.mark.parametrize(("device", "message"), [
    ("meta", "--device meta: meta tensors hold no values"),
    ("mps", "--device mps: this torch"),
    ("nonsense", "--device 'nonsense' is not a device"),
])
def test_a_device_this_machine_lacks_is_refused_in_one_line(tmp_path, device, message):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has an MPS device")
    model = save_small_model(tmp_path / "model")
    line = one_line_exit(["sample", str(model), "--device", device,
                          "--out", str(tmp_path / "s.png")])
    assert line.startswith(f"lightning-vae sample: error: {message}")


def test_sample_refuses_more_images_than_a_grid_holds_before_loading(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["sample", str(tmp_path / "absent"), "-n", "10000000"])
    assert (f"argument -n/--num-samples: must be at most {MAX_SAMPLES}, got 10000000"
            in capsys.readouterr().err)


def test_a_seed_past_64_bits_is_refused_in_one_line(tmp_path):
    model = save_small_model(tmp_path / "model")
    line = one_line_exit(["sample", str(model), "--seed", str(2**70),
                          "--out", str(tmp_path / "s.png")])
    assert line.startswith("lightning-vae sample: error:")


@pytest.mark.parametrize("text", ["nan", "inf", "1,nan", "-inf,2"])
def test_sweep_refuses_beta_values_that_are_not_finite_naming_them(text):
    with pytest.raises(ValueError, match=f"--beta '{text}': every β must be a finite number"):
        parse_betas(text)


def test_push_with_a_token_and_no_network_fails_in_one_line(tmp_path):
    """A closed local port as the Hub: the connection is refused at once."""
    model = save_small_model(tmp_path / "model")
    env = os.environ | {"HF_TOKEN": "hf_not_a_real_token", "HF_ENDPOINT": "http://127.0.0.1:9",
                        "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-m", "lightning_vae.cli", "push", str(model),
                           "--repo-id", "someone/model"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("lightning-vae push: error: cannot reach the Hugging Face Hub to "
                               "push to someone/model (ConnectError")
