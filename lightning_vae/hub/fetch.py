"""Where a model's files come from: a local folder, the zoo installed with the package, or a Hub
repository through huggingface_hub's cache, each failure named with its fix."""

import difflib
import os
from pathlib import Path
from typing import Any

from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HFValidationError,
    LocalTokenNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from lightning_vae.hub.zoo import ZOO, bundled_folder, installed

CONFIG_FILE = constants.CONFIG_NAME
WEIGHTS_FILE = constants.SAFETENSORS_SINGLE_FILE


def model_folder(name_or_path: str | Path, *, revision: str | None = None,
                 cache_dir: str | Path | None = None, force_download: bool = False,
                 token: str | bool | None = None, local_files_only: bool = False,
                 subfolder: str | None = None) -> Path:
    """The local folder holding the model ``name_or_path``'s config.json and model.safetensors
    (in its ``subfolder``, if given, as diffusers' pipelines keep their parts):

    1. the folder at that path, if there is one;
    2. else the zoo's installed copy of a zoo model (:mod:`lightning_vae.hub.zoo`), unless
       ``revision`` or ``force_download`` ask for the Hub's;
    3. else the Hub repository of that id, downloaded into (or found in) the cache.
    """
    source = str(bundled_folder(name_or_path, revision=revision, force_download=force_download)
                 or name_or_path)
    download = {"revision": revision, "cache_dir": cache_dir, "token": token,
                "force_download": force_download, "local_files_only": local_files_only}
    if subfolder and os.path.isdir(source):
        if not os.path.isdir(os.path.join(source, subfolder)):
            raise FileNotFoundError(f"{source} has no subfolder {subfolder!r}; its folders: "
                                    f"{', '.join(sorted(_folders(source))) or 'none'}")
        source = os.path.join(source, subfolder)
    elif subfolder:
        download["subfolder"] = subfolder
    config = fetch_file(source, CONFIG_FILE, download)
    weights = fetch_file(source, WEIGHTS_FILE, download)
    if config.parent != weights.parent:  # a cache snapshot holds both; say so if not
        raise FileNotFoundError(f"{source}: config.json and model.safetensors were found in "
                                f"different folders ({config.parent}, {weights.parent})")
    return config.parent


def fetch_file(source: str, filename: str, download: dict[str, Any]) -> Path:
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
    check_zoo_name(source)
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
            f"accessible: check the name{zoo_suggestion(source)}, or log in (`hf auth login`, "
            "or token=) with access"
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
            f"was downloaded{zoo_suggestion(source)}"
        ) from None
    except (LocalTokenNotFoundError, HFValidationError):  # token=True without one, a bad revision
        raise
    except Exception as error:  # network and server failures, in the HTTP client's own types
        raise OSError(f"downloading {filename} of {repo} failed ({_reason(error)}); files "
                      "already in the cache are kept: retry") from error


ZOO_OWNER = ZOO[0].name.split("/")[0]
"""The Hub account of the zoo (``lightning-vae``): it holds the zoo's models and nothing else."""


def check_zoo_name(name: str) -> None:
    """Refuse a name in the zoo's account that is not a zoo model (a typo, as
    ``lightning-vae/mnist-vea``) at once, naming the closest zoo models, instead of asking the
    Hub for it (retries that take half a minute, then an error about the connection)."""
    if name.split("/")[0] != ZOO_OWNER or name in {model.name for model in ZOO}:
        return
    names = [model.name for model in installed()] or [model.name for model in ZOO]
    raise FileNotFoundError(f"{name!r} is not a zoo model{zoo_suggestion(name) or ''}; the zoo "
                            f"has {', '.join(names)} (`lightning-vae zoo` lists them)")


def zoo_suggestion(name: str) -> str:
    """``"; did you mean 'lightning-vae/mnist-vae'?"`` when ``name`` is close to a zoo
    model's name (with or without the account), else empty."""
    names = {model.name: model.name for model in ZOO}
    names |= {model.name.split("/")[-1]: model.name for model in ZOO}
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.8)
    return f"; did you mean {names[close[0]]!r}?" if close and names[close[0]] != name else ""


def _folders(path: str) -> list[str]:
    return [entry.name for entry in os.scandir(path) if entry.is_dir()]


def first_line(error: BaseException) -> str:
    """An exception's message in one line, for an error of our own that names the file and the
    fix around it: its first line (its type's name when it has no message)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _reason(error: BaseException) -> str:
    """An exception's first line, followed by its cause's where that says more."""
    reason = first_line(error)
    cause = error.__cause__ or error.__context__
    return f"{reason}: {cause}" if cause is not None and str(cause) not in reason else reason
