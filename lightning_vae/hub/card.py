"""The model card (``README.md``) of a saved VAE: Hub metadata, then a body stating what the model
is, how it was trained and how well it does (and, for data with known generative factors, how
disentangled its latents are). A number that was not recorded is written as missing, never
estimated.
"""

import json
from dataclasses import dataclass
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

import lightning_vae

REPO_URL = "https://github.com/lightning-vae/lightning-vae"
PICTURE_FILE = "samples.png"
TASK = "unconditional-image-generation"

PACKAGE_BIBTEX = """@software{{lightning_vae,
  title = {{lightning-vae: variational autoencoders on PyTorch Lightning}},
  author = {{{{The lightning-vae developers}}}},
  url = {{{url}}},
  version = {{{version}}}
}}"""
VAE_BIBTEX = """@inproceedings{kingma2014autoencoding,
  title = {Auto-Encoding Variational Bayes},
  author = {Kingma, Diederik P. and Welling, Max},
  booktitle = {2nd International Conference on Learning Representations ({ICLR})},
  year = {2014},
  url = {https://arxiv.org/abs/1312.6114}
}"""
BETA_VAE_BIBTEX = """@inproceedings{higgins2017betavae,
  title = {beta-{VAE}: Learning Basic Visual Concepts with a Constrained Variational Framework},
  author = {Higgins, Irina and Matthey, Loic and Pal, Arka and Burgess, Christopher and
            Glorot, Xavier and Botvinick, Matthew and Mohamed, Shakir and Lerchner, Alexander},
  booktitle = {5th International Conference on Learning Representations ({ICLR})},
  year = {2017},
  url = {https://openreview.net/forum?id=Sy2fzU9gl}
}"""
TCVAE_BIBTEX = """@inproceedings{chen2018isolating,
  title = {Isolating Sources of Disentanglement in Variational Autoencoders},
  author = {Chen, Ricky T. Q. and Li, Xuechen and Grosse, Roger B. and Duvenaud, David K.},
  booktitle = {Advances in Neural Information Processing Systems 31 ({NeurIPS})},
  year = {2018},
  url = {https://arxiv.org/abs/1802.04942}
}"""
FACTORVAE_BIBTEX = """@inproceedings{kim2018disentangling,
  title = {Disentangling by Factorising},
  author = {Kim, Hyunjik and Mnih, Andriy},
  booktitle = {Proceedings of the 35th International Conference on Machine Learning ({ICML})},
  year = {2018},
  url = {https://arxiv.org/abs/1802.05983}
}"""


@dataclass(frozen=True)
class ModelKind:
    """What the card calls a model: its kind in the summary, its Hub tag and the citation it
    adds to the VAE paper's (None for neither)."""

    name: str
    tag: str | None = None
    bibtex: str | None = None


VAE_KIND = ModelKind("variational autoencoder (Kingma & Welling, 2014)")
BETA_VAE_KIND = ModelKind("β-VAE (Higgins et al., 2017)", "beta-vae", BETA_VAE_BIBTEX)
OBJECTIVE_KINDS = {
    "tcvae": ModelKind("β-TCVAE (Chen et al., 2018)", "beta-tcvae", TCVAE_BIBTEX),
    "factorvae": ModelKind("FactorVAE (Kim & Mnih, 2018)", "factorvae", FACTORVAE_BIBTEX),
}
"""Training objectives that name the model instead of "VAE" or "β-VAE"."""


@dataclass(frozen=True)
class Score:
    """A disentanglement score a card can report: its :class:`CardFacts` field, its metric type
    in the metadata (logged by ``lightning-vae test`` as ``test/<metric>``), its name and what it
    measures, in one line."""

    field: str
    metric: str
    title: str
    meaning: str

    @property
    def option(self) -> str:
        """The ``lightning-vae export`` (and ``push``) option that puts it on a card."""
        return "--" + self.field.replace("_", "-")


DISENTANGLEMENT_SCORES = (
    Score("test_mig", "mig", "MIG",
          "mutual information gap (Chen et al. 2018): for each factor, the gap in mutual "
          "information between the two latents most informative about it, over its entropy"),
    Score("test_factorvae_score", "factorvae_score", "FactorVAE score",
          "Kim & Mnih (2018): how often the latent that varies least in a batch with one factor "
          "held fixed names that factor, by majority vote"),
    Score("test_dci_d", "dci_d", "DCI disentanglement",
          "Eastwood & Williams (2018): how much each latent serves a single factor (Lasso "
          "importances), weighted by how much it matters"),
    Score("test_sap", "sap", "SAP",
          "Kumar et al. (2018): for each factor, the gap in held-out accuracy between the two "
          "latents that predict it best alone"),
)
"""The four scores of :mod:`lightning_vae.metrics`, each in [0, 1], higher is better."""


@dataclass(frozen=True)
class CardFacts:
    """What the card reports beyond the model's config; None means unknown and is shown as such.

    ELBOs and the log-likelihood are in nats per example. ``test_log_likelihood`` is the
    importance-weighted bound computed with ``log_likelihood_samples`` samples per image;
    ``log_likelihood_samples=0`` says that none was computed (a model whose point is another,
    such as a dSprites model's disentanglement), and the card then has no log-likelihood row.
    ``test_mig``, ``test_factorvae_score``, ``test_dci_d`` and ``test_sap`` are the
    disentanglement scores on the test split (:data:`DISENTANGLEMENT_SCORES`).
    ``training`` holds the settings the weights were trained with (``beta``, ``beta_schedule``,
    ``optimizer``, ``lr``, ...): not part of the model, so not in config.json, but part of what
    the card states; its metadata keeps them as ``training``.
    """

    repo_id: str | None = None
    training: dict[str, Any] | None = None
    dataset: str | None = None
    data_options: dict[str, Any] | None = None
    steps: int | None = None
    val_elbo: float | None = None
    test_elbo: float | None = None
    test_log_likelihood: float | None = None
    log_likelihood_samples: int | None = None
    test_mig: float | None = None
    test_factorvae_score: float | None = None
    test_dci_d: float | None = None
    test_sap: float | None = None

    def __post_init__(self) -> None:
        if self.log_likelihood_samples == 0 and self.test_log_likelihood is not None:
            raise ValueError(
                f"test_log_likelihood={self.test_log_likelihood} with log_likelihood_samples=0 "
                "(none computed): pass the number of importance samples behind it, or leave "
                "the log-likelihood out")
        for score in DISENTANGLEMENT_SCORES:
            value = getattr(self, score.field)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"{score.field}={value}: the {score.title} lies in [0, 1]; "
                                 "pass the value `lightning-vae test` logged as "
                                 f"test/{score.metric}")

    def scores(self) -> list[tuple[Score, float]]:
        """The disentanglement scores given, in :data:`DISENTANGLEMENT_SCORES` order."""
        return [(score, getattr(self, score.field)) for score in DISENTANGLEMENT_SCORES
                if getattr(self, score.field) is not None]


def build_model_card(config: dict[str, Any], facts: CardFacts, base: ModelCardData,
                     reconstructions: bool) -> ModelCard:
    """The card of a model with constructor arguments ``config``; ``base`` holds the library's
    metadata (library name, license, tags); ``reconstructions`` says whether the picture
    beside the card shows reconstructions above the prior samples."""
    text = f"---\n{_metadata(facts, base).to_yaml()}\n---\n\n" + "\n\n".join([
        _summary(facts),
        _model_table(config),
        _training_table(facts),
        *([_disentanglement(facts)] if facts.scores() else []),
        _picture(reconstructions),
        _usage(facts),
        _citation(facts),
    ]) + "\n"
    return ModelCard(text)


def _title(facts: CardFacts) -> str:
    return facts.repo_id.split("/")[-1] if facts.repo_id else "lightning-vae model"


def _metadata(facts: CardFacts, base: ModelCardData) -> ModelCardData:
    data = ModelCardData(**base.to_dict())
    tags = set(data.tags or []) | {"vae"}
    if tag := _kind(facts).tag:
        tags.add(tag)
    if facts.training:
        data.training = facts.training
    if facts.dataset:
        tags.add(facts.dataset)
        data.datasets = [facts.dataset]
    data.tags = sorted(tags)
    results = [
        (split, metric, value, f"{metric} (nats per example)")
        for split, metric, value in (("validation", "elbo", facts.val_elbo),
                                     ("test", "elbo", facts.test_elbo),
                                     ("test", "log-likelihood", facts.test_log_likelihood))
        if value is not None
    ] + [("test", score.metric, value, score.title) for score, value in facts.scores()]
    if results:
        data.metrics = sorted({metric for _, metric, _, _ in results})
    if results and facts.dataset:  # model-index entries must name their data set
        data.model_name = _title(facts)
        data.eval_results = [
            EvalResult(task_type=TASK, dataset_type=facts.dataset, dataset_name=facts.dataset,
                       dataset_split=split, metric_type=metric, metric_value=round(value, 4),
                       metric_name=name)
            for split, metric, value, name in results
        ]
    return data


def _summary(facts: CardFacts) -> str:
    data = f"on {facts.dataset}" if facts.dataset else "(training data not recorded)"
    return (f"# {_title(facts)}\n\nA {_kind(facts).name} {data}, trained with "
            f"[lightning-vae]({REPO_URL}) {lightning_vae.__version__}.")


def _options(options: dict[str, Any] | None) -> str:
    return ", ".join(f"{key}={json.dumps(value)}" for key, value in (options or {}).items())


def _table(rows: list[tuple[str, str]]) -> str:
    return "\n".join(["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def _beta(facts: CardFacts) -> float | None:
    """The β the weights were trained with (None when not recorded)."""
    return (facts.training or {}).get("beta")


def _kind(facts: CardFacts) -> ModelKind:
    """The kind of model the card names: the objective's when it names the model (β-TCVAE,
    FactorVAE), else a β-VAE when β is not 1, else a VAE."""
    objective = (facts.training or {}).get("objective")
    name = objective.get("name") if isinstance(objective, dict) else objective
    if name in OBJECTIVE_KINDS:
        return OBJECTIVE_KINDS[name]
    return BETA_VAE_KIND if _beta(facts) not in (None, 1) else VAE_KIND


def _named(setting: Any) -> str:
    """A setting given by name, or as a dict of its name and options (a β schedule, an
    objective), as ``name (option=value, ...)``."""
    if not isinstance(setting, dict):
        return str(setting)
    options = {key: value for key, value in setting.items() if key != "name"}
    return f"{setting.get('name')} ({_options(options)})" if options else str(setting["name"])


def _model_table(config: dict[str, Any]) -> str:
    architecture = f"`{config['arch']}`"
    if config.get("arch_options"):
        architecture += f" ({_options(config['arch_options'])})"
    likelihood = config["likelihood"]
    if config.get("likelihood_options"):
        likelihood += f" ({_options(config['likelihood_options'])})"
    channels, height, width = config["image_shape"]
    return "## Model\n\n" + _table([
        ("Architecture", architecture),
        ("Input", f"{channels} × {height} × {width} images, pixel values in [0, 1]"),
        ("Latent size", str(config["latent_dim"])),
        ("Likelihood", likelihood),
        ("Prior", config.get("prior", "standard_normal")),
    ])


def _nats(value: float | None, missing: str) -> str:
    return f"{value:.2f} nats per example" if value is not None else missing


def _training_table(facts: CardFacts) -> str:
    data = "not recorded"
    if facts.dataset:
        data = facts.dataset + (f" ({_options(facts.data_options)})" if facts.data_options else "")
    log_likelihood = _nats(facts.test_log_likelihood, "not evaluated")
    if facts.test_log_likelihood is not None and facts.log_likelihood_samples:
        log_likelihood += (f" (importance-weighted bound, {facts.log_likelihood_samples} "
                           "samples per image)")
    training = facts.training or {}
    rows = [
        ("Training data", data),
        *([("Objective", _named(training["objective"]))] if "objective" in training else []),
        ("β", str(training.get("beta", "not recorded"))),
        ("β schedule", _named(training.get("beta_schedule", "not recorded"))),
        ("Training steps", str(facts.steps) if facts.steps is not None else "not recorded"),
        ("Validation ELBO", _nats(facts.val_elbo, "not recorded")),
        ("Test ELBO", _nats(facts.test_elbo, "not evaluated")),
    ]
    if facts.log_likelihood_samples != 0:  # 0: none was computed, so there is no row
        rows.append(("Test log-likelihood", log_likelihood))
    return ("## Training and evaluation\n\n" + _table(rows) + "\n\nELBO and log-likelihood are "
            "in nats per example (summed over pixels, averaged over images); higher is better. "
            "A number marked as missing was not recorded when the model was saved.")


def _disentanglement(facts: CardFacts) -> str:
    """The disentanglement scores, what each measures and the split they were computed on."""
    size = (facts.data_options or {}).get("test_size")
    split = f"test split of {facts.dataset or 'the training data set'}" + (
        f" ({size} images)" if size else "")
    values = dict(facts.scores())
    rows = [f"| {score.title} | "
            + (f"{values[score]:.3f}" if score in values else "not evaluated")
            + f" | {score.meaning} |" for score in DISENTANGLEMENT_SCORES]
    return ("## Disentanglement\n\n| Score | Value | What it measures |\n|---|---|---|\n"
            + "\n".join(rows) + f"\n\nScores of the posterior means of the {split} against "
            "the images' known generative factors, as `lightning-vae test` logs them "
            "(`test/mig`, `test/factorvae_score`, `test/dci_d`, `test/sap`; "
            "`lightning_vae.metrics`): each lies in [0, 1], higher is better.")


def _picture(reconstructions: bool) -> str:
    caption = ("Top two rows: validation images and their reconstructions (the posterior mean, "
               "decoded). Other rows: images decoded from draws of the prior N(0, I)."
               if reconstructions else
               "Images decoded from draws of the prior N(0, I). (No input images were available "
               "when the model was saved, so reconstructions are not shown.)")
    return f"## Samples\n\n![Reconstructions and prior samples]({PICTURE_FILE})\n\n{caption}"


def _usage(facts: CardFacts) -> str:
    name = facts.repo_id or "path/to/this/folder"
    return ("## Use\n\n```bash\npip install lightning-vae\n```\n\n```python\nimport lightning_vae"
            f'\n\nmodel = lightning_vae.from_pretrained("{name}")\n```\n\n'
            "`model` is a `lightning_vae.VAEModel` (a PyTorch module) in evaluation mode: "
            "`model.sample(16)` draws images, `model.encode(x)` gives q(z|x) and "
            "`model.reconstruct(x)` decodes its mean. Weights are stored as safetensors.")


def _citation(facts: CardFacts) -> str:
    entries = [PACKAGE_BIBTEX.format(url=REPO_URL, version=lightning_vae.__version__),
               VAE_BIBTEX]
    if bibtex := _kind(facts).bibtex:
        entries.append(bibtex)
    return "## Citation\n\n```bibtex\n" + "\n\n".join(entries) + "\n```"
