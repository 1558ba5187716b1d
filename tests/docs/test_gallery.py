"""scripts/build_gallery.py: the gallery's pictures and page from the installed zoo, and what it
skips (with the reason printed and on the page) when test images or metrics are not there.
The tests that read real MNIST and Fashion-MNIST are marked slow."""

import runpy
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightning_vae.hub.zoo import card_numbers, installed

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gallery() -> dict:
    """The script's functions, as ``python scripts/build_gallery.py`` runs them."""
    return runpy.run_path(str(ROOT / "scripts" / "build_gallery.py"))


@pytest.mark.slow
def test_draws_every_zoo_model_and_the_rate_distortion_plot(
        gallery: dict, shared_mnist_dir: Path, system_fashion_mnist_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture):
    gallery["main"](["--docs", str(tmp_path), "--images", "64", "--mnist-dir",
                     str(shared_mnist_dir), "--fashion-mnist-dir", str(system_fashion_mnist_dir)])
    printed = capsys.readouterr().out.splitlines()
    # The script reads MNIST and Fashion-MNIST: it draws only the samples of a model of another
    # data set (the dSprites β-TCVAE), whose card is the only one with disentanglement scores.
    datasets = {zoo: card_numbers(zoo.folder).dataset for zoo in installed()}
    unread = [zoo for zoo in installed() if datasets[zoo] not in gallery["DATA_MODULES"]]
    scored = [zoo for zoo in installed() if card_numbers(zoo.folder).scores]
    metric_reason = ("no disentanglement metric is reported for two values of β on one data set"
                     if scored else "no zoo model's card reports a disentanglement metric (mig, "
                     "factorvae_score, dci_d, sap)")
    assert printed[1:] == [
        *(f"skipped {zoo.name}: reconstructions, traversals, interpolations and rate–distortion: "
          f"its card names the data set {datasets[zoo]!r}, which this script cannot read"
          for zoo in unread),
        f"skipped metric-vs-β plots: {metric_reason}"]
    page = (tmp_path / "gallery.md").read_text()
    for zoo in installed():
        assert f"## {zoo.name}\n" in page
        stem = zoo.folder.name
        panels = (("samples",) if zoo in unread else
                  ("samples", "reconstructions", "traversals", "interpolations"))
        for panel in panels:
            assert f"](gallery/{stem}-{panel}.png)" in page
            assert (tmp_path / "gallery" / f"{stem}-{panel}.png").is_file()
    assert "](gallery/rate_distortion.png)" in page
    assert Image.open(tmp_path / "gallery" / "rate_distortion.png").size == (900, 400)
    # MNIST's 28-pixel images, 8 to a row with 2-pixel gaps, enlarged 3 times.
    samples = Image.open(tmp_path / "gallery" / "mnist-vae-samples.png")
    assert samples.size == (3 * (2 + 8 * 30), 3 * (2 + 8 * 30))
    # The traversal panel keeps the 10 dimensions with the largest KL, 9 steps each.
    traversals = Image.open(tmp_path / "gallery" / "mnist-vae-traversals.png")
    assert traversals.size == (3 * (2 + 9 * 30), 3 * (2 + 10 * 30))


@pytest.mark.slow
def test_rate_and_distortion_are_measured_as_the_test_command_measures(
        gallery: dict, shared_mnist_dir: Path, tmp_path: Path):
    zoo = next(zoo for zoo in installed() if zoo.name == "lightning-vae/mnist-vae")
    entry = gallery["draw_model"](zoo, {"mnist": str(shared_mnist_dir)}, tmp_path, 500)
    rate, distortion = entry.rate_distortion
    # The test set's fixed binarization, as `lightning-vae test` sees it: the card's test ELBO
    # (-97.44 over all 10 000 images) within 3 standard errors of 500 images (about 1.1 nats
    # each); images thresholded at 0.5 instead would give about -83.
    assert -(rate + distortion) == pytest.approx(card_numbers(zoo.folder).test_elbo, abs=3.5)
    assert 15 < rate < 35


def test_without_test_images_only_samples_are_drawn_and_the_page_says_why(
        gallery: dict, no_data_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture):
    monkeypatch.chdir(tmp_path)  # the default --mnist-dir "data" is then an empty folder
    monkeypatch.delitem(gallery["DATA_MODULES"], "fashion_mnist")  # not even Debian's copy
    gallery["main"](["--docs", str(tmp_path / "docs")])
    printed = capsys.readouterr().out
    assert ("skipped lightning-vae/mnist-vae: reconstructions, traversals, interpolations and "
            "rate–distortion: no mnist files in data, data/MNIST/raw; pass --mnist-dir DIR"
            in printed)
    assert "skipped rate–distortion plot: no zoo model's test images were found" in printed
    pictures = sorted(path.name for path in (tmp_path / "docs" / "gallery").iterdir())
    assert pictures == sorted(f"{zoo.folder.name}-samples.png" for zoo in installed())
    page = (tmp_path / "docs" / "gallery.md").read_text()
    assert page.count("Not drawn: reconstructions, traversals") == len(installed())
    assert "## Rate–distortion {#rate-distortion}\n\nNot drawn: no zoo model's test images" in page


def test_a_metric_two_cards_report_is_plotted_against_beta(
        gallery: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    scores = {"lightning-vae/mnist-vae": 0.1, "lightning-vae/mnist-beta-vae": 0.3}
    monkeypatch.setitem(gallery["plot_metrics_against_beta"].__globals__, "card_metrics",
                        lambda zoo: {"mig": scores[zoo.name]} if zoo.name in scores else {})
    entries = [gallery["ModelEntry"](zoo, card_numbers(zoo.folder).beta,
                                     card_numbers(zoo.folder).dataset) for zoo in installed()]
    plots, reason = gallery["plot_metrics_against_beta"](entries, tmp_path)
    assert reason is None
    assert plots == {"mig, mnist": tmp_path / "mig-mnist-vs-beta.png"}
    picture = np.asarray(Image.open(plots["mig, mnist"]).convert("L"))
    assert picture.shape == (350, 450) and picture.std() > 10
