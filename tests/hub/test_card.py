"""The model card (lightning_vae/hub/card.py) and its picture: what a saved model states about
itself, its training and its numbers, parsed as huggingface_hub parses it."""

from pathlib import Path

import numpy as np
import pytest
from hub_models import images, save_small_model, small_model, small_module
from huggingface_hub import ModelCard
from PIL import Image

import lightning_vae


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save_small_model(tmp_path / "model")


def sections(text: str) -> dict[str, str]:
    """The card body's ``## `` sections by title."""
    return {part.split("\n", 1)[0]: part for part in text.split("\n## ")[1:]}


def test_model_card_parses_with_huggingface_hub_and_states_model_training_and_numbers(tmp_path):
    model = small_model("conv")
    training = {"beta": 4.0, "beta_schedule": {"name": "linear", "steps": 100}, "lr": 3e-4}
    model.save_pretrained(tmp_path / "card", model_card_kwargs={
        "repo_id": "someuser/beta-vae", "dataset": "mnist", "data_options": {"binarize": "dynamic"},
        "training": training, "steps": 1200, "val_elbo": -101.234, "test_elbo": -100.5,
        "test_log_likelihood": -95.25, "log_likelihood_samples": 5000, "images": images(8)})
    card = ModelCard.load(tmp_path / "card" / "README.md")
    data = card.data
    assert data.library_name == "lightning-vae" and data.license == "apache-2.0"
    assert {"vae", "beta-vae", "mnist"} <= set(data.tags)
    assert data.datasets == ["mnist"] and data.metrics == ["elbo", "log-likelihood"]
    assert data.training == training
    assert {(r.dataset_split, r.metric_type): r.metric_value for r in data.eval_results} == {
        ("validation", "elbo"): -101.234, ("test", "elbo"): -100.5,
        ("test", "log-likelihood"): -95.25}
    parts = sections(card.text)
    for row in ("| Architecture | `conv` (channels=[4, 8], hidden_dim=16) |",
                "| Latent size | 3 |", "| Prior | standard_normal |"):
        assert row in parts["Model"]
    for row in ("| β | 4.0 |", "| β schedule | linear (steps=100) |",
                '| Training data | mnist (binarize="dynamic") |', "| Training steps | 1200 |",
                "| Validation ELBO | -101.23 nats per example |",
                "| Test ELBO | -100.50 nats per example |",
                "| Test log-likelihood | -95.25 nats per example (importance-weighted bound, "
                "5000 samples per image) |"):
        assert row in parts["Training and evaluation"]
    assert "β" not in parts["Model"]
    assert 'model = lightning_vae.from_pretrained("someuser/beta-vae")' in card.text
    assert "`model` is a `lightning_vae.VAEModel`" in card.text
    assert "![Reconstructions and prior samples](samples.png)" in card.text
    assert "Top two rows: validation images and their reconstructions" in card.text
    for citation in ("@software{lightning_vae", f"version = {{{lightning_vae.__version__}}}",
                     "title = {Auto-Encoding Variational Bayes}", "@inproceedings{higgins2017"):
        assert citation in card.text


def test_a_training_modules_card_states_the_settings_it_trains_with(tmp_path):
    module = small_module(beta=4.0, beta_schedule={"name": "cyclical", "cycle_steps": 50},
                          lr=3e-4, optimizer="adamw")
    module.save_pretrained(tmp_path / "m")
    card = ModelCard.load(tmp_path / "m" / "README.md")
    assert card.data.training == module.training_settings()
    assert card.data.training["lr"] == 3e-4 and card.data.training["optimizer"] == "adamw"
    assert "beta-vae" in card.data.tags and "@inproceedings{higgins2017" in card.text
    assert "| β | 4.0 |" in card.text and "| β schedule | cyclical (cycle_steps=50) |" in card.text


def test_training_settings_given_to_the_card_replace_the_modules(tmp_path):
    module = small_module(beta=4.0)
    module.save_pretrained(tmp_path / "m", model_card_kwargs={"training": {"beta": 1.0}})
    card = ModelCard.load(tmp_path / "m" / "README.md")
    assert card.data.training == {"beta": 1.0} and "beta-vae" not in card.data.tags
    assert "| β | 1.0 |" in card.text and "| β schedule | not recorded |" in card.text


def test_model_card_says_missing_numbers_are_missing(saved):
    card = ModelCard.load(saved / "README.md")
    assert "beta-vae" not in card.data.tags and "vae" in card.data.tags
    assert card.data.datasets is None and card.data.eval_results is None
    assert card.data.get("training") is None
    for row in ("| Training data | not recorded |", "| β | not recorded |",
                "| β schedule | not recorded |", "| Training steps | not recorded |",
                "| Validation ELBO | not recorded |", "| Test ELBO | not evaluated |",
                "| Test log-likelihood | not evaluated |", "reconstructions are not shown"):
        assert row in card.text
    assert "higgins2017" not in card.text and "kingma2014" in card.text


def test_card_picture_is_a_png_of_the_models_reconstructions_and_prior_samples(tmp_path):
    model = small_model()
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
    model = small_model(image_shape=(3, 8, 8))
    model.save_pretrained(tmp_path / "rgb")
    with Image.open(tmp_path / "rgb" / "samples.png") as picture:
        assert picture.mode == "RGB" and picture.size == (2 + 8 * 10, 2 + 2 * 10)


def test_unknown_model_card_kwargs_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown model_card_kwargs \['val_loss'\]"):
        small_model().save_pretrained(tmp_path / "m", model_card_kwargs={"val_loss": 1.0})
