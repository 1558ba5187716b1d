"""A Hugging Face cache folder written by hand, in the hub's own layout, so tests can load by repo
id with ``HF_HUB_OFFLINE=1`` exactly as a user does after a download:

    <cache_dir>/models--<user>--<name>/
        blobs/<sha256 of each file>
        refs/main                      the commit hash of the branch
        snapshots/<commit>/<file>      relative symlinks to the blobs
"""

import hashlib
import os
from pathlib import Path


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
