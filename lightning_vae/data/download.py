"""Fetch one file from a list of mirrors, verified by checksum before it appears in place.

Built on pooch (``pooch.retrieve``), after checking what pooch 1.9 does itself: it streams into a
temporary file created in the destination folder, with a tqdm progress bar, checks the MD5 or
SHA-256, then moves the file into place (a rename on the same file system, so a reader never sees
a half-written file) and deletes the temporary file on any failure (HTTP error, a connection cut
mid-transfer, a checksum mismatch). What pooch lacks is a mirror list: ``Pooch.urls`` maps each
file to one URL, and ``retrieve`` takes one. So this module only loops over the mirrors, calling
``pooch.retrieve`` for each, collects why each one failed and, if all fail, raises one error with
every URL and reason (pooch's checksum message gives the expected and actual hash) and the manual
steps. Less code of our own to get wrong, and the cleanup behaviour is pooch's, tested upstream and
in ``tests/data/test_download.py`` against a real HTTP server.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pooch
import requests

DEFAULT_TIMEOUT_S = 60.0


class DownloadError(OSError):
    """Every mirror failed for a file; the message lists each URL and why."""


def download_file(
    urls: Sequence[str],
    destination: str | Path,
    known_hash: str,
    *,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Download ``destination`` from the first mirror in ``urls`` that yields the right bytes.

    ``known_hash`` is ``"md5:<hex>"`` or ``"sha256:<hex>"`` of the file as served. Nothing is left
    at ``destination`` unless its checksum matched; a partial or wrong file is removed before the
    next mirror is tried. ``timeout`` (seconds) bounds connecting and each wait for data.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for url in urls:
        try:
            pooch.retrieve(
                url,
                known_hash=known_hash,
                fname=destination.name,
                path=destination.parent,
                downloader=pooch.HTTPDownloader(progressbar=progress, timeout=timeout),
            )
            return destination
        except (requests.RequestException, ValueError, OSError) as err:
            failures.append(f"  {url}\n    {type(err).__name__}: {err}")
            logging.getLogger(__name__).warning("download of %s failed: %s", url, err)
    tried = "\n".join(failures) or "  (no URLs given)"
    raise DownloadError(
        f"Could not download {destination.name} (expected checksum {known_hash}); tried:\n"
        f"{tried}\n"
        f"To fetch it by hand: download it from one of the URLs above, check its checksum "
        f"(e.g. `md5sum` or `sha256sum`), and place it at {destination}."
    )
