"""The saved form of a VAE, and huggingface_hub's mixin that writes and reads it.

A model folder (local, or a Hub repository) holds:

- ``config.json``: the VAE's constructor arguments plus ``lightning_vae_version``, the package
  version that wrote them (a newer major version is refused: its format may differ);
- ``model.safetensors``: the weights. Nothing else is ever read from a download, and nothing is
  unpickled, so loading a model runs no code from it;
- ``README.md``, the model card, and ``samples.png``, the picture it shows.
"""

import json
import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from huggingface_hub import HfApi, PyTorchModelHubMixin, constants, get_token, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HFValidationError,
    LocalTokenNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.repocard import ModelCard
from huggingface_hub.utils import validate_repo_id
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model
from torch import Tensor

import lightning_vae
from lightning_vae.atomic import new_file_mode
from lightning_vae.imaging import make_grid, save_image
from lightning_vae.model_card import PICTURE_FILE, REPO_URL, TASK, CardFacts, build_model_card
from lightning_vae.nets import available_architectures
from lightning_vae.zoo import bundled_folder

CONFIG_FILE = constants.CONFIG_NAME
WEIGHTS_FILE = constants.SAFETENSORS_SINGLE_FILE
CARD_FILE = "README.md"
VERSION_KEY = "lightning_vae_version"
STAGING_FILES = ".*.partial/*"
"""What a save killed midway may leave inside a model folder (its staging folder, see
``_staging_folder``): never uploaded."""
CARD_KWARGS = [*sorted(CardFacts.__dataclass_fields__), "images"]
T = TypeVar("T", bound="VAEHubMixin")


def require_token(repo_id: str, token: str | None) -> str:
    """The token to push with (``token``, else ``HF_TOKEN`` or the login's), checked before any
    upload starts so that a push without credentials fails at once and changes nothing."""
    token = token or get_token()
    if not token:
        raise LocalTokenNotFoundError(
            f"cannot push to {repo_id!r}: no Hugging Face token found. Log in with "
            "`hf auth login`, set the HF_TOKEN environment variable, or (in Python) pass "
            "token=...; nothing was uploaded."
        )
    return token


def full_repo_id(repo_id: str, token: str) -> str:
    """``repo_id`` with its namespace. The Hub creates a repo given by bare name (``"mnist-vae"``)
    in the token's account, so the model card's loading snippet must name ``account/name``."""
    if "/" in repo_id:
        return repo_id
    return f"{HfApi(token=token).whoami()['name']}/{repo_id}"


class VAEHubMixin(
    PyTorchModelHubMixin,
    library_name="lightning-vae",
    tags=["vae", "pytorch-lightning"],
    repo_url=REPO_URL,
    docs_url=f"{REPO_URL}#readme",
    license="apache-2.0",
    pipeline_tag=TASK,
):
    """``save_pretrained``, ``from_pretrained`` and ``push_to_hub`` for :class:`~lightning_vae.VAE`.

    The signatures are huggingface_hub's; what differs: weights are safetensors only, saving is
    atomic, and the model card states the model's numbers (see :meth:`save_pretrained`).
    """

    @classmethod
    def argument_names(cls) -> list[str]:
        """The constructor's arguments: what config.json holds besides the version."""
        return [name for name in cls._hub_mixin_init_parameters if name != "self"]

    def hub_config(self) -> dict[str, Any]:
        """The constructor arguments (as JSON values) plus the package version writing them."""
        config = {name: self.hparams[name] for name in self.argument_names()
                  if name in self.hparams}
        try:
            config = json.loads(json.dumps(config))
        except TypeError as error:
            raise TypeError(
                f"{type(self).__name__} arguments must be JSON values to be saved: {error}; "
                "pass plain numbers, strings, lists and dicts to the constructor"
            ) from None
        return config | {VERSION_KEY: lightning_vae.__version__}

    def save_pretrained(
        self,
        save_directory: str | Path,
        *,
        config: dict | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: dict[str, Any] | None = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Write config.json, model.safetensors, README.md and samples.png into
        ``save_directory``.

        ``model_card_kwargs`` takes the fields of :class:`~lightning_vae.model_card.CardFacts`
        (``dataset``, ``steps``, ``val_elbo``, ``test_elbo``, ...: what the card reports) and
        ``images``, a batch (B, C, H, W) in [0, 1] shown above its reconstructions.

        Saving is atomic: everything is written into a temporary sibling folder (or one inside
        ``save_directory`` where only that folder is writable), then moved in file by file with
        config.json last, after removing any old one. An interrupted save leaves a folder without
        config.json, which never loads as a model. Other files in the folder are kept; README.md
        is replaced, since it states this model's numbers. The files get the mode the umask
        gives new files (0o644 under the usual 022).
        """
        if config is not None:
            raise ValueError(
                "config.json of a VAE is written from its constructor arguments; build the "
                "model with the arguments you want instead of passing config="
            )
        card_kwargs = dict(model_card_kwargs or {})
        images = card_kwargs.pop("images", None)
        if unknown := sorted(set(card_kwargs) - set(CARD_KWARGS)):
            raise ValueError(f"unknown model_card_kwargs {unknown}; choose from {CARD_KWARGS}")
        model_config = self.hub_config()
        target = Path(save_directory).resolve()
        if target.exists() and not target.is_dir():
            raise FileExistsError(f"{target} is a file; a model is saved as a folder: choose "
                                  "a path that is a folder or does not exist yet")
        target.parent.mkdir(parents=True, exist_ok=True)
        with _staging_folder(target) as staging_dir:
            staging = Path(staging_dir)
            try:
                self._save_pretrained(staging)
            except SafetensorError as error:  # e.g. a full disk
                raise OSError(f"writing {WEIGHTS_FILE} for {target} failed: {error}; the "
                              "folder is unchanged") from None
            save_image(self.card_picture(images), staging / PICTURE_FILE)
            card = self.generate_model_card(CardFacts(**card_kwargs), images is not None)
            card.save(staging / CARD_FILE)
            (staging / CONFIG_FILE).write_text(json.dumps(model_config, sort_keys=True, indent=2))
            target.mkdir(exist_ok=True)
            (target / CONFIG_FILE).unlink(missing_ok=True)
            mode = new_file_mode()
            for name in (WEIGHTS_FILE, PICTURE_FILE, CARD_FILE, CONFIG_FILE):
                os.chmod(staging / name, mode)  # safetensors writes its file owner-only (0600)
                os.replace(staging / name, target / name)
        if push_to_hub:
            return self.push_to_hub(repo_id or target.name, model_card_kwargs=model_card_kwargs,
                                    **push_to_hub_kwargs)
        return None

    def push_to_hub(self, repo_id: str, *, token: str | None = None,
                    model_card_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> str:
        """Save to a temporary folder and upload it to ``repo_id`` (huggingface_hub's
        ``push_to_hub``: ``private``, ``commit_message``, ``branch``, ... as there), after
        checking for credentials. The card's loading snippet names ``repo_id``, completed with
        the token's account when it is a bare name (where the Hub creates it)."""
        token = require_token(repo_id, token)
        repo_id = full_repo_id(repo_id, token)
        card_kwargs = {"repo_id": repo_id} | (model_card_kwargs or {})
        return super().push_to_hub(repo_id, token=token, model_card_kwargs=card_kwargs, **kwargs)

    def generate_model_card(self, facts: CardFacts | None = None,
                            reconstructions: bool = False) -> ModelCard:
        """The model card: metadata for the Hub and a body stating the model and its numbers."""
        return build_model_card(self.hub_config(), facts or CardFacts(),
                                self._hub_mixin_info.model_card_data, reconstructions)

    @torch.no_grad()
    def card_picture(self, images: Tensor | None = None, columns: int = 8) -> np.ndarray:
        """The card's picture as a uint8 array: up to ``columns`` of ``images`` above their
        reconstructions (when images are given), then two rows of prior samples (seed 0, so
        the same model always gives the same picture)."""
        was_training = self.training
        self.eval()
        try:
            rows = []
            if images is not None:
                if tuple(images.shape[1:]) != tuple(self.image_shape):
                    raise ValueError(
                        f"card images have shape {tuple(images.shape[1:])} but the model takes "
                        f"{tuple(self.image_shape)}; pass images from the model's data set"
                    )
                columns = min(columns, len(images))
                inputs = images[:columns].to(device=self.device, dtype=self.dtype)
                rows += [inputs, self.reconstruct(inputs)]
            generator = torch.Generator(device=self.device).manual_seed(0)
            rows.append(self.sample(2 * columns, generator=generator))
            return make_grid(torch.cat(rows), nrow=columns)
        finally:
            self.train(was_training)

    @classmethod
    def from_pretrained(
        cls: type[T],
        pretrained_model_name_or_path: str | Path,
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        map_location: str | torch.device = "cpu",
        **model_kwargs: Any,
    ) -> T:
        """A model from a local folder or a Hub repository id (``"user/name"``), in eval mode.

        Hub files go through huggingface_hub's cache (``cache_dir``, default ``HF_HUB_CACHE``),
        so ``HF_HUB_OFFLINE=1`` serves them from there. ``model_kwargs`` override config
        values (e.g. ``lr`` to fine-tune with). Only config.json and model.safetensors are read.
        A zoo name (:mod:`lightning_vae.zoo`) loads the copy installed with the package,
        unless ``revision`` or ``force_download`` asks for the Hub's.
        """
        source = str(bundled_folder(pretrained_model_name_or_path, revision=revision,
                                    force_download=force_download)
                     or pretrained_model_name_or_path)
        download = {"revision": revision, "cache_dir": cache_dir, "token": token,
                    "force_download": force_download, "local_files_only": local_files_only}
        if unknown := sorted(set(model_kwargs) - set(cls.argument_names())):
            raise TypeError(
                f"from_pretrained got unknown arguments {unknown}: extra keyword arguments "
                f"override config.json values; choose from {cls.argument_names()}"
            )
        config = cls._read_config(_fetch(source, CONFIG_FILE, download), source)
        try:
            model = cls(**(config | model_kwargs))
        except (TypeError, ValueError) as error:  # a TypeError: a value of the wrong JSON type
            overrides = f" with the overrides {model_kwargs}" if model_kwargs else ""
            raise ValueError(
                f"{source}: config.json{overrides} does not build a model: {error}; check the "
                "values against the VAE's arguments (if the file was edited by hand, or save "
                "the model again)"
            ) from None
        _load_weights(model, _fetch(source, WEIGHTS_FILE, download), source)
        return model.to(map_location).eval()

    @classmethod
    def _read_config(cls, path: Path, source: str) -> dict[str, Any]:
        """Constructor arguments from config.json, refused when a newer major version wrote them,
        when they hold options this version does not know, or name an unregistered architecture.
        """
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} (of {source}) is not valid JSON: {error}") from None
        if not isinstance(config, dict):
            raise ValueError(f"{path} (of {source}) must hold a JSON object, got {config!r}")
        version = config.pop(VERSION_KEY, None)
        if version is not None and _major(version, path) > _major(lightning_vae.__version__, path):
            raise ValueError(
                f"{source}: config.json was written by lightning-vae {version}, a newer major "
                f"version than this one ({lightning_vae.__version__}); upgrade with "
                "`pip install -U lightning-vae`"
            )
        if unknown := sorted(set(config) - set(cls.argument_names())):
            raise ValueError(
                f"{source}: config.json has options this lightning-vae "
                f"({lightning_vae.__version__}) does not know: {unknown} (written by "
                f"{version or 'an unknown version'}); upgrade lightning-vae, or remove them if "
                "the file was edited by hand"
            )
        arch = config.get("arch", cls._hub_mixin_init_parameters["arch"].default)
        if arch not in available_architectures():
            raise ValueError(
                f"{source}: config.json names architecture {arch!r}, which is not registered "
                f"here (registered: {available_architectures()}); import the module that "
                "registers it (lightning_vae.register_architecture) before loading"
            )
        return config


def _staging_folder(target: Path) -> tempfile.TemporaryDirectory:
    """An empty temporary folder on ``target``'s file system, to write a model into before
    moving it in: beside ``target``, or inside it where only the folder itself is writable."""
    names = {"prefix": f".{target.name}.", "suffix": ".partial"}
    try:
        return tempfile.TemporaryDirectory(dir=target.parent, **names)
    except OSError as error:
        if target.is_dir():
            try:
                return tempfile.TemporaryDirectory(dir=target, **names)
            except OSError:
                pass
        raise OSError(f"cannot write the model folder {target} ({error.strerror} in "
                      f"{target.parent}); choose a folder you can write to") from None


def _major(version: object, path: Path) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        raise ValueError(f"{path}: unreadable {VERSION_KEY} {version!r}") from None


def _fetch(source: str, filename: str, download: dict[str, Any]) -> Path:
    """``filename`` from the local folder ``source``, or from the Hub repo ``source`` through
    huggingface_hub's cache."""
    if os.path.isdir(source):
        path = Path(source) / filename
        if not path.is_file():
            raise FileNotFoundError(
                f"{source} has no {filename}, so it is not a complete model folder; write one "
                "with model.save_pretrained(folder) or `lightning-vae export CHECKPOINT FOLDER`"
            )
        return path
    if os.path.isfile(source):
        raise FileNotFoundError(
            f"{source} is a file, not a model folder; if it is a Lightning checkpoint, turn it "
            f"into one with `lightning-vae export {source} FOLDER`"
        )
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise FileNotFoundError(f"no model folder at {source}")
    try:
        validate_repo_id(source)
    except HFValidationError:
        raise FileNotFoundError(f"no model folder at {source!r}, and it is not a Hub repo id "
                                "(user/name) either") from None
    repo = f"Hub repo {source!r} (revision {download['revision'] or 'main'})"
    if download["force_download"] and constants.HF_HUB_OFFLINE:
        raise ValueError(f"force_download=True asks the Hub for {repo}, but offline mode is on "
                         "(HF_HUB_OFFLINE): unset it, or load the cached copy without "
                         "force_download")
    try:
        return Path(hf_hub_download(repo_id=source, filename=filename, **download))
    except RemoteEntryNotFoundError:
        raise FileNotFoundError(
            f"{repo} has no {filename}: it does not hold a lightning-vae model; push a complete "
            "folder with `lightning-vae push`"
        ) from None
    except RepositoryNotFoundError:  # also a private or gated repo without access
        raise FileNotFoundError(
            f"no folder {source!r} here, and {repo} was not found on the Hub or is not "
            "accessible: check the name, or log in (`hf auth login`, or token=) with access"
        ) from None
    except RevisionNotFoundError:
        raise FileNotFoundError(f"{repo}: the Hub has no such revision; pass an existing "
                                "branch, tag or commit") from None
    except EntryNotFoundError as error:  # the local variant: not cached, and no connection
        if download["local_files_only"]:
            fix = "leave out local_files_only=True to download it"
        elif constants.HF_HUB_OFFLINE:
            fix = "unset HF_HUB_OFFLINE to download it"
        else:
            fix = "check the connection to the Hub and retry"
        raise FileNotFoundError(
            f"no folder {source!r} here, and {filename} of {repo} is not in the Hugging Face "
            f"cache and could not be downloaded ({error}); {fix}, or pass cache_dir= where it "
            "was downloaded"
        ) from None
    except (LocalTokenNotFoundError, HFValidationError):  # token=True without one, a bad revision
        raise
    except Exception as error:  # network and server failures, in the HTTP client's own types
        raise OSError(f"downloading {filename} of {repo} failed ({_reason(error)}); files "
                      "already in the cache are kept: retry") from error


def first_line(error: BaseException) -> str:
    """An exception's message in one line, for an error of our own that names the file and the
    fix around it: its first line (its type's name when it has no message)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _reason(error: BaseException) -> str:
    """An exception's first line, followed by its cause's where that says more."""
    reason = first_line(error)
    cause = error.__cause__ or error.__context__
    return f"{reason}: {cause}" if cause is not None and str(cause) not in reason else reason


def _load_weights(model: torch.nn.Module, path: Path, source: str) -> None:
    """Load safetensors weights, checking every stored shape against the model the config
    built, so that mismatched files fail with the tensors at fault named, and that every
    weight is finite."""
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    try:
        with safe_open(path, framework="pt") as f:
            stored = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
        mismatched = [f"{name}: stored {shape}, config builds {expected[name]}"
                      for name, shape in stored.items()
                      if name in expected and shape != expected[name]]
        if mismatched:
            raise ValueError(
                f"{path} (of {source}) does not fit the model its config.json describes:\n  "
                + "\n  ".join(mismatched)
                + "\nconfig.json and model.safetensors come from different models; save both "
                "again with save_pretrained"
            )
        missing, unexpected = load_model(model, path, strict=False)
    except SafetensorError as error:
        raise ValueError(
            f"{path} (of {source}) is not a readable safetensors file ({error}); it may be "
            "truncated: download it again with force_download=True, or save the model again"
        ) from None
    if missing or unexpected:
        raise ValueError(
            f"{path} (of {source}) does not fit the model its config.json describes: missing "
            f"{missing}, unexpected {unexpected}; save config and weights again together"
        )
    # safetensors has no checksum: a damaged file whose header survives loads bytes as numbers
    broken = [name for name, tensor in model.state_dict().items()
              if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if broken:
        raise ValueError(
            f"{path} (of {source}) holds NaN or infinite weights ({', '.join(broken[:3])}"
            f"{', ...' if len(broken) > 3 else ''}): the file is damaged or the model diverged; "
            "download it again with force_download=True, or save it again from a good checkpoint"
        )
