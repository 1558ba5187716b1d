"""The saved form of a model, and huggingface_hub's mixin that writes and reads it.

A model folder (local, or a Hub repository) holds:

- ``config.json``: the model's constructor arguments, which describe its architecture only
  (no optimizer, schedule, compile or evaluation setting), plus ``lightning_vae_version``, the
  package version that wrote them (a newer major version is refused: its format may differ);
- ``model.safetensors``: the weights. Nothing else is ever read from a download, and nothing is
  unpickled, so loading a model runs no code from it;
- ``README.md``, the model card (:mod:`lightning_vae.hub.card`), which also states how the
  weights were trained, and ``samples.png``, the picture it shows.

huggingface_hub's hooks do the work: ``_save_pretrained`` writes the weights,
``generate_model_card`` the card, ``_from_pretrained`` builds the model from a folder. The public
methods add only what the hooks cannot: ``save_pretrained`` stages the folder and moves it in
whole, ``from_pretrained`` first finds the folder (:mod:`lightning_vae.hub.fetch`).
"""

import json
import os
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from huggingface_hub import HfApi, PyTorchModelHubMixin, get_token
from huggingface_hub.errors import LocalTokenNotFoundError
from huggingface_hub.repocard import ModelCard
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model
from torch import Tensor

import lightning_vae
from lightning_vae.atomic import carry_over, new_file_mode, staging_folder, swap_folder
from lightning_vae.hub.card import PICTURE_FILE, REPO_URL, TASK, CardFacts, build_model_card
from lightning_vae.hub.fetch import CONFIG_FILE, WEIGHTS_FILE, model_folder
from lightning_vae.imaging import make_grid, save_image

CARD_FILE = "README.md"
MODEL_FILES = (WEIGHTS_FILE, PICTURE_FILE, CARD_FILE, CONFIG_FILE)
"""What a save writes, config.json last (the order files are moved in one by one)."""
MAX_CONFIG_BYTES = 1 << 20
"""A config.json larger than this (1 MiB; a real one is under 1 KiB) is not read."""
VERSION_KEY = "lightning_vae_version"
STAGING_FILES = ".*.partial/*"
"""What a save killed midway may leave inside a model folder (its staging folder, see
:func:`~lightning_vae.atomic.staging_folder`): never uploaded."""
CARD_KWARGS = [*sorted(CardFacts.__dataclass_fields__), "images"]
LEGACY_TRAINING_KEYS = ("beta", "beta_schedule", "optimizer", "lr", "weight_decay", "iw_samples",
                        "iw_chunk_size", "fused_optimizer", "channels_last", "compile_mode",
                        "cuda_graph")
"""Training settings that 0.1.0 wrote into config.json beside the architecture: ignored when
reading a folder written before 0.2.0 (in a newer one they are unknown options)."""
T = TypeVar("T", bound="ModelFolderMixin")


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


class ModelFolderMixin(
    PyTorchModelHubMixin,
    library_name="lightning-vae",
    tags=["vae", "pytorch-lightning"],
    repo_url=REPO_URL,
    docs_url=f"{REPO_URL}#readme",
    license="apache-2.0",
    pipeline_tag=TASK,
):
    """``save_pretrained``, ``from_pretrained`` and ``push_to_hub`` for a model whose
    constructor arguments are JSON values, kept in its ``config`` dict; the model provides
    ``reconstruct``, ``sample``, ``image_shape`` (for the card's picture) and
    ``check_config`` (what a config.json must hold to build it).

    The signatures are huggingface_hub's; what differs: weights are safetensors only, saving is
    atomic, and the model card states the model's numbers.
    """

    config: dict[str, Any]

    @classmethod
    def argument_names(cls) -> list[str]:
        """The constructor's arguments: what config.json holds besides the version."""
        return [name for name in cls._hub_mixin_init_parameters if name != "self"]

    def hub_config(self) -> dict[str, Any]:
        """The constructor arguments (as JSON values) plus the package version writing them."""
        return self.config | {VERSION_KEY: lightning_vae.__version__}

    def save_pretrained(
        self,
        save_directory: str | Path,
        *,
        config: dict | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: dict[str, Any] | None = None,
        force: bool = False,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Write config.json, model.safetensors, README.md and samples.png into
        ``save_directory``.

        ``model_card_kwargs`` takes the fields of :class:`~lightning_vae.hub.card.CardFacts`
        (``dataset``, ``steps``, ``training``, ``val_elbo``, ``test_elbo``, ...: what the card
        reports) and ``images``, a batch (B, C, H, W) in [0, 1] shown above its reconstructions.

        Saving is atomic: huggingface_hub's ``save_pretrained`` writes everything into a
        temporary sibling folder, which then takes the place of ``save_directory`` in one step
        (:func:`~lightning_vae.atomic.swap_folder`): a crash at any point leaves the old model
        or the new one, whole. Other files in an existing folder (notes, ``.git``) are kept
        (hard-linked into the new folder); a folder holding README.md, config.json,
        model.safetensors or samples.png that no lightning-vae save wrote is refused unless
        ``force``, since those would be replaced. Where only ``save_directory`` itself is
        writable (not its parent), the staging folder lies inside it and its files are moved in
        one by one, config.json last after removing the old one, so an interrupted save leaves
        a folder that never loads. The files get the mode the umask gives new files (0o644
        under the usual 022).
        """
        if config is not None:
            raise ValueError(
                "config.json of a model is written from its constructor arguments; build the "
                "model with the arguments you want instead of passing config="
            )
        card_kwargs = dict(model_card_kwargs or {})
        images = card_kwargs.pop("images", None)
        if unknown := sorted(set(card_kwargs) - set(CARD_KWARGS)):
            raise ValueError(f"unknown model_card_kwargs {unknown}; choose from {CARD_KWARGS}")
        target = Path(save_directory).resolve()
        if target.exists() and not target.is_dir():
            raise FileExistsError(f"{target} is a file; a model is saved as a folder: choose "
                                  "a path that is a folder or does not exist yet")
        if not force and (foreign := foreign_model_files(target)):
            raise FileExistsError(
                f"{target} holds {', '.join(foreign)}, which no lightning-vae save wrote (its "
                f"config.json has no {VERSION_KEY}); saving would replace them: choose another "
                "folder, or pass force=True (--force) to replace them"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        picture = self.card_picture(images)
        with staging_folder(target) as staging_dir:
            staging = Path(staging_dir)
            try:
                super().save_pretrained(
                    staging, config=self.hub_config(),
                    model_card_kwargs=card_kwargs | {"reconstructions": images is not None})
            except SafetensorError as error:  # e.g. a full disk
                raise OSError(f"writing {WEIGHTS_FILE} for {target} failed: {error}; the "
                              "folder is unchanged") from None
            save_image(picture, staging / PICTURE_FILE)
            mode = new_file_mode()
            for name in MODEL_FILES:
                os.chmod(staging / name, mode)  # safetensors writes its file owner-only (0600)
            if staging.parent == target.parent:
                if target.is_dir():
                    carry_over(target, staging, [path.name for path in target.iterdir()
                                                 if path.name not in MODEL_FILES
                                                 and not _is_staging(path.name)])
                swap_folder(staging, target)
            else:  # staged inside the folder: its parent is read-only
                (target / CONFIG_FILE).unlink(missing_ok=True)
                for name in MODEL_FILES:
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

    def generate_model_card(self, reconstructions: bool = False, **facts: Any) -> ModelCard:
        """The model card: metadata for the Hub and a body stating the model and its numbers
        (``facts``: :class:`~lightning_vae.hub.card.CardFacts` fields)."""
        return build_model_card(self.hub_config(), CardFacts(**facts),
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
        torch_dtype: torch.dtype | str | None = None,
        subfolder: str | None = None,
        **model_kwargs: Any,
    ) -> T:
        """A model from a local folder, a zoo name or a Hub repository id (``"user/name"``),
        in eval mode.

        Hub files go through huggingface_hub's cache (``cache_dir``, default ``HF_HUB_CACHE``),
        so ``HF_HUB_OFFLINE=1`` serves them from there. ``model_kwargs`` override config
        values. Only config.json and model.safetensors are read. A zoo name
        (:mod:`lightning_vae.hub.zoo`) loads the copy installed with the package, unless
        ``revision`` or ``force_download`` asks for the Hub's. As in diffusers, ``torch_dtype``
        (``torch.float16``, or its name ``"float16"``) casts the weights after loading, and
        ``subfolder`` names the folder of the model inside the repository or folder.
        """
        if unknown := sorted(set(model_kwargs) - set(cls.argument_names())):
            raise TypeError(
                f"from_pretrained got unknown arguments {unknown}: extra keyword arguments "
                f"override config.json values; choose from {cls.argument_names()}"
            )
        dtype = _floating_dtype(torch_dtype)
        folder = model_folder(pretrained_model_name_or_path, revision=revision,
                              cache_dir=cache_dir, force_download=force_download, token=token,
                              local_files_only=local_files_only, subfolder=subfolder)
        try:
            model = super().from_pretrained(folder, map_location=map_location,
                                            overrides=model_kwargs)
        except RecursionError:  # json's reader, on arrays or objects nested thousands deep
            raise ValueError(f"{Path(folder) / CONFIG_FILE} nests too deeply to be a model's "
                             "config; save the model again") from None
        return model.to(map_location, dtype).eval()

    @classmethod
    def _from_pretrained(cls: type[T], *, model_id: str, config: dict[str, Any] | None,
                         overrides: dict[str, Any], map_location: str | torch.device = "cpu",
                         **kwargs: Any) -> T:
        """huggingface_hub's hook: the model from the folder ``model_id`` that
        :meth:`from_pretrained` found, built from its config.json (read into ``config``) with
        the caller's ``overrides``. ``kwargs`` hold the download options, unused since the
        folder is local by now, and the config's values as huggingface_hub passes them."""
        folder = Path(model_id)
        if config is None:
            raise FileNotFoundError(f"{folder} has no readable {CONFIG_FILE}")
        config = cls._checked_config(config, folder / CONFIG_FILE)
        try:
            model = cls(**(config | overrides))
        except (TypeError, ValueError) as error:  # a TypeError: a value of the wrong JSON type
            with_overrides = f" with the overrides {overrides}" if overrides else ""
            raise ValueError(
                f"{folder}: config.json{with_overrides} does not build a model: {error}; check "
                "the values against the model's arguments (if the file was edited by hand, or "
                "save the model again)"
            ) from None
        _load_weights(model, folder / WEIGHTS_FILE, str(folder))
        return model

    @classmethod
    def _checked_config(cls, config: Any, path: Path) -> dict[str, Any]:
        """Constructor arguments from config.json, refused when a newer major version wrote them
        or when they hold options this version does not know; the training settings of a
        config written before 0.2.0 are dropped. The model's ``check_config`` adds its own
        checks."""
        if not isinstance(config, dict):
            raise ValueError(f"{path} must hold a JSON object, got {config!r}")
        config = dict(config)
        version = config.pop(VERSION_KEY, None)
        release = None if version is None else _release(version, path)
        if release is not None and release[0] > _release(lightning_vae.__version__, path)[0]:
            raise ValueError(
                f"{path} was written by lightning-vae {version}, a newer major version than "
                f"this one ({lightning_vae.__version__}); upgrade with "
                "`pip install -U lightning-vae`"
            )
        if release is None or release < (0, 2):
            config = {name: value for name, value in config.items()
                      if name not in LEGACY_TRAINING_KEYS}
        if unknown := sorted(set(config) - set(cls.argument_names())):
            raise ValueError(
                f"{path} has options this lightning-vae ({lightning_vae.__version__}) does not "
                f"know: {unknown} (written by {version or 'an unknown version'}); upgrade "
                "lightning-vae, or remove them if the file was edited by hand"
            )
        cls.check_config(config, path)
        return config

    @classmethod
    def check_config(cls, config: dict[str, Any], path: Path) -> None:
        """Refuse a config this model class cannot build, naming the fix (subclasses add
        checks, such as an unregistered architecture)."""


def _floating_dtype(torch_dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``from_pretrained``'s ``torch_dtype``: a floating-point torch dtype, or its name."""
    dtype = getattr(torch, torch_dtype, None) if isinstance(torch_dtype, str) else torch_dtype
    if torch_dtype is not None and not (isinstance(dtype, torch.dtype)
                                        and dtype.is_floating_point):
        raise ValueError(f"torch_dtype={torch_dtype!r} is not a floating-point torch dtype; pass "
                         "one such as torch.float16, torch.bfloat16 or torch.float32")
    return dtype


def foreign_model_files(folder: Path) -> list[str]:
    """The files of ``folder`` a save would replace though no lightning-vae save wrote them:
    every model file present, when its config.json is not a JSON object naming the version
    that wrote it (a user's own README.md or config.json)."""
    present = [name for name in MODEL_FILES if os.path.lexists(folder / name)]
    if not present:
        return []
    config_path = folder / CONFIG_FILE
    try:
        if config_path.is_file() and config_path.stat().st_size <= MAX_CONFIG_BYTES:
            config = json.loads(config_path.read_bytes())
            if isinstance(config, dict) and VERSION_KEY in config:
                return []
    except (OSError, ValueError, RecursionError):
        pass
    return present


def _is_staging(name: str) -> bool:
    """Whether ``name`` is a staging folder a killed save left (never kept or uploaded)."""
    return name.startswith(".") and (name.endswith(".partial") or name.endswith(".partial.old"))


def _release(version: object, path: Path) -> tuple[int, int]:
    """(major, minor) of a version string such as "0.1.0"."""
    try:
        major, minor, *_ = (str(version) + ".0").split(".")
        return int(major), int(minor)
    except ValueError:
        raise ValueError(f"{path}: unreadable {VERSION_KEY} {version!r}") from None


def _load_weights(model: torch.nn.Module, path: Path, source: str) -> None:
    """Load safetensors weights, checking every stored shape and type against the model the
    config built (integer or bool tensors where weights belong would be cast to numbers
    silently), so that mismatched files fail with the tensors at fault named, and that every
    weight is finite."""
    state = model.state_dict()
    expected = {name: tuple(tensor.shape) for name, tensor in state.items()}
    try:
        with safe_open(path, framework="pt") as f:
            slices = {name: f.get_slice(name) for name in f.keys()}  # noqa: SIM118
            stored = {name: tuple(piece.get_shape()) for name, piece in slices.items()}
            kinds = {name: piece.get_dtype() for name, piece in slices.items()}
        mismatched = [f"{name}: stored {shape}, config builds {expected[name]}"
                      for name, shape in stored.items()
                      if name in expected and shape != expected[name]]
        not_float = [f"{name} ({kinds[name]})" for name in stored
                     if name in state and state[name].is_floating_point()
                     and not kinds[name].startswith(("F", "BF"))]
        if not_float:
            raise ValueError(
                f"{path} (of {source}) stores integer or bool tensors where the model has "
                f"floating-point weights: {', '.join(not_float[:3])}"
                f"{', ...' if len(not_float) > 3 else ''}; it is not a saved model's weights: "
                "save the model again with save_pretrained"
            )
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
