"""The model zoo: pretrained VAEs installed with the package and loaded by name, offline.

The lookup, the listing and the scripts are tested on a tiny zoo written into a temporary
folder; the real zoo (lightning_vae/hub/zoo_models) is tested for loading, for its cards,
against its test sets, and inside a wheel installed into a fresh environment.
"""

import importlib
import json
import math
import os
import re
import runpy
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
import yaml
from hub_cache import COMMIT, MODEL_FILES, folder_bytes, write_hub_cache
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file

import lightning_vae
from lightning_vae import VAE, VAEModel
from lightning_vae.cli import main
from lightning_vae.data import DSpritesDataModule
from lightning_vae.data.dsprites_render import latent_classes, render_images
from lightning_vae.hub import zoo
from lightning_vae.hub.card import DISENTANGLEMENT_SCORES
from lightning_vae.hub.format import LEGACY_TRAINING_KEYS, VERSION_KEY
from lightning_vae.hub.zoo import ZOO, ZooModel, bundled_folder, card_numbers
from lightning_vae.objectives import importance_weighted_bound

ROOT = Path(__file__).resolve().parents[2]
DATA_FIXTURES = {"mnist": "shared_mnist_dir", "fashion_mnist": "system_fashion_mnist_dir"}
"""The conftest fixture giving each zoo data set's real files (it skips when they are absent)."""
SUBSET_SIZE = 500
IW_DECODES = 10_000
"""Decoder passes the card check spends on the importance-weighted bound: a card's k of 1000
(the GPU-built models) re-evaluates it on 10 images, k = 20 on all 500."""
TOLERANCE_SE = 4
"""Card numbers must lie within 4 standard errors of the subset's: a correct card fails with
probability below 1e-4."""
LIKELIHOOD_MODELS = [model for model in ZOO if model.iw_samples]
"""The zoo models whose cards report a log-likelihood (all but the dSprites one)."""
[DSPRITES] = [model for model in ZOO if model.disentanglement]
SCORE_TOLERANCE = 0.01
"""How far a disentanglement score recomputed from the bundled weights may lie from its card's.
The scores are deterministic functions of the test split's posterior means (their random draws
seeded, after putting the examples in a canonical order), so only floating-point rounding in the
encoder (another thread count, another machine's kernels) can move a code across one of the
20 bin edges of MIG and SAP or swap a near-tie in a FactorVAE vote, each moving a score by about
1/10 000 (one example, one vote of 5000); the card rounds to 4 decimals. 0.01 leaves a hundred
such flips and still fails a model whose weights or test images are not the card's (the scores
of the study's runs differ by 0.03 and more)."""
SCORE_BATCH = 500
"""Test images encoded at once when the dSprites model's scores are recomputed."""


def write_model(folder: Path, latent_dim: int, **card) -> VAEModel:
    """A small 8x8 MLP VAE saved as a complete model folder with ``card`` facts."""
    torch.manual_seed(latent_dim)
    model = VAEModel(arch="mlp", image_shape=(1, 8, 8), latent_dim=latent_dim,
                     arch_options={"hidden_dims": [16]})
    model.save_pretrained(folder, model_card_kwargs=card)
    return model


def same_weights(a: VAEModel, b: VAEModel) -> bool:
    state = b.state_dict()
    return a.state_dict().keys() == state.keys() and all(
        torch.equal(value, state[name]) for name, value in a.state_dict().items())


def recipe(model: ZooModel) -> dict:
    return yaml.safe_load((ROOT / model.recipe).read_text())


def training_settings(folder: Path) -> dict:
    """The settings a zoo model was trained with: its card's ``training`` metadata, or for a
    folder written by 0.1.0 (which kept them in config.json) config.json's."""
    training = ModelCard.load(folder / "README.md").data.get("training")
    if training is not None:
        return training
    config = json.loads((folder / "config.json").read_text())
    assert config[VERSION_KEY].startswith("0.1."), "a 0.2 card records the training settings"
    return {name: config[name] for name in LEGACY_TRAINING_KEYS if name in config}


@pytest.fixture
def tiny_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Every zoo name installed as a tiny model in a temporary zoo root; returns name → its
    latent size (2, 3, 4, ...), which tells the copies apart. Their cards state β = 1, 2, 3, ..."""
    monkeypatch.setattr(zoo, "ZOO_ROOT", tmp_path / "zoo")
    latents = {}
    for i, model in enumerate(ZOO):
        latents[model.name] = 2 + i
        likelihood = {"test_log_likelihood": -95.5 - i} if model.iw_samples else {}
        write_model(model.folder, 2 + i, repo_id=model.name, dataset="mnist",
                    training={"beta": 1.0 + i}, test_elbo=-100.0 - i,
                    log_likelihood_samples=model.iw_samples, **likelihood)
    return latents


# --- the lookup, on a tiny zoo -----------------------------------------------------------------


def test_a_zoo_name_loads_the_installed_copy_offline_through_both_entry_points(tiny_zoo,
                                                                               offline):
    for model in ZOO:
        to_fine_tune = VAE.from_pretrained(model.name).model
        by_function = lightning_vae.from_pretrained(model.name)
        assert to_fine_tune.latent_dim == by_function.latent_dim == tiny_zoo[model.name]
        assert same_weights(by_function, VAEModel.from_pretrained(model.folder))
        assert same_weights(to_fine_tune, by_function)


def test_revision_asks_for_the_hub_copy_of_a_zoo_name(tiny_zoo, offline, tmp_path):
    name = ZOO[0].name
    write_model(tmp_path / "hub-copy", latent_dim=7)
    write_hub_cache(tmp_path / "hub-copy", tmp_path / "cache", name, COMMIT)
    bundled = VAEModel.from_pretrained(name, cache_dir=tmp_path / "cache")
    assert bundled.latent_dim == tiny_zoo[name]
    for revision in ("main", COMMIT):
        hub = lightning_vae.from_pretrained(name, cache_dir=tmp_path / "cache", revision=revision)
        assert hub.latent_dim == 7
    assert VAE.from_pretrained(name, cache_dir=tmp_path / "cache",
                               revision=COMMIT).model.latent_dim == 7


def test_force_download_asks_the_hub_and_does_not_fall_back_to_the_bundled_copy(tiny_zoo,
                                                                                 offline):
    with pytest.raises(ValueError, match=r"force_download=True.*offline"):
        VAEModel.from_pretrained(ZOO[0].name, force_download=True)


def test_a_folder_at_the_path_of_a_zoo_name_wins(tiny_zoo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_model(tmp_path / ZOO[0].name, latent_dim=9)
    assert bundled_folder(ZOO[0].name) is None
    assert VAEModel.from_pretrained(ZOO[0].name).latent_dim == 9


def test_other_repo_ids_and_uninstalled_zoo_names_go_to_the_hub(tmp_path, monkeypatch, offline):
    monkeypatch.setattr(zoo, "ZOO_ROOT", tmp_path / "empty")
    assert zoo.installed() == []
    for name in (ZOO[0].name, "someuser/mnist-vae"):
        assert bundled_folder(name) is None
        with pytest.raises(FileNotFoundError, match=re.escape(f"Hub repo {name!r}")
                           + ".*not in the Hugging Face cache"):
            VAEModel.from_pretrained(name, cache_dir=tmp_path / "cache")


def test_the_sample_verb_takes_a_zoo_name(tiny_zoo, offline, tmp_path):
    main(["sample", ZOO[0].name, "-n", "4", "--out", str(tmp_path / "samples.png")])
    with Image.open(tmp_path / "samples.png") as picture:
        assert picture.size == (2 + 4 * 10, 2 + 10)  # four 8x8 samples in one row, padded


def test_a_zoo_folder_without_config_json_is_not_installed(tiny_zoo):
    (ZOO[1].folder / "config.json").unlink()
    assert zoo.installed() == [ZOO[0], *ZOO[2:]]
    assert bundled_folder(ZOO[1].name) is None


# --- the listing --------------------------------------------------------------------------------


def test_zoo_verb_lists_name_data_set_beta_latent_size_test_nll_and_size(tiny_zoo, capsys):
    main(["zoo"])
    header, *rows = capsys.readouterr().out.splitlines()
    assert re.split(r"\s{2,}", header) == ["name", "data set", "β", "latent",
                                           "test NLL (nats)", "size"]
    assert len(rows) == len(ZOO)
    for i, (model, row) in enumerate(zip(ZOO, rows, strict=True)):
        megabytes = sum(p.stat().st_size for p in model.folder.iterdir()) / 1e6
        nll = f"{95.5 + i:.2f} (k={model.iw_samples})" if model.iw_samples else "not evaluated"
        assert re.split(r"\s{2,}", row) == [
            model.name, "mnist", str(1 + i), str(tiny_zoo[model.name]), nll,
            f"{megabytes:.1f} MB"]


def test_zoo_verb_says_a_beta_the_card_does_not_record_is_not_recorded(tiny_zoo, capsys):
    write_model(ZOO[0].folder, latent_dim=2, dataset="mnist")
    main(["zoo"])
    row = capsys.readouterr().out.splitlines()[1]
    assert re.split(r"\s{2,}", row)[:4] == [ZOO[0].name, "mnist", "not recorded", "2"]


def test_zoo_verb_says_how_to_build_the_zoo_when_none_is_installed(tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.setattr(zoo, "ZOO_ROOT", tmp_path / "empty")
    main(["zoo"])
    assert "no zoo models are installed" in capsys.readouterr().out


# --- publishing ---------------------------------------------------------------------------------


def publish(argv: list[str]) -> list[str]:
    return runpy.run_path(str(ROOT / "scripts" / "publish_zoo.py"))["main"](argv)


def test_publish_pushes_every_zoo_folder_unchanged_to_the_repo_of_its_name(
        tiny_zoo, hub_api, token):
    urls = publish(["--private"])
    assert urls == [f"https://huggingface.co/{m.name}/commit/{COMMIT}" for m in ZOO]
    assert hub_api.created == [{"repo_id": m.name, "private": True, "token": token}
                               for m in ZOO]
    for model, upload in zip(ZOO, hub_api.uploads, strict=True):
        assert upload["repo_id"] == model.name and set(upload["files"]) == MODEL_FILES
        assert upload["files"] == folder_bytes(model.folder)


def test_publish_without_credentials_uploads_nothing(tiny_zoo, hub_api, no_token):
    with pytest.raises(huggingface_hub.errors.LocalTokenNotFoundError, match="HF_TOKEN"):
        publish([])
    assert hub_api.created == [] and hub_api.uploads == []


# --- building -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_build_fits_tests_and_exports_with_the_cli_and_records_it_in_the_card(
        tiny_mnist_dir, tmp_path):
    """The build script on a tiny MNIST, with the quick trial its help gives: the test
    command's numbers reach the card unedited."""
    model = ZOO[0]
    trial = runpy.run_path(str(ROOT / "scripts" / "build_zoo.py"))["QUICK_TRIAL"]
    extra = f"{trial} --data.init_args.val_size 64 --trainer.accelerator cpu"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_zoo.py"),
                    "--mnist-dir", str(tiny_mnist_dir), "--only", model.name,
                    "--work", str(tmp_path / "work"), "--zoo-root", str(tmp_path / "zoo"),
                    f"--extra-args={extra}"], check=True, capture_output=True, umask=0o022)
    folder = tmp_path / "zoo" / model.folder.name
    assert {p.name for p in folder.iterdir()} == MODEL_FILES
    assert {p.stat().st_mode & 0o777 for p in folder.iterdir()} == {0o644}  # readable by all
    run = tmp_path / "work" / model.folder.name
    checkpoint = run / "fit" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    module = VAE.from_pretrained(folder)
    assert module.state_dict().keys() == state.keys()
    assert all(torch.equal(value, state[name]) for name, value in module.state_dict().items())
    metrics = (run / "test" / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    names, values = (line.split(",") for line in metrics.splitlines()[:2])
    logged = dict(zip(names, values, strict=True))
    numbers = card_numbers(folder)
    assert numbers.dataset == "mnist"
    assert numbers.test_elbo == round(float(logged["test/elbo"]), 4)
    assert numbers.test_log_likelihood == round(-float(logged["test/nll_iw"]), 4)
    text = (folder / "README.md").read_text()
    assert f"lightning-vae fit --config {model.recipe} {' '.join(model.overrides)}" in text
    assert f"--model.iw_samples {model.iw_samples}" in text and extra in text
    assert f"lightning-vae test --config {model.recipe}" in text
    assert f"lightning-vae export {checkpoint}" in text
    assert "Hardware: " in text and "| total |" in text and "on all 64 test images" in text


# --- the real zoo -------------------------------------------------------------------------------


def test_the_zoo_holds_mnist_vaes_a_fashion_mnist_vae_and_a_dsprites_beta_tcvae():
    assert [m.recipe for m in ZOO] == ["recipes/mnist_vae.yaml", "recipes/mnist_beta_vae.yaml",
                                       "recipes/fashion_mnist_vae.yaml", "recipes/mnist_hvae.yaml",
                                       "recipes/dsprites_tcvae.yaml"]
    for model in ZOO:
        assert {p.name for p in model.folder.iterdir()} == MODEL_FILES, model.name
    assert zoo.installed() == list(ZOO)


@pytest.mark.parametrize("model", ZOO, ids=lambda m: m.name)
def test_zoo_model_loads_offline_by_name_and_samples_and_reconstructs(model, offline):
    to_fine_tune = VAE.from_pretrained(model.name)
    by_function = lightning_vae.from_pretrained(model.name)
    assert same_weights(to_fine_tune.model, by_function) and not by_function.training
    samples = by_function.sample(6, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (6, *by_function.image_shape) and samples.dtype == torch.float32
    assert samples.min() >= 0 and samples.max() <= 1 and samples.std() > 0.05
    reconstructions = by_function.reconstruct(samples)
    assert reconstructions.shape == samples.shape
    assert reconstructions.min() >= 0 and reconstructions.max() <= 1


def override(model: ZooModel, option: str) -> str | None:
    """The value the zoo entry gives ``option`` on the command line (None when it gives none)."""
    arguments = [*model.overrides, *model.data_overrides]
    return arguments[arguments.index(option) + 1] if option in arguments else None


def data_options(model: ZooModel) -> dict:
    """The datamodule options a zoo model was trained and tested with: the recipe's, with the
    entry's data overrides."""
    options = dict(recipe(model)["data"].get("init_args", {}))
    for flag, value in zip(model.data_overrides[::2], model.data_overrides[1::2], strict=True):
        options[flag.removeprefix("--data.init_args.")] = yaml.safe_load(value)
    return options


def datamodule_class(model: ZooModel) -> type:
    module, _, name = recipe(model)["data"]["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("model", ZOO, ids=lambda m: m.name)
def test_zoo_model_is_its_recipes_model(model):
    config = VAEModel.from_pretrained(model.folder).config
    wanted = recipe(model)["model"]
    for key in ("arch", "arch_options", "latent_dim", "likelihood"):
        given = override(model, f"--model.{key}")
        assert config[key] == (wanted[key] if given is None else yaml.safe_load(given)), key
    data = datamodule_class(model)(**data_options(model))
    assert config["preprocessing"] == data.preprocessing
    assert tuple(config["image_shape"]) == data.image_shape
    training = training_settings(model.folder)
    beta = float(override(model, "--model.beta") or wanted["beta"])
    assert training["beta"] == card_numbers(model.folder).beta == beta
    assert training["lr"] == wanted["lr"]
    assert training.get("objective", "elbo") == wanted.get("objective", "elbo")
    assert training["iw_samples"] == model.iw_samples
    if "--model.beta_schedule" in model.overrides:
        given = model.overrides[model.overrides.index("--model.beta_schedule") + 1]
        assert training["beta_schedule"] == json.loads(given)


@pytest.mark.parametrize("model", ZOO, ids=lambda m: m.name)
def test_zoo_model_saved_again_holds_only_its_architecture_in_config_json(model, tmp_path):
    """Whatever its config.json held (0.1.0 wrote the training settings there too), the loaded
    model's own config.json holds no optimizer, learning-rate, compile or evaluation key."""
    loaded = VAEModel.from_pretrained(model.folder)
    assert isinstance(loaded, VAEModel)  # the class of its architecture (HierarchicalVAE, ...)
    loaded.save_pretrained(tmp_path / "again")
    config = json.loads((tmp_path / "again" / "config.json").read_text())
    assert set(config) == {"arch", "image_shape", "latent_dim", "arch_options", "likelihood",
                           "likelihood_options", "prior", "preprocessing", VERSION_KEY}
    assert config[VERSION_KEY] == lightning_vae.__version__
    assert same_weights(VAEModel.from_pretrained(tmp_path / "again"), loaded)


@pytest.mark.parametrize("model", ZOO, ids=lambda m: m.name)
def test_zoo_card_states_its_numbers_and_how_and_where_it_was_made(model):
    card = ModelCard.load(model.folder / "README.md")
    numbers = card_numbers(model.folder)
    assert numbers.dataset == datamodule_class(model).dataset_name
    assert f'lightning_vae.from_pretrained("{model.name}")' in card.text
    fit_line = next(line for line in card.text.splitlines() if "lightning-vae fit" in line)
    assert f"--config {model.recipe} {' '.join(model.overrides)}" in fit_line.replace("'", "")
    for text in ("lightning-vae test --config", "lightning-vae export", "Hardware: ",
                 "| fit |", "| test |", "| total |", "on all 10000 test images"):
        assert text in card.text, text
    if model.iw_samples:
        assert numbers.test_elbo < numbers.test_log_likelihood < 0
        assert f"(importance-weighted bound, {model.iw_samples} samples per image)" in card.text
        assert f"k={model.iw_samples} samples per image" in card.text
    else:
        assert numbers.test_elbo < 0 and numbers.test_log_likelihood is None
        assert "Test log-likelihood" not in card.text
        assert "No log-likelihood was computed (`--model.iw_samples 0`)" in " ".join(
            card.text.split())
    if model.disentanglement:
        assert set(numbers.scores) == {score.metric for score in DISENTANGLEMENT_SCORES}
        assert all(0 <= value <= 1 for value in numbers.scores.values())
        assert "## Disentanglement" in card.text and "(10000 images)" in card.text
        for score in DISENTANGLEMENT_SCORES:
            assert f"{score.option} {numbers.scores[score.metric]:.4f}" in card.text
    else:
        assert numbers.scores == {}
    if data_options(model).get("source") == "rendered":
        assert "re-rendering of the dSprites factor grid" in card.text
        assert "not DeepMind's original pixels" in card.text


def test_the_results_document_states_each_zoo_models_card_numbers():
    section = (ROOT / "docs" / "results.md").read_text().split("## Model zoo", 1)[1]
    for model in ZOO:
        numbers = card_numbers(model.folder)
        [row] = [line for line in section.splitlines() if line.startswith(f"| `{model.name}`")]
        cells = [cell.strip() for cell in row.split("|")]
        assert f"{numbers.test_elbo:.2f}" in cells
        if model.iw_samples:
            assert f"{-numbers.test_log_likelihood:.2f} (k={model.iw_samples})" in cells
        else:
            assert "not evaluated" in cells
        if model.disentanglement:
            assert " / ".join(f"{numbers.scores[score.metric]:.3f}"
                              for score in DISENTANGLEMENT_SCORES) in cells


def test_zoo_models_are_a_few_megabytes_each():
    """(The wheel that holds them all is checked to stay under 32 MB, a third of PyPI's default
    limit on a file.) The hierarchical VAE's 2.8 M weights are the largest, 11.2 MB."""
    sizes = {m.name: (m.folder / "model.safetensors").stat().st_size for m in ZOO}
    assert max(sizes.values()) < 12e6, sizes
    for model in ZOO:
        assert all(t.dtype == torch.float32 for t in
                   load_file(model.folder / "model.safetensors").values())


def random_test_images(model: ZooModel, data_dir: Path) -> tuple[torch.Tensor, int]:
    """SUBSET_SIZE test images drawn at random (seed 0) from the recipe's test split, prepared
    as for training (binarized or not), and the size of the whole split."""
    data = recipe(model)["data"]
    module, _, name = data["class_path"].rpartition(".")
    datamodule = getattr(importlib.import_module(module), name)(
        **(data["init_args"] | {"data_dir": str(data_dir), "download": False,
                                "eval_batch_size": 10_000}))
    datamodule.setup("test")
    images = torch.cat([batch[0] for batch in datamodule.test_dataloader()])
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    return images[pick[:SUBSET_SIZE]], len(images)


def assert_within_standard_errors(values: torch.Tensor, card_value: float, n_all: int) -> None:
    """The subset mean and the card's whole-split mean agree within TOLERANCE_SE standard
    errors of their difference, s·√(1/n + 1/N) (s: the per-image standard deviation)."""
    se = values.std().item() * math.sqrt(1 / len(values) + 1 / n_all)
    assert abs(values.mean().item() - card_value) < TOLERANCE_SE * se, (
        f"subset mean {values.mean().item():.2f}, card {card_value:.2f}, standard error "
        f"{se:.2f} nats")


@pytest.mark.slow
@pytest.mark.parametrize("model", LIKELIHOOD_MODELS, ids=lambda m: m.name)
def test_zoo_model_matches_its_card_on_a_random_test_subset(model, request):
    """ELBO of 500 random test images, and the importance-weighted log-likelihood (the card's
    k) of as many of them as IW_DECODES decoder passes allow, agree with the card's
    whole-test-split numbers within 4 standard errors. (The dSprites model, which reports no
    log-likelihood, is checked on its whole test split below.)"""
    numbers = card_numbers(model.folder)
    data_dir = request.getfixturevalue(DATA_FIXTURES[numbers.dataset])
    images, n_all = random_test_images(model, data_dir)
    vae = VAEModel.from_pretrained(model.folder)
    with torch.no_grad():
        elbo = vae.elbo(images, generator=torch.Generator().manual_seed(0))["elbo"]
        iw_images = images[:max(1, IW_DECODES // model.iw_samples)]
        log_px = importance_weighted_bound(vae, iw_images, model.iw_samples, chunk_size=20,
                                           generator=torch.Generator().manual_seed(1))
    assert log_px.mean() > elbo[:len(iw_images)].mean()
    assert_within_standard_errors(elbo, numbers.test_elbo, n_all)
    assert_within_standard_errors(log_px, numbers.test_log_likelihood, n_all)


def rendered_test_split(options: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split of ``DSpritesDataModule(**options, source="rendered")`` as its test loader
    gives it, images (N, 1, 64, 64) of 0/1 and factor classes (N, 5), rendered alone: the
    datamodule's own split of its grid indices, without the 3 GB grid it would read them from."""
    datamodule = DSpritesDataModule(**(options | {"source": "rendered"}))
    indices = datamodule.indices
    rows = np.sort(datamodule._split_order(len(indices)).numpy()[:datamodule.test_size])
    images = torch.from_numpy(render_images(indices[rows])).unsqueeze(1).float()
    return images, torch.from_numpy(latent_classes(indices[rows])[:, 1:])


def test_the_rendered_test_split_is_the_datamodules(tmp_path):
    options = {"size": 3000, "val_size": 200, "test_size": 500, "eval_batch_size": 128}
    datamodule = DSpritesDataModule(tmp_path, source="rendered", **options)
    datamodule.prepare_data()
    datamodule.setup("test")
    batches = list(datamodule.test_dataloader())
    images, factors = rendered_test_split(options)
    assert torch.equal(torch.cat([batch[0] for batch in batches]), images)
    assert torch.equal(torch.cat([batch[1] for batch in batches]), factors)


@pytest.mark.slow
def test_the_dsprites_model_has_its_cards_scores_and_elbo_on_its_test_split(offline):
    """The bundled β-TCVAE, loaded by name, on the 10 000 test images it was tested on (the
    re-rendering is deterministic, so they are rendered here alone): its four disentanglement
    scores, computed by the training module's own metrics from the posterior means in the test's
    order, match the card within SCORE_TOLERANCE, and its ELBO (one posterior sample per image)
    the card's within 4 standard errors. Batches of SCORE_BATCH images, not the test's 64, take a
    quarter of the time on 2 cores; the scores see all codes at once, so only the encoder's
    rounding could depend on the batching."""
    numbers = card_numbers(DSPRITES.folder)
    module = VAE.from_pretrained(DSPRITES.name)
    images, factors = rendered_test_split(data_options(DSPRITES))
    elbos = []
    with torch.no_grad():
        for x, f in zip(images.split(SCORE_BATCH), factors.split(SCORE_BATCH), strict=True):
            posterior = module.model.encode(x)
            for metric in module.test_disentanglement.values():
                metric.update(posterior.mean, f)
            generator = torch.Generator().manual_seed(len(elbos))
            elbos.append(module.model.elbo(x, generator=generator)["elbo"])
    for name, metric in module.test_disentanglement.items():
        assert float(metric.compute()) == pytest.approx(numbers.scores[name],
                                                        abs=SCORE_TOLERANCE), name
    assert_within_standard_errors(torch.cat(elbos), numbers.test_elbo, len(images))


# --- the wheel ----------------------------------------------------------------------------------


def repository_files() -> list[str]:
    """The files and links a clone of the repository holds: tracked, or new and not ignored."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], cwd=ROOT, capture_output=True, check=True)
    return [name for name in listing.stdout.decode().split("\0")
            if name and ((ROOT / name).is_file() or (ROOT / name).is_symlink())]


LOAD_BY_NAME = """
import sys
import lightning_vae
print(lightning_vae.__file__)
for name in sys.argv[1:]:
    model = lightning_vae.from_pretrained(name)
    samples = model.sample(2)
    print(name, tuple(samples.shape), 0 <= float(samples.min()) <= float(samples.max()) <= 1)
"""


@pytest.mark.slow
def test_a_wheel_of_the_repository_holds_the_zoo_and_loads_it_offline_in_a_fresh_venv(
        tmp_path):
    source = tmp_path / "source"
    for name in repository_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name, follow_symlinks=False)
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    [wheel] = (tmp_path / "dist").glob("*.whl")
    assert wheel.stat().st_size < 32e6
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for model in ZOO:
        assert ({f"lightning_vae/hub/zoo_models/{model.folder.name}/{f}" for f in MODEL_FILES}
                <= names)
    recipes = [path.relative_to(ROOT).as_posix() for path in (ROOT / "recipes").rglob("*.yaml")]
    assert {f"lightning_vae/{recipe}" for recipe in recipes} <= names

    # A fresh venv holding only the wheel; its dependencies come from this environment's
    # site-packages through a .pth file (whose own .pth files, among them the editable
    # install of lightning_vae, are not run).
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True)
    python = fresh / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--no-deps", "--no-index", "--quiet", str(wheel)], check=True)
    purelib = subprocess.run([python, "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"} | {
        "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    names = [model.name for model in ZOO]
    result = subprocess.run([python, "-c", LOAD_BY_NAME, *names], cwd=elsewhere, env=env,
                            capture_output=True, text=True, check=True)
    location, *lines = result.stdout.splitlines()
    assert location == f"{purelib}/lightning_vae/__init__.py"
    shapes = [(2, *VAEModel.from_pretrained(model.folder).image_shape) for model in ZOO]
    assert lines == [f"{name} {shape} True" for name, shape in zip(names, shapes, strict=True)]
    listing = subprocess.run([fresh / "bin" / "lightning-vae", "zoo"], cwd=elsewhere, env=env,
                             capture_output=True, text=True, check=True).stdout
    assert all(name in listing for name in names)

    # The recipes too: `--config recipes/...` works in a folder without them.
    sweep = subprocess.run([fresh / "bin" / "lightning-vae", "recipes", "--path",
                            "sweeps/beta.yaml"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert sweep == f"{purelib}/lightning_vae/recipes/sweeps/beta.yaml"
    config = subprocess.run([fresh / "bin" / "lightning-vae", "fit", "--config",
                             "recipes/mnist_vae.yaml", "--config", "recipes/trainer/gpu_fast.yaml",
                             "--print_config"], cwd=elsewhere, env=env,
                            capture_output=True, text=True, check=True).stdout
    assert yaml.safe_load(config)["model"]["cuda_graph"] is True
