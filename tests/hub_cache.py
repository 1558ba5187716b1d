"""The Hugging Face Hub as tests meet it, with no Hub server reachable.

A cache folder written by hand, in the hub's own layout, so tests can load by repo id with
``HF_HUB_OFFLINE=1`` exactly as a user does after a download:

    <cache_dir>/models--<user>--<name>/
        blobs/<sha256 of each file>
        refs/main                      the commit hash of the branch
        snapshots/<commit>/<file>      relative symlinks to the blobs

The fixtures that go with it (``offline``, ``no_token``, ``token``, ``hub_api``) are in
conftest.py.
"""

import hashlib
import os
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
"""The commit hash of hand-written cache snapshots and of recorded uploads."""
MODEL_FILES = {"config.json", "model.safetensors", "README.md", "samples.png"}
"""The files of a saved model folder."""


def write_hub_cache(folder: Path, cache_dir: Path, repo_id: str, commit: str) -> Path:
    """Put every file of ``folder`` into ``cache_dir`` as revision ``commit`` (also ``main``) of
    the model repo ``repo_id``; returns the snapshot folder."""
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for sub in (repo / "blobs", repo / "refs", snapshot):
        sub.mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for file in sorted(folder.iterdir()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path → bytes): what an upload of it carries."""
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}
