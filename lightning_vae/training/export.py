"""From a Lightning checkpoint to the Hugging Face Hub: turn it into a model folder
(``lightning-vae export``), and publish it (``lightning-vae push``, or the :class:`PushToHub`
callback at the end of ``fit``). The folder format, the checks made on loading and the model
card live in :mod:`lightning_vae.hub`."""

import tempfile
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from huggingface_hub import HfApi, constants
from huggingface_hub import errors as hub_errors
from torch import Tensor

from lightning_vae.hub.card import CardFacts
from lightning_vae.hub.fetch import first_line
from lightning_vae.hub.format import STAGING_FILES, full_repo_id, require_token
from lightning_vae.model import VAEModel
from lightning_vae.training.checkpoints import (
    checkpoint_facts,
    datamodule_class,
    load_checkpoint,
    model_from_checkpoint,
)
from lightning_vae.training.module import WORKING_FOLDER_KEY

NETWORK_ERRORS = (getattr(hub_errors, "HTTPError", hub_errors.HfHubHTTPError),)
"""What huggingface_hub's HTTP client raises when the Hub cannot be reached or answers with an
error (its HTTP status errors derive from it)."""


def first_images(loader: Any, n: int = 8) -> Tensor | None:
    """Up to ``n`` images from the first ``(images, labels)`` batch of ``loader`` (None when
    the loader is missing or empty)."""
    loader = loader[0] if isinstance(loader, list | tuple) and loader else loader
    batch = next(iter(loader), None) if loader is not None else None
    if batch is None:
        return None
    images = batch[0] if isinstance(batch, list | tuple) else batch
    return images[:n].cpu()


def _checkpoint_images(checkpoint: dict[str, Any], path: str | Path, trusted: bool
                       ) -> Tensor | None:
    """Validation (else test) images from the datamodule the checkpoint records, rebuilt with
    the same options, when the checkpoint is ``trusted`` and the datamodule is one of this
    package's (:data:`~lightning_vae.training.checkpoints.DATAMODULES`); None, with a warning
    saying why, otherwise or when the data is not at hand. Nothing is downloaded:
    ``prepare_data`` is not called."""
    hparams = checkpoint.get("datamodule_hyper_parameters")
    hparams = hparams if isinstance(hparams, dict) else {}
    recorded, datamodule_type = hparams.get("_class_path"), datamodule_class(hparams)
    data_dir, trained_in, note = hparams.get("data_dir"), checkpoint.get(WORKING_FOLDER_KEY), ""
    if isinstance(data_dir, str) and not Path(data_dir).is_absolute():  # relative to the run's
        if trained_in:
            hparams = hparams | {"data_dir": str(Path(trained_in) / data_dir)}
        else:
            note = (f"; its data_dir {data_dir!r} is relative, and this checkpoint does not "
                    "record the folder training ran in: run export from that folder")
    if datamodule_type is None:
        reason = ("the checkpoint does not record a datamodule" if recorded is None else
                  f"the checkpoint records the datamodule {str(recorded)[:200]!r}, which is not "
                  "one of lightning_vae's (only those are ever built from a checkpoint)")
    elif not trusted:
        reason = (f"its datamodule ({datamodule_type.__name__}) is rebuilt from the checkpoint's "
                  "values only for a trusted checkpoint: pass --trust-checkpoint (trusted=True) "
                  "for your own file")
    else:
        try:
            datamodule = datamodule_type(
                **{key: value for key, value in hparams.items() if not key.startswith("_")})
            datamodule.setup("validate")
            images = first_images(datamodule.val_dataloader())
            return images if images is not None else first_images(datamodule.test_dataloader())
        except Exception as error:  # any failure only costs the picture its reconstructions
            reason = f"{datamodule_type.__name__} could not load its data ({error}){note}"
    warnings.warn(f"{path}: the card shows prior samples only: {reason}", stacklevel=3)
    return None


def export_checkpoint(
    checkpoint_path: str | Path,
    folder: str | Path,
    *,
    images: Tensor | None = None,
    trusted: bool = False,
    force: bool = False,
    **facts: Any,
) -> Path:
    """Turn a Lightning checkpoint of a VAE into a model folder (config.json, model.safetensors,
    README.md, samples.png) and return the folder.

    The card's numbers come from the checkpoint (:func:`checkpoint_facts`); ``facts``
    (:class:`~lightning_vae.hub.card.CardFacts` fields: ``repo_id``, ``dataset``,
    ``test_elbo``, ``test_log_likelihood``, ...) add to or override them. ``images`` (B, C, H, W)
    are shown with their reconstructions; by default they come from the recorded datamodule
    when ``trusted``. ``trusted`` also unpickles a checkpoint that safe loading refuses (see
    :func:`~lightning_vae.training.checkpoints.load_checkpoint`). The folder is replaced in one
    step (:meth:`~lightning_vae.hub.format.ModelFolderMixin.save_pretrained`); one holding model
    files no lightning-vae save wrote is refused unless ``force``.
    """
    if unknown := sorted(set(facts) - {field.name for field in fields(CardFacts)}):
        raise TypeError(f"unknown export arguments {unknown}")
    checkpoint = load_checkpoint(checkpoint_path, trusted)
    model = model_from_checkpoint(checkpoint, checkpoint_path)
    card = vars(checkpoint_facts(checkpoint, checkpoint_path)) | {
        key: value for key, value in facts.items() if value is not None}
    if images is None:
        images = _checkpoint_images(checkpoint, checkpoint_path, trusted)
    model.save_pretrained(folder, model_card_kwargs=card | {"images": images}, force=force)
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
    try:
        return _push(source, repo_id, private, commit_message, token, trusted, facts)
    except NETWORK_ERRORS as error:
        raise OSError(f"cannot reach the Hugging Face Hub to push to {repo_id} "
                      f"({type(error).__name__}: {first_line(error)}); check the network (and "
                      "HF_ENDPOINT); nothing was uploaded") from error


def _push(source: str | Path, repo_id: str, private: bool | None, commit_message: str | None,
          token: str, trusted: bool, facts: dict[str, Any]) -> str:
    """:func:`push` once the token is known."""
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
    VAEModel.from_pretrained(source)
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
            - class_path: lightning_vae.PushToHub
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
