"""Shared fixtures: tiny generated MNIST-layout folders of IDX files, the real data's paths,
the Hugging Face Hub as tests meet it (offline, with or without credentials, uploads recorded),
and the command run where writes fail as on a full disk."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import numpy as np
import pytest
from hub_cache import COMMIT, folder_bytes
from huggingface_hub import HfApi, RepoUrl
from huggingface_hub.utils import filter_repo_objects
from idx_files import write_idx

MNIST_FILE_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def tiny_images(labels: np.ndarray, seed: int) -> np.ndarray:
    """uint8 (N, 28, 28) grey blobs, one position per class, jittered: learnable structure."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:28, 0:28]
    centre_row = 8 + 12 * (labels // 5) + rng.uniform(-1.5, 1.5, len(labels))
    centre_col = 4 + 5 * (labels % 5) + rng.uniform(-1.5, 1.5, len(labels))
    dist2 = (rows - centre_row[:, None, None]) ** 2 + (cols - centre_col[:, None, None]) ** 2
    return np.round(255 * np.exp(-dist2 / (2 * 2.5**2))).astype(np.uint8)


def write_tiny_mnist(
    folder: Path, *, compress: bool = True, n_train: int = 256, n_test: int = 64
) -> Path:
    """Write the four MNIST-named IDX files (gzipped or not) with labels 0..9 cycled."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", tiny_images(labels, seed))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return folder


@pytest.fixture
def tiny_mnist_dir(tmp_path: Path) -> Path:
    """A folder with gzipped ``train-images-idx3-ubyte.gz`` etc.: 256 train / 64 test images."""
    return write_tiny_mnist(tmp_path / "tiny_mnist")


@pytest.fixture
def tiny_mnist_raw_dir(tmp_path: Path) -> Path:
    """The same tiny data set as uncompressed IDX files (``train-images-idx3-ubyte`` etc.)."""
    return write_tiny_mnist(tmp_path / "tiny_mnist_raw", compress=False)


@pytest.fixture
def no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset $LIGHTNING_VAE_DATA so only the folders a test names are searched."""
    monkeypatch.delenv("LIGHTNING_VAE_DATA", raising=False)


@pytest.fixture(scope="session")
def shared_mnist_dir() -> Path:
    """The real MNIST (four .gz files) next to the repository; skips when absent."""
    if not all((SHARED_MNIST / f"{name}.gz").is_file() for name in MNIST_FILE_NAMES):
        pytest.skip(f"real MNIST not found at {SHARED_MNIST}")
    return SHARED_MNIST


@pytest.fixture(scope="session")
def system_fashion_mnist_dir() -> Path:
    """Debian's Fashion-MNIST (package dataset-fashion-mnist); skips when absent."""
    if not all((SYSTEM_FASHION_MNIST / f"{n}.gz").is_file() for n in MNIST_FILE_NAMES):
        pytest.skip(
            f"Fashion-MNIST not found at {SYSTEM_FASHION_MNIST} "
            "(apt-get install dataset-fashion-mnist)"
        )
    return SYSTEM_FASHION_MNIST


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub offline mode as HF_HUB_OFFLINE=1 gives it. huggingface_hub 2.4 reads the variable
    once, when it is imported, into ``constants.HF_HUB_OFFLINE``, and ``is_offline_mode()``
    (checked before every HTTP request) returns that constant: setting the variable now would
    change nothing, so the constant is set too."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def no_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Hugging Face credentials: no token variables, and the token file (whose path
    huggingface_hub reads from ``constants.HF_TOKEN_PATH`` at each call) missing."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


@pytest.fixture
def token(no_token: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """A Hugging Face token in HF_TOKEN, and no other credentials; returns it."""
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    return "hf_test_token"


@pytest.fixture
def hub_api(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The one fake in the Hub tests, because no Hub server is reachable: ``HfApi.create_repo``
    and ``HfApi.upload_folder`` record what would be created and uploaded (the files' bytes, at
    the time of the call, less those its ``ignore_patterns`` leave out, matched by
    huggingface_hub's own filter). Set ``fail`` to an exception to make the upload fail."""
    record = SimpleNamespace(created=[], uploads=[], fail=None)

    def create_repo(api, repo_id, *, private=None, exist_ok=False, **kwargs):
        record.created.append({"repo_id": repo_id, "private": private, "token": api.token})
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(api, *, repo_id, folder_path, commit_message=None, ignore_patterns=None,
                      **kwargs):
        if record.fail is not None:
            raise record.fail
        files = folder_bytes(Path(folder_path))
        kept = set(filter_repo_objects(files, ignore_patterns=ignore_patterns))
        record.uploads.append({"repo_id": repo_id, "commit_message": commit_message,
                               "files": {name: data for name, data in files.items()
                                         if name in kept}})
        return f"https://huggingface.co/{repo_id}/commit/{COMMIT}"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return record


def write_capped(argv: list[str], max_bytes: int) -> subprocess.CompletedProcess:
    """``lightning-vae ARGV`` in a child process that may write files of at most ``max_bytes``
    (RLIMIT_FSIZE): a write beyond fails with EFBIG, as on a full disk."""
    def cap() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return subprocess.run([sys.executable, "-m", "lightning_vae.cli", *argv], preexec_fn=cap,
                          capture_output=True, text=True, timeout=300)
