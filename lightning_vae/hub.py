"""From Lightning to the Hugging Face Hub: load pretrained models, turn a training checkpoint into
a model folder (``lightning-vae export``), and publish it (``lightning-vae push``, or the
:class:`PushToHub` callback at the end of ``fit``).

The folder format, the checks made on loading and the model card live in
:mod:`lightning_vae.hub_mixin` and :mod:`lightning_vae.model_card`.
"""

import argparse
import importlib
import pickle
import tempfile
import warnings
import zipfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from huggingface_hub import HfApi, constants
from torch import Tensor

from lightning_vae.hub_mixin import STAGING_FILES, first_line, full_repo_id, require_token
from lightning_vae.model_card import CardFacts
from lightning_vae.module import VAE

LOCAL_DATA_OPTIONS = ("data_dir", "download", "loader", "num_workers", "pin_memory", "cache_dir",
                      "progress", "strict")
"""Datamodule options about this machine, not the data: left out of the public model card."""

ZIP_MAGIC = b"PK\x03\x04"
PICKLE_MAGIC = b"\x80"
"""How the files ``torch.save`` writes begin: a zip archive, or (before torch 1.6) a pickle."""


def from_pretrained(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    token: str | bool | None = None,
    local_files_only: bool = False,
    map_location: str | torch.device = "cpu",
    **model_kwargs: Any,
) -> VAE:
    """A pretrained VAE, of any registered architecture, from a folder written by
    ``save_pretrained`` / ``lightning-vae export`` or a Hub repository id such as
    ``"user/mnist-vae"`` (see :meth:`VAE.from_pretrained` for the arguments; ``model_kwargs``
    override config.json values, e.g. ``lr`` to fine-tune with)."""
    return VAE.from_pretrained(
        name_or_path, revision=revision, cache_dir=cache_dir, force_download=force_download,
        token=token, local_files_only=local_files_only, map_location=map_location,
        **model_kwargs,
    )


def load_checkpoint(path: str | Path, trusted: bool = False) -> dict[str, Any]:
    """A Lightning checkpoint, read with ``weights_only=True`` (tensors and plain values only).

    A checkpoint holding other Python objects is refused unless ``trusted``: then it is
    unpickled, which runs code from the file, so only do it for your own checkpoints.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a checkpoint file; a model folder is "
                                "exported already and loads with from_pretrained")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    check_checkpoint_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not trusted:
            raise ValueError(
                f"{path} holds Python objects that safe (weights_only) loading refuses: "
                f"{first_line(error)}. If it is your own checkpoint, pass --trust-checkpoint "
                "(trusted=True) to unpickle it"
            ) from None
    except RuntimeError as error:  # torch's reader: a damaged archive
        raise ValueError(f"{path} is not a readable checkpoint ({first_line(error)}); "
                         "it may be damaged: copy it again, or use another checkpoint") from None
    return torch.load(path, map_location="cpu", weights_only=False)


def check_checkpoint_file(path: str | Path) -> None:
    """Refuse a file that ``torch.save`` did not write, or that is cut short, before torch reads
    it: torch's own errors name neither the file nor the cause, and weights_only loading would
    take any non-checkpoint for a checkpoint holding Python objects."""
    path = Path(path)
    with path.open("rb") as file:
        head = file.read(4)
    if head == ZIP_MAGIC:  # torch.save's format since torch 1.6
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path} is cut short ({path.stat().st_size} bytes, no zip "
                             "directory at its end): copy it again, or use another checkpoint")
    elif not head.startswith(PICKLE_MAGIC):  # the older format, a pickle stream
        raise ValueError(f"{path} is not a PyTorch checkpoint (it starts with {head!r}, not "
                         "with what torch.save writes); pass a .ckpt file written by Lightning")


def model_from_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> VAE:
    """The VAE a checkpoint's ``hyper_parameters`` describe, with its ``state_dict`` loaded."""
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or "state_dict" not in checkpoint:
        raise ValueError(
            f"{path} lacks hyper_parameters or state_dict: it was not written by Lightning "
            "while training a lightning_vae.VAE"
        )
    args = {key: value for key, value in hparams.items() if not key.startswith("_")}
    if unknown := sorted(set(args) - set(VAE.argument_names())):
        raise ValueError(
            f"{path}: hyper_parameters {unknown} are not arguments of lightning_vae.VAE; "
            "export only checkpoints of that module"
        )
    try:
        model = VAE(**args)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: its hyper_parameters do not build a VAE: {error}") from None
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise ValueError(f"{path}: state_dict does not fit its hyper_parameters: {error}") from None
    return model


def checkpoint_facts(checkpoint: dict[str, Any], path: str | Path) -> CardFacts:
    """What the checkpoint itself records: training steps, the data set (from a datamodule
    that saved its hyperparameters) and the validation ELBO (from a ModelCheckpoint that
    monitored ``val/elbo`` and kept this file among its best)."""
    val_elbo = None
    for key, state in checkpoint.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and state.get("monitor") == "val/elbo":
            scores = {Path(saved).name: score
                      for saved, score in state.get("best_k_models", {}).items()}
            if scores.get(Path(path).name) is not None:
                val_elbo = float(scores[Path(path).name])
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    datamodule = _datamodule_class(data)
    options = {key: value for key, value in data.items()
               if not key.startswith("_") and key not in LOCAL_DATA_OPTIONS
               and value is not None}
    return CardFacts(
        dataset=getattr(datamodule, "dataset_name", None),
        data_options=options or None,
        steps=checkpoint.get("global_step"),
        val_elbo=val_elbo,
    )


def _datamodule_class(hparams: dict[str, Any]) -> type | None:
    """The datamodule class LightningCLI recorded (``_class_path``), if it can be imported."""
    module_name, _, name = str(hparams.get("_class_path", "")).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name) if module_name else None
    except (ImportError, AttributeError):
        return None


def first_images(loader: Any, n: int = 8) -> Tensor | None:
    """Up to ``n`` images from the first ``(images, labels)`` batch of ``loader`` (None when
    the loader is missing or empty)."""
    loader = loader[0] if isinstance(loader, list | tuple) and loader else loader
    batch = next(iter(loader), None) if loader is not None else None
    if batch is None:
        return None
    images = batch[0] if isinstance(batch, list | tuple) else batch
    return images[:n].cpu()


def _checkpoint_images(checkpoint: dict[str, Any], path: str | Path) -> Tensor | None:
    """Validation (else test) images from the datamodule the checkpoint records, rebuilt with
    the same options; None, with a warning saying why, when the data is not at hand. Nothing is
    downloaded: ``prepare_data`` is not called."""
    hparams = checkpoint.get("datamodule_hyper_parameters") or {}
    datamodule_class = _datamodule_class(hparams)
    reason = "the checkpoint does not record an importable datamodule class"
    if datamodule_class is not None:
        try:
            datamodule = datamodule_class(
                **{key: value for key, value in hparams.items() if not key.startswith("_")})
            datamodule.setup("validate")
            images = first_images(datamodule.val_dataloader())
            return images if images is not None else first_images(datamodule.test_dataloader())
        except Exception as error:  # any failure only costs the picture its reconstructions
            reason = f"{datamodule_class.__name__} could not load its data ({error})"
    warnings.warn(f"{path}: the card shows prior samples only: {reason}", stacklevel=3)
    return None


def export_checkpoint(
    checkpoint_path: str | Path,
    folder: str | Path,
    *,
    images: Tensor | None = None,
    trusted: bool = False,
    **facts: Any,
) -> Path:
    """Turn a Lightning checkpoint of a VAE into a model folder (config.json, model.safetensors,
    README.md, samples.png) and return the folder.

    The card's numbers come from the checkpoint (:func:`checkpoint_facts`); ``facts``
    (:class:`~lightning_vae.model_card.CardFacts` fields: ``repo_id``, ``dataset``,
    ``test_elbo``, ``test_log_likelihood``, ...) add to or override them. ``images`` (B, C, H, W)
    are shown with their reconstructions; by default they come from the recorded datamodule.
    """
    if unknown := sorted(set(facts) - {field.name for field in fields(CardFacts)}):
        raise TypeError(f"unknown export arguments {unknown}")
    checkpoint = load_checkpoint(checkpoint_path, trusted)
    model = model_from_checkpoint(checkpoint, checkpoint_path)
    card = vars(checkpoint_facts(checkpoint, checkpoint_path)) | {
        key: value for key, value in facts.items() if value is not None}
    if images is None:
        images = _checkpoint_images(checkpoint, checkpoint_path)
    model.save_pretrained(folder, model_card_kwargs=card | {"images": images})
    return Path(folder)


def push(
    source: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    trusted: bool = False,
    **facts: Any,
) -> str:
    """Upload a model folder, or a checkpoint exported on the way (``facts`` and ``trusted`` as
    in :func:`export_checkpoint`), to the Hub repo ``repo_id``; returns the commit URL.

    Credentials are checked first and a folder is checked to load as a model, so nothing is
    uploaded otherwise; the local folder is only read. A bare ``repo_id`` (``"mnist-vae"``) is
    the token's account's repo, and the exported card names it so.
    """
    token = require_token(repo_id, token)
    repo_id = full_repo_id(repo_id, token)
    source = Path(source)
    if not source.is_dir():
        with tempfile.TemporaryDirectory() as tmp:
            folder = export_checkpoint(source, Path(tmp) / "model", trusted=trusted,
                                       **({"repo_id": repo_id} | facts))
            return push(folder, repo_id, private=private, commit_message=commit_message,
                        token=token)
    if facts or trusted:
        raise ValueError(f"{source} is a model folder, whose card is already written; card "
                         "options and --trust-checkpoint apply to checkpoints only")
    VAE.from_pretrained(source)
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    return str(api.upload_folder(
        repo_id=repo_id, folder_path=source, repo_type="model", ignore_patterns=[STAGING_FILES],
        commit_message=commit_message or f"Upload lightning-vae model from {source.name}",
    ))


class PushToHub(pl.Callback):
    """At the end of ``fit``, export the best checkpoint to ``folder`` (default: ``hub`` in the
    run's log folder) and push it to ``repo_id``, on rank zero only.

    The token (``HF_TOKEN`` or ``hf auth login``; never a recipe value) and that the Hub is not
    switched off (``HF_HUB_OFFLINE``) are checked when fitting starts, so either fails before
    training rather than after (a bare ``repo_id`` is then completed with the token's account,
    which the card names). A failed upload leaves the exported folder in place and says how to
    retry.

    In a recipe::

        trainer:
          callbacks:
            - class_path: lightning_vae.hub.PushToHub
              init_args: {repo_id: user/mnist-vae, private: true}
    """

    def __init__(self, repo_id: str, folder: str | None = None, private: bool | None = None,
                 commit_message: str | None = None) -> None:
        self.repo_id, self.folder = repo_id, folder
        self.private, self.commit_message = private, commit_message

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero:
            return
        if constants.HF_HUB_OFFLINE:
            raise ValueError(
                f"PushToHub pushes to {self.repo_id} when fit ends, but offline mode is on "
                "(HF_HUB_OFFLINE): unset it, or train without the callback and push the "
                "checkpoint later with `lightning-vae push`"
            )
        self.repo_id = full_repo_id(self.repo_id, require_token(self.repo_id, None))
        if trainer.checkpoint_callback is None:
            raise ValueError(
                "PushToHub pushes the best checkpoint, but checkpointing is off: set "
                "trainer.enable_checkpointing=true or add a ModelCheckpoint callback"
            )

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        best = trainer.checkpoint_callback.best_model_path
        if not best:
            raise RuntimeError(f"PushToHub: no checkpoint was saved, nothing to push to "
                               f"{self.repo_id}")
        folder = Path(self.folder or Path(trainer.log_dir or trainer.default_root_dir) / "hub")
        export_checkpoint(best, folder, trusted=True, repo_id=self.repo_id,
                          images=first_images(trainer.val_dataloaders))
        try:
            push(folder, self.repo_id, private=self.private, commit_message=self.commit_message)
        except Exception as error:
            raise RuntimeError(
                f"pushing {folder} to {self.repo_id} failed ({error}); the folder is complete: "
                f"retry with `lightning-vae push {folder} --repo-id {self.repo_id}`"
            ) from error


def _card_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", help="data set name for the card (default: the "
                        "datamodule's dataset_name)")
    parser.add_argument("--val-elbo", type=float, help="validation ELBO, nats per example "
                        "(default: the checkpoint's val/elbo score)")
    parser.add_argument("--test-elbo", type=float, help="test ELBO, nats per example")
    parser.add_argument("--test-log-likelihood", type=float,
                        help="test log-likelihood (importance-weighted bound, i.e. minus the "
                        "logged test/nll_iw), nats per example")
    parser.add_argument("--log-likelihood-samples", type=int,
                        help="importance samples per image behind --test-log-likelihood")
    parser.add_argument("--trust-checkpoint", action="store_true", dest="trusted",
                        help="unpickle a checkpoint that weights_only loading refuses (only "
                        "for your own files)")


def export_main(argv: list[str]) -> None:
    """``lightning-vae export CHECKPOINT FOLDER``: a Lightning checkpoint → a model folder."""
    parser = argparse.ArgumentParser(
        prog="lightning-vae export",
        description="Turn a Lightning checkpoint of a VAE into a Hugging Face model folder.")
    parser.add_argument("checkpoint")
    parser.add_argument("folder")
    parser.add_argument("--repo-id", help="the Hub repo the card's loading snippet names")
    _card_options(parser)
    args = vars(parser.parse_args(argv))
    folder = export_checkpoint(args.pop("checkpoint"), args.pop("folder"), **args)
    print(f"wrote {folder}")


def push_main(argv: list[str]) -> None:
    """``lightning-vae push CHECKPOINT_OR_FOLDER --repo-id user/name``: upload to the Hub."""
    parser = argparse.ArgumentParser(
        prog="lightning-vae push",
        description="Upload a model folder, or a checkpoint exported on the way, to the Hub.")
    parser.add_argument("source", help="a model folder, or a checkpoint to export first")
    parser.add_argument("--repo-id", required=True)
    parser.add_argument("--private", action="store_true", default=None)
    parser.add_argument("--commit-message")
    _card_options(parser)
    args = {key: value for key, value in vars(parser.parse_args(argv)).items()
            if value is not None}
    print(push(args.pop("source"), args.pop("repo_id"), **args))
