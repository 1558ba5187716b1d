"""The model zoo: pretrained VAEs installed with the package, loaded by name with no network.

Each zoo model is a complete model folder (config.json, model.safetensors, the README.md card,
samples.png) in ``lightning_vae/zoo_models/<folder>``, made by ``scripts/build_zoo.py`` from the
recipe and overrides :data:`ZOO` lists, with the package's own ``fit``, ``test`` and ``export``
commands. Its name is also its repository id on the Hugging Face Hub, where
``scripts/publish_zoo.py`` puts it.

Which copy ``from_pretrained(name)`` loads:

1. the folder at the path ``name``, if there is one (as for any name);
2. else the bundled copy of a zoo model, unless ``revision=`` or ``force_download=True`` asks for
   the Hub's: the bundled copy is the one this version of the package was tested against, its
   card's numbers included, and it needs no network;
3. else the Hub repository ``name``, through huggingface_hub's cache, as for any repo id.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import ModelCard, constants

from lightning_vae.hub.card import DISENTANGLEMENT_SCORES

CONFIG_FILE = constants.CONFIG_NAME
CARD_FILE = constants.REPOCARD_NAME

ZOO_ROOT = Path(__file__).resolve().parent / "zoo_models"
"""Where the zoo's folders are installed (package data)."""


@dataclass(frozen=True)
class ZooModel:
    """One zoo model: its name (the Hub repo id ``owner/folder``) and how it is made.

    ``overrides`` are command-line arguments of ``lightning-vae fit`` applied to ``recipe``
    (a path relative to the repository), ``data_overrides`` the datamodule's, given to both
    ``fit`` and ``test`` so that the test reads the same data; ``iw_samples`` is k of the
    importance-weighted test log-likelihood its card reports, 0 for a model whose card reports
    none (it is not the point of a dSprites model, and its card says it was not evaluated).
    ``disentanglement`` says that its test data carries generative factors, so that its card
    reports the four disentanglement scores.
    """

    name: str
    recipe: str
    overrides: tuple[str, ...]
    iw_samples: int
    data_overrides: tuple[str, ...] = ()
    disentanglement: bool = False

    @property
    def folder(self) -> Path:
        """The installed model folder (it may not exist: see :func:`installed`)."""
        return ZOO_ROOT / self.name.split("/")[-1]


GPU_FAST = ("--config", "recipes/trainer/gpu_fast.yaml")
"""The one-GPU fast path (bf16, the training step replayed from a CUDA graph) for zoo builds."""

ZOO: tuple[ZooModel, ...] = (
    ZooModel("lightning-vae/mnist-vae", "recipes/mnist_vae.yaml",
             (*GPU_FAST, "--data.init_args.batch_size", "128", "--trainer.max_time",
              "00:00:02:00"), iw_samples=1000),
    ZooModel("lightning-vae/mnist-beta-vae", "recipes/mnist_beta_vae.yaml",
             ("--trainer.max_epochs", "3",
              "--model.beta_schedule", '{"name": "linear", "steps": 1000}'), iw_samples=20),
    ZooModel("lightning-vae/fashion-mnist-vae", "recipes/fashion_mnist_vae.yaml",
             ("--trainer.max_epochs", "3"), iw_samples=20),
    ZooModel("lightning-vae/mnist-hvae", "recipes/mnist_hvae.yaml",
             (*GPU_FAST, "--trainer.max_time", "00:00:02:00"), iw_samples=200),
    ZooModel("lightning-vae/dsprites-tcvae", "recipes/dsprites_tcvae.yaml",
             ("--model.beta", "16",
              "--model.arch_options", '{"channels": [16, 32, 32, 64], "hidden_dim": 128}',
              "--trainer.max_time", "00:00:18:00"), iw_samples=0,
             data_overrides=("--data.init_args.source", "rendered"), disentanglement=True),
)
"""Every zoo model, the default one (``recipes/mnist_vae.yaml``) first. The MNIST VAE and the
hierarchical VAE are built on one GPU (``--jobs 2``, two minutes of training each: what one
session's GPU time allowed); the β-VAE and the Fashion-MNIST VAE on a shared 2-core CPU (about
35 minutes for the two with the VAE of 0.1.0; see each card), the β-VAE's KL warm-up shortened
to 1000 steps so that it ends within its 3 epochs (1290 steps). The dSprites β-TCVAE is trained
on 2 CPU cores for at most 18 minutes on the re-rendered dSprites (no network to fetch the
original), with β = 16, the β of the highest β-TCVAE MIG in docs/results.md's study (1, 4, 16),
and that study's smaller conv model (0.38 M parameters, 1.5 MB: the recipe's 0.76 M would take
the wheel past 32 MB); it reports disentanglement scores, no log-likelihood."""


def installed() -> list[ZooModel]:
    """The zoo models whose folder is installed (one without config.json is incomplete)."""
    return [model for model in ZOO if (model.folder / CONFIG_FILE).is_file()]


def bundled_folder(name: str | Path, *, revision: str | None = None,
                   force_download: bool = False) -> Path | None:
    """The installed folder of the zoo model ``name``, or None when ``from_pretrained`` should
    look elsewhere: ``name`` is an existing folder or not a zoo name, the zoo folder is not
    installed, or ``revision`` / ``force_download`` ask for the Hub's copy."""
    if revision is not None or force_download or os.path.isdir(name):
        return None
    for model in installed():
        if model.name == str(name):
            return model.folder
    return None


@dataclass(frozen=True)
class CardNumbers:
    """What a zoo card's metadata states: the data set, the β the weights were trained with, the
    test numbers in nats per example (None when not recorded) and the disentanglement scores on
    the test split, by metric type (``mig``, ``factorvae_score``, ``dci_d``, ``sap``; empty when
    none is reported)."""

    dataset: str | None
    beta: float | None
    test_elbo: float | None
    test_log_likelihood: float | None
    scores: dict[str, float]


def card_numbers(folder: Path) -> CardNumbers:
    """The data set, β and test numbers from the metadata of ``folder``'s card (β from
    config.json where a 0.1.0 card lacks the training settings)."""
    data = ModelCard.load(folder / CARD_FILE).data
    training = data.get("training") or json.loads(
        (folder / CONFIG_FILE).read_text(encoding="utf-8"))
    results = {(r.dataset_split, r.metric_type): float(r.metric_value)
               for r in data.eval_results or []}
    return CardNumbers(
        dataset=(data.datasets or [None])[0],
        beta=training.get("beta"),
        test_elbo=results.get(("test", "elbo")),
        test_log_likelihood=results.get(("test", "log-likelihood")),
        scores={score.metric: results[("test", score.metric)] for score in DISENTANGLEMENT_SCORES
                if ("test", score.metric) in results},
    )


def folder_megabytes(folder: Path) -> float:
    """The size on disk of the files in ``folder``, in MB (10⁶ bytes)."""
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file()) / 1e6


def table() -> str:
    """The installed zoo as a text table: name, data set, β, latent size, test NLL, size."""
    header = ("name", "data set", "β", "latent", "test NLL (nats)", "size")
    rows = [header]
    for model in installed():
        config = json.loads((model.folder / CONFIG_FILE).read_text(encoding="utf-8"))
        numbers = card_numbers(model.folder)
        nll = ("not evaluated" if numbers.test_log_likelihood is None
               else f"{-numbers.test_log_likelihood:.2f} (k={model.iw_samples})")
        beta = "not recorded" if numbers.beta is None else f"{numbers.beta:g}"
        rows.append((model.name, numbers.dataset or "not recorded", beta,
                     str(config["latent_dim"]), nll, f"{folder_megabytes(model.folder):.1f} MB"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in rows)
    return "\n".join(line.rstrip() for line in lines)
