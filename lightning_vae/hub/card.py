"""The model card (``README.md``) of a saved VAE: Hub metadata, then a body stating what the model
is, how it was trained and how well it does. A number that was not recorded is written as
missing, never estimated.
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


@dataclass(frozen=True)
class CardFacts:
    """What the card reports beyond the model's config; None means unknown and is shown as such.

    ELBOs and the log-likelihood are in nats per example. ``test_log_likelihood`` is the
    importance-weighted bound computed with ``log_likelihood_samples`` samples per image.
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


def build_model_card(config: dict[str, Any], facts: CardFacts, base: ModelCardData,
                     reconstructions: bool) -> ModelCard:
    """The card of a model with constructor arguments ``config``; ``base`` holds the library's
    metadata (library name, license, tags); ``reconstructions`` says whether the picture
    beside the card shows reconstructions above the prior samples."""
    text = f"---\n{_metadata(facts, base).to_yaml()}\n---\n\n" + "\n\n".join([
        _summary(facts),
        _model_table(config),
        _training_table(facts),
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
    if _beta(facts) not in (None, 1):
        tags.add("beta-vae")
    if facts.training:
        data.training = facts.training
    if facts.dataset:
        tags.add(facts.dataset)
        data.datasets = [facts.dataset]
    data.tags = sorted(tags)
    results = [
        (split, metric, value)
        for split, metric, value in (("validation", "elbo", facts.val_elbo),
                                     ("test", "elbo", facts.test_elbo),
                                     ("test", "log-likelihood", facts.test_log_likelihood))
        if value is not None
    ]
    if results:
        data.metrics = sorted({metric for _, metric, _ in results})
    if results and facts.dataset:  # model-index entries must name their data set
        data.model_name = _title(facts)
        data.eval_results = [
            EvalResult(task_type=TASK, dataset_type=facts.dataset, dataset_name=facts.dataset,
                       dataset_split=split, metric_type=metric, metric_value=round(value, 4),
                       metric_name=f"{metric} (nats per example)")
            for split, metric, value in results
        ]
    return data


def _summary(facts: CardFacts) -> str:
    kind = ("β-VAE (Higgins et al., 2017)" if _beta(facts) not in (None, 1)
            else "variational autoencoder (Kingma & Welling, 2014)")
    data = f"on {facts.dataset}" if facts.dataset else "(training data not recorded)"
    return (f"# {_title(facts)}\n\nA {kind} {data}, trained with "
            f"[lightning-vae]({REPO_URL}) {lightning_vae.__version__}.")


def _options(options: dict[str, Any] | None) -> str:
    return ", ".join(f"{key}={json.dumps(value)}" for key, value in (options or {}).items())


def _table(rows: list[tuple[str, str]]) -> str:
    return "\n".join(["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def _beta(facts: CardFacts) -> float | None:
    """The β the weights were trained with (None when not recorded)."""
    return (facts.training or {}).get("beta")


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
    schedule = training.get("beta_schedule", "not recorded")
    if isinstance(schedule, dict):
        options = {key: value for key, value in schedule.items() if key != "name"}
        schedule = f"{schedule.get('name')} ({_options(options)})" if options else schedule["name"]
    rows = [
        ("Training data", data),
        ("β", str(training.get("beta", "not recorded"))),
        ("β schedule", str(schedule)),
        ("Training steps", str(facts.steps) if facts.steps is not None else "not recorded"),
        ("Validation ELBO", _nats(facts.val_elbo, "not recorded")),
        ("Test ELBO", _nats(facts.test_elbo, "not evaluated")),
        ("Test log-likelihood", log_likelihood),
    ]
    return ("## Training and evaluation\n\n" + _table(rows) + "\n\nELBO and log-likelihood are "
            "in nats per example (summed over pixels, averaged over images); higher is better. "
            "A number marked as missing was not recorded when the model was saved.")


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
    if _beta(facts) not in (None, 1):
        entries.append(BETA_VAE_BIBTEX)
    return "## Citation\n\n```bibtex\n" + "\n\n".join(entries) + "\n```"
