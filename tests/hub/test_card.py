"""The model card (lightning_vae/hub/card.py) and its picture: what a saved model states about
itself, its training and its numbers, parsed as huggingface_hub parses it."""

from pathlib import Path

import numpy as np
import pytest
from hub_models import images, save_small_model, small_model, small_module
from huggingface_hub import ModelCard
from PIL import Image

import lightning_vae
from lightning_vae.hub.zoo import card_numbers

SCORES = {"test_mig": 0.1234, "test_factorvae_score": 0.75, "test_dci_d": 0.5, "test_sap": 0.0625}
TCVAE_TRAINING = {"beta": 16.0, "beta_schedule": "constant", "lr": 5e-4,
                  "objective": {"name": "tcvae", "alpha": 1.0, "gamma": 1.0, "sampling": "mss",
                                "dataset_size": 722280}}


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
    assert "## Disentanglement" not in card.text and "| Objective |" not in card.text
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


# --- disentanglement scores (a dSprites model) --------------------------------------------------


def test_a_card_states_the_four_scores_their_meaning_and_split_and_keeps_them_in_metadata(
        tmp_path):
    small_model().save_pretrained(tmp_path / "m", model_card_kwargs={
        "repo_id": "someuser/dsprites-tcvae", "dataset": "dsprites",
        "data_options": {"source": "rendered", "test_size": 10000}, "training": TCVAE_TRAINING,
        "test_elbo": -60.5, "log_likelihood_samples": 0, **SCORES})
    card = ModelCard.load(tmp_path / "m" / "README.md")
    assert {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results} == {
        ("test", "elbo"): -60.5, ("test", "mig"): 0.1234, ("test", "factorvae_score"): 0.75,
        ("test", "dci_d"): 0.5, ("test", "sap"): 0.0625}
    assert card.data.metrics == ["dci_d", "elbo", "factorvae_score", "mig", "sap"]
    assert card_numbers(tmp_path / "m").scores == {"mig": 0.1234, "factorvae_score": 0.75,
                                                    "dci_d": 0.5, "sap": 0.0625}
    section = sections(card.text)["Disentanglement"]
    for row in ("| MIG | 0.123 | mutual information gap (Chen et al. 2018)",
                "| FactorVAE score | 0.750 | Kim & Mnih (2018)",
                "| DCI disentanglement | 0.500 | Eastwood & Williams (2018)",
                "| SAP | 0.062 | Kumar et al. (2018)",
                "posterior means of the test split of dsprites (10000 images)"):
        assert row in section, row
    training = sections(card.text)["Training and evaluation"]
    assert "| Test ELBO | -60.50 nats per example |" in training
    assert "log-likelihood |" not in training  # none computed: no row, not "not evaluated"
    assert ('| Objective | tcvae (alpha=1.0, gamma=1.0, sampling="mss", dataset_size=722280) |'
            in training)


def test_a_beta_tcvae_card_names_its_objective_not_a_beta_vae():
    card = small_model().generate_model_card(dataset="dsprites", training=TCVAE_TRAINING)
    assert "A β-TCVAE (Chen et al., 2018) on dsprites" in card.text
    assert "beta-tcvae" in card.data.tags and "beta-vae" not in card.data.tags
    assert "@inproceedings{chen2018isolating" in card.text and "higgins2017" not in card.text


def test_scores_not_given_are_shown_as_not_evaluated():
    card = small_model().generate_model_card(dataset="dsprites", test_mig=0.3)
    section = sections(card.text)["Disentanglement"]
    assert "| MIG | 0.300 |" in section and "| SAP | not evaluated |" in section
    assert "test split of dsprites against" in section  # no test_size recorded: no count
    assert [r.metric_type for r in card.data.eval_results] == ["mig"]


@pytest.mark.parametrize(("facts", "message"), [
    ({"test_mig": 1.5}, r"test_mig=1.5: the MIG lies in \[0, 1\]; pass the value "
                        r"`lightning-vae test` logged as test/mig"),
    ({"test_sap": -0.1}, r"test_sap=-0.1: the SAP lies in \[0, 1\]"),
    ({"test_log_likelihood": -90.0, "log_likelihood_samples": 0},
     r"test_log_likelihood=-90.0 with log_likelihood_samples=0 \(none computed\): pass the "
     r"number of importance samples"),
], ids=["mig-above-1", "sap-below-0", "log-likelihood-without-samples"])
def test_impossible_card_numbers_are_refused_by_name(facts, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        small_model().save_pretrained(tmp_path / "m", model_card_kwargs=facts)
    assert not (tmp_path / "m").exists()
