"""Draw the documentation site's gallery from the installed zoo models: docs/gallery/*.png and
the page docs/gallery.md that shows them.

    python scripts/build_gallery.py --mnist-dir /work/shared/data/mnist \\
        --fashion-mnist-dir /usr/share/datasets/fashion-mnist

For every zoo model: prior samples and, when its data set's test images are found (never
downloaded), the panels :class:`lightning_vae.ImagePanels` draws during training
(reconstructions, latent traversals, interpolations) for the first test images; then a
rate–distortion plot of the models on their test images, and a plot of each disentanglement
metric the zoo's cards report against β. What cannot be drawn (no test images, no such metric on
any card) is skipped with the reason printed and stated on the page. Every draw is seeded, so the
pictures are the same on every run. The test images are those ``lightning-vae test`` evaluates
(binarized data sets: binarized once, with the fixed seed), so each model's rate and distortion
add up to minus its test ELBO on those images.
"""

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import ModelCard

import lightning_vae
from lightning_vae import ImagePanels, VAEModel
from lightning_vae.data import FashionMNISTDataModule, MNISTDataModule
from lightning_vae.hub.zoo import CARD_FILE, ZooModel, card_numbers, installed
from lightning_vae.imaging import make_grid, save_image

ROOT = Path(__file__).resolve().parents[1]
DATA_MODULES = {module.dataset_name: module for module in (MNISTDataModule,
                                                           FashionMNISTDataModule)}
"""Card data set name → the datamodule whose test split the gallery reads."""
DISENTANGLEMENT_METRICS = ("mig", "factorvae_score", "dci_d", "sap")
"""The card metric types plotted against β (MIG, FactorVAE score, DCI disentanglement, SAP)."""
MAX_TRAVERSED = 10
"""Latent dimensions shown in a traversal panel (those with the largest KL)."""
PANEL_TITLES = {
    "samples": "Samples from the prior",
    "reconstructions": "Test images (top) and their reconstructions (bottom)",
    "traversals": (f"Latent traversals: the {MAX_TRAVERSED} dimensions with the largest KL, "
                   "one per row, largest first, swept over [−3, 3] from a test image's code"),
    "interpolations": "Interpolations between pairs of test images",
}
MIN_DISPLAY_PIXELS = 84
"""Small images (MNIST's 28 pixels) are enlarged by a whole factor to at least this size, so
the page shows them sharp instead of tiny."""


@dataclass
class ModelEntry:
    """What the gallery drew for one zoo model: picture paths by panel name, its mean test ELBO
    terms (nats per example; None without test images) and why panels are missing."""

    zoo: ZooModel
    beta: float | None
    dataset: str | None
    pictures: dict[str, Path] = field(default_factory=dict)
    rate_distortion: tuple[float, float] | None = None
    skipped: list[str] = field(default_factory=list)


def test_images(dataset: str | None, binarize: str, data_dirs: dict[str, str], count: int
                ) -> tuple[torch.Tensor | None, str | None]:
    """The first ``count`` test images of ``dataset`` as its datamodule gives them to ``test``
    (binarized as ``binarize`` says: once, with the fixed seed), or None and the reason they are
    not there."""
    if dataset not in DATA_MODULES:
        return None, f"its card names the data set {dataset!r}, which this script cannot read"
    data = DATA_MODULES[dataset](data_dirs.get(dataset, "data"), binarize=binarize,
                                 eval_batch_size=count, download=False)
    try:
        data.setup("test")
    except FileNotFoundError as error:
        looked = [line.strip() for line in str(error).splitlines() if line.startswith("  ")]
        return None, (f"no {dataset} files in {', '.join(looked)}; pass "
                      f"--{dataset.replace('_', '-')}-dir DIR")
    return next(iter(data.test_dataloader()))[0], None


def enlarged(picture: np.ndarray, image_size: int) -> np.ndarray:
    """``picture`` repeated pixel by pixel so images of ``image_size`` are shown at least
    :data:`MIN_DISPLAY_PIXELS` wide."""
    factor = max(1, -(-MIN_DISPLAY_PIXELS // image_size))
    return picture.repeat(factor, axis=0).repeat(factor, axis=1)


def traversals(model: VAEModel, panels: ImagePanels, image: torch.Tensor,
               kl_per_dim: torch.Tensor) -> np.ndarray:
    """The traversal panel restricted to the :data:`MAX_TRAVERSED` latent dimensions with the
    largest mean KL, largest first: the collapsed ones (KL ≈ 0) all draw the same row."""
    dims = kl_per_dim.argsort(descending=True)[:MAX_TRAVERSED]
    # ImagePanels' own codes (every dimension swept in turn), then the rows of `dims`.
    codes = panels._traversal_codes(model.encode(image[None]).mean[0])
    codes = codes.unflatten(0, (model.latent_dim, panels.traversal_steps))[dims].flatten(0, 1)
    return make_grid(model.decode(codes), nrow=panels.traversal_steps)


def draw_model(zoo: ZooModel, data_dirs: dict[str, str], out: Path, count: int) -> ModelEntry:
    """Draw one zoo model's panels into ``out`` and measure its rate and distortion on the first
    ``count`` test images."""
    numbers = card_numbers(zoo.folder)
    entry = ModelEntry(zoo, numbers.beta, numbers.dataset)
    model = VAEModel.from_pretrained(zoo.name)
    panels = ImagePanels(num_images=8, num_samples=64, traversal_steps=9)
    panels.noise = torch.randn(64, model.latent_dim, generator=torch.Generator().manual_seed(0))
    images, reason = test_images(numbers.dataset, model.preprocessing.binarize, data_dirs,
                                 count)
    if images is None:
        entry.skipped.append(f"reconstructions, traversals, interpolations and rate–distortion: "
                             f"{reason}")
        with torch.no_grad():  # the samples panel, which needs no input image
            drawn = {"samples": make_grid(model.decode(panels.noise), nrow=8)}
    else:
        x = images.to(model.dtype)
        panels.images = x[: panels.num_images]
        drawn = panels.panels(model)
        with torch.no_grad():
            terms = model.elbo(x, torch.Generator().manual_seed(0))
            kl_per_dim = model.encode(x).kl_per_dim().mean(0)
            drawn["traversals"] = traversals(model, panels, x[0], kl_per_dim)
        entry.rate_distortion = (terms["kl"].mean().item(), terms["recon"].mean().item())
    stem = zoo.folder.name
    for name in PANEL_TITLES:
        if name in drawn:
            path = out / f"{stem}-{name}.png"
            entry.pictures[name] = save_image(enlarged(drawn[name], model.image_shape[-1]), path)
    return entry


def plot_rate_distortion(entries: list[ModelEntry], path: Path) -> Path:
    """Rate (KL) against distortion (−log p(x|z)) of each model on its test images, one panel
    per data set, each point labelled with the model and its β (Alemi et al. 2018)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    datasets = sorted({entry.dataset for entry in entries})
    figure = Figure(figsize=(4.5 * len(datasets), 4), dpi=100, layout="tight")
    FigureCanvasAgg(figure)
    for index, dataset in enumerate(datasets, start=1):
        axes = figure.add_subplot(1, len(datasets), index)
        for entry in (e for e in entries if e.dataset == dataset):
            rate, distortion = entry.rate_distortion
            axes.plot(rate, distortion, "o", color="tab:blue")
            axes.annotate(f"{entry.zoo.name.split('/')[-1]}, β={entry.beta:g}", (rate, distortion),
                          textcoords="offset points", xytext=(5, 5), fontsize=9)
        axes.margins(0.35)  # room for the labels
        axes.set_xlabel("rate: KL(q(z|x) ‖ p(z)) (nats)")
        axes.set_ylabel("distortion: −log p(x|z) (nats)")
        axes.set_title(f"{dataset} test images")
    figure.savefig(path)
    return path


def card_metrics(zoo: ZooModel) -> dict[str, float]:
    """The disentanglement metrics (:data:`DISENTANGLEMENT_METRICS`) on ``zoo``'s card."""
    results = ModelCard.load(zoo.folder / CARD_FILE).data.eval_results or []
    return {result.metric_type: float(result.metric_value) for result in results
            if result.metric_type in DISENTANGLEMENT_METRICS and result.dataset_split == "test"}


def plot_metrics_against_beta(entries: list[ModelEntry], out: Path
                              ) -> tuple[dict[str, Path], str | None]:
    """One plot per disentanglement metric that at least two models of one data set report on
    their cards, against β; or no plots and the reason."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for entry in entries:
        for metric, value in card_metrics(entry.zoo).items():
            if entry.beta is not None:
                points.setdefault((metric, entry.dataset), []).append((entry.beta, value))
    plots = {}
    for (metric, dataset), values in sorted(points.items()):
        if len({beta for beta, _ in values}) < 2:
            continue
        figure = Figure(figsize=(4.5, 3.5), dpi=100, layout="tight")
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        betas, scores = zip(*sorted(values), strict=True)
        axes.plot(betas, scores, "o-", color="tab:blue")
        axes.set_xscale("log", base=2)
        axes.set_xlabel("β")
        axes.set_ylabel(metric)
        axes.set_title(f"{metric} against β, {dataset} test set")
        plots[f"{metric}, {dataset}"] = out / f"{metric}-{dataset}-vs-beta.png"
        figure.savefig(plots[f"{metric}, {dataset}"])
    if plots:
        return plots, None
    if not points:
        return {}, (f"no zoo model's card reports a disentanglement metric "
                    f"({', '.join(DISENTANGLEMENT_METRICS)})")
    return {}, "no disentanglement metric is reported for two values of β on one data set"


def page(entries: list[ModelEntry], rate_distortion: Path | None, rd_reason: str | None,
         metric_plots: dict[str, Path], metric_reason: str | None, docs: Path,
         count: int) -> str:
    """The gallery page's Markdown, with image paths relative to ``docs``."""
    def image(path: Path, alt: str) -> str:
        return f"![{alt}]({path.relative_to(docs).as_posix()})"

    lines = [
        "# Gallery",
        "",
        "Pictures drawn from the zoo models installed with lightning-vae "
        f"{lightning_vae.__version__}, by `python scripts/build_gallery.py` (this page is "
        "written by it: edit the script, not the page). The panels are the ones "
        "[`ImagePanels`](api.md#lightning_vae.ImagePanels) logs during training, drawn from "
        "the first test images (as `lightning-vae test` sees them: binarized data sets are "
        "binarized once, with a fixed seed) and fixed prior noise (seed 0).",
    ]
    for entry in entries:
        beta = "not recorded" if entry.beta is None else f"{entry.beta:g}"
        lines += ["", f"## {entry.zoo.name}", "",
                  f"Data set: {entry.dataset or 'not recorded'}; β = {beta}; recipe "
                  f"`{entry.zoo.recipe}`."]
        for name, path in entry.pictures.items():
            lines += ["", f"**{PANEL_TITLES[name]}**", "",
                      image(path, f"{PANEL_TITLES[name]}, {entry.zoo.name}")]
        for reason in entry.skipped:
            lines += ["", f"Not drawn: {reason}."]
    lines += ["", "## Rate–distortion {#rate-distortion}", ""]
    if rate_distortion is None:
        lines.append(f"Not drawn: {rd_reason}.")
    else:
        lines += [f"Mean KL (rate) against mean −log p(x|z) (distortion) over the first {count} "
                  "test images, one posterior sample each, in nats per image (Alemi et al. "
                  "2018). `lightning-vae sweep` draws the same plot for a β sweep.", "",
                  image(rate_distortion, "rate against distortion of the zoo models")]
    lines += ["", "## Metrics against β {#metrics-against-beta}", ""]
    if metric_reason is not None:
        lines.append(f"Not drawn: {metric_reason}.")
    for title, path in metric_plots.items():
        lines += [f"**{title}**", "", image(path, f"{title} against β"), ""]
    return "\n".join(lines).rstrip() + "\n"


def build(docs: Path, data_dirs: dict[str, str], count: int) -> list[str]:
    """Draw the gallery into ``docs`` (pictures in ``docs/gallery/``, the page
    ``docs/gallery.md``); return what was skipped, with reasons."""
    out = docs / "gallery"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):  # pictures of models or metrics no longer there go
        old.unlink()
    models = installed()
    if not models:
        raise SystemExit("no zoo model is installed (lightning_vae/hub/zoo_models/*/config.json):"
                         " reinstall the package or run scripts/build_zoo.py")
    entries = [draw_model(zoo, data_dirs, out, count) for zoo in models]
    skipped = [f"{entry.zoo.name}: {reason}" for entry in entries for reason in entry.skipped]
    measured = [entry for entry in entries if entry.rate_distortion is not None]
    rate_distortion, rd_reason = None, None
    if measured:
        rate_distortion = plot_rate_distortion(measured, out / "rate_distortion.png")
    else:
        rd_reason = "no zoo model's test images were found"
        skipped.append(f"rate–distortion plot: {rd_reason}")
    metric_plots, metric_reason = plot_metrics_against_beta(entries, out)
    if metric_reason is not None:
        skipped.append(f"metric-vs-β plots: {metric_reason}")
    (docs / "gallery.md").write_text(page(entries, rate_distortion, rd_reason, metric_plots,
                                          metric_reason, docs, count), encoding="utf-8")
    return skipped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=Path, default=ROOT / "docs",
                        help="the site's docs folder (default: the repository's docs/)")
    parser.add_argument("--mnist-dir", default="data", help="a folder holding MNIST's files")
    parser.add_argument("--fashion-mnist-dir", default="data",
                        help="a folder holding Fashion-MNIST's files (Debian's "
                        "/usr/share/datasets/fashion-mnist is searched too)")
    parser.add_argument("--images", type=int, default=1000,
                        help="test images per model for the rate–distortion plot (default 1000)")
    args = parser.parse_args(argv)
    if args.images < 8:
        parser.error(f"--images must be at least 8 (one panel row), got {args.images}")
    data_dirs = {"mnist": args.mnist_dir, "fashion_mnist": args.fashion_mnist_dir}
    skipped = build(args.docs, data_dirs, args.images)
    print(f"wrote {args.docs / 'gallery.md'} and {args.docs / 'gallery'}/")
    for reason in skipped:
        print(f"skipped {reason}")


if __name__ == "__main__":
    main()
