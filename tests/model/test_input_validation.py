"""The model's boundary (model/validation.py): batches ``elbo`` refuses, sizes a config.json may
not ask for, weights stored as integers or bools."""

import json
import math
import sys

import pytest
import torch
from hub_models import edit_config, save_small_model, small_model
from safetensors.torch import load_file, save_file

from lightning_vae import VAEModel
from lightning_vae.model.validation import MAX_IMAGE_SIDE, MAX_LATENT_DIM, MAX_PARAMETERS


@pytest.mark.parametrize(("value", "message"), [
    (-3.0, r"elbo got values in \[-3, 0\.\d+\], outside \[0, 1\], the support of the Bernoulli"),
    (1.5, r"outside \[0, 1\]"),
    (math.nan, "holding NaN or infinite values"),
    (math.inf, "holding NaN or infinite values"),
])
def test_elbo_refuses_a_batch_outside_the_bernoulli_support_or_not_finite(value, message):
    model = small_model()
    x = torch.rand(4, *model.image_shape)
    x[1, 0, 2, 3] = value
    with pytest.raises(ValueError, match=message):
        model.elbo(x)


def test_validate_inputs_false_skips_the_check():
    model = small_model()
    model.validate_inputs = False
    x = torch.full((2, *model.image_shape), -3.0)
    assert torch.isfinite(model.elbo(x)["elbo"]).all()  # a number, which is why it is on


def test_the_gaussian_likelihood_takes_any_finite_value_but_not_nan():
    model = small_model(likelihood="gaussian")
    x = torch.rand(2, *model.image_shape) * 4 - 2
    assert torch.isfinite(model.elbo(x)["elbo"]).all()
    x[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.elbo(x)


def test_elbo_refuses_a_batch_of_another_shape_naming_preprocess():
    model = small_model()
    with pytest.raises(ValueError, match=r"elbo takes a batch of shape \(B, 1, 16, 16\), got "
                                         r"\(2, 1, 8, 8\); prepare images with model.preprocess"):
        model.elbo(torch.rand(2, 1, 8, 8))


def test_encode_refuses_nan_values():
    model = small_model()
    with pytest.raises(ValueError, match=r"float images must hold values in \[0, 1\]"):
        model.encode(torch.full((1, *model.image_shape), math.nan))


@pytest.mark.parametrize(("changes", "message"), [
    ({"latent_dim": 10**9}, f"latent_dim=1000000000 is past the limit of {MAX_LATENT_DIM}"),
    ({"image_shape": [1, 40000, 40000]},
     f"image_shape height=40000 is past the limit of {MAX_IMAGE_SIDE}"),
    ({"image_shape": [3, 4096, 4096]}, f"past the limit of {MAX_PARAMETERS:,}"),
    ({"arch_options": {"hidden_dims": [1 << 20, 1 << 20]}}, "parameters, past the limit"),
])
def test_a_config_json_asking_for_a_huge_model_is_refused_before_allocating(
        tmp_path, changes, message):
    folder = save_small_model(tmp_path / "model")
    edit_config(folder, **changes)
    with pytest.raises(ValueError, match=message):
        VAEModel.from_pretrained(folder)


@pytest.mark.skipif(sys.getrecursionlimit() > 100_000, reason="needs Python's recursion limit")
def test_a_deeply_nested_config_json_is_refused_in_one_line(tmp_path):
    from lightning_vae.cli import main
    folder = save_small_model(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config)[:-1] + ', "arch_options": '
                                        + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(SystemExit) as stopped:
        main(["sample", str(folder), "-n", "1", "--out", str(tmp_path / "s.png")])
    assert "nests too deeply" in str(stopped.value).splitlines()[0]


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, torch.uint8])
def test_weights_stored_as_integers_or_bools_are_refused(tmp_path, dtype):
    folder = save_small_model(tmp_path / "model")
    weights = load_file(folder / "model.safetensors")
    name = sorted(weights)[0]
    weights[name] = weights[name].to(dtype)
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(ValueError, match=f"stores integer or bool tensors where the model has "
                                         f"floating-point weights: {name}"):
        VAEModel.from_pretrained(folder)
