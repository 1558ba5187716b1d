"""download_file and locate_files(download=True) against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from lightning_vae.data.download import DownloadError, download_file
from lightning_vae.data.idx import read_idx
from lightning_vae.data.sources import MNIST, IDXFile, locate_files

PAYLOAD = bytes(range(256)) * 400  # 100 KiB
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
TIMEOUT_S = 5.0


class FileServer:
    """Serves ``files`` at ``/good/<name>``; ``/drop/<name>`` promises the full length, sends
    half and closes; anything else is a 404. Counts requests."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.requests = files, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                _, route, name = self.path.split("/", 2)
                body = server.files.get(name)
                if body is None or route not in ("good", "drop"):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body if route == "good" else body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(TIMEOUT_S)


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer({"data.bin": PAYLOAD}) as running:
        yield running


def dead_url() -> str:
    """A URL on a port nobody listens on: the connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/data.bin"


def fetch(urls: list[str], dest: Path, known_hash: str = f"md5:{MD5}") -> Path:
    return download_file(urls, dest, known_hash, progress=False, timeout=TIMEOUT_S)


def test_download_writes_the_verified_file_and_nothing_else(server, tmp_path: Path) -> None:
    path = fetch([f"{server.url}/good/data.bin"], tmp_path / "out" / "data.bin")
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.bin"]


def test_sha256_checksums_are_accepted(server, tmp_path: Path) -> None:
    path = fetch([f"{server.url}/good/data.bin"], tmp_path / "data.bin", f"sha256:{SHA256}")
    assert path.read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_no_file_and_reports_both_hashes(server, tmp_path: Path) -> None:
    wrong = "0" * 32
    with pytest.raises(DownloadError) as info:
        fetch([f"{server.url}/good/data.bin"], tmp_path / "data.bin", f"md5:{wrong}")
    message = str(info.value)
    assert wrong in message and MD5 in message and f"{server.url}/good/data.bin" in message
    assert "place it at" in message
    assert list(tmp_path.iterdir()) == []


def test_dropped_connection_leaves_no_partial_file(server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"/drop/data\.bin") as info:
        fetch([f"{server.url}/drop/data.bin"], tmp_path / "data.bin")
    assert "IncompleteRead" in str(info.value) or "ChunkedEncodingError" in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("first", ["404", "dead port", "dropped"])
def test_falls_back_to_the_next_mirror(server, tmp_path: Path, first: str) -> None:
    bad = {
        "404": f"{server.url}/good/missing.bin",
        "dead port": dead_url(),
        "dropped": f"{server.url}/drop/data.bin",
    }[first]
    path = fetch([bad, f"{server.url}/good/data.bin"], tmp_path / "data.bin")
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_all_mirrors_failing_lists_each_url_and_reason(server, tmp_path: Path) -> None:
    urls = [f"{server.url}/good/missing.bin", dead_url(), f"{server.url}/drop/data.bin"]
    with pytest.raises(DownloadError) as info:
        fetch(urls, tmp_path / "data.bin")
    message = str(info.value)
    assert all(url in message for url in urls)
    assert "404" in message and "ConnectionError" in message
    assert f"md5:{MD5}" in message
    assert list(tmp_path.iterdir()) == []


def test_locate_files_downloads_missing_files_into_the_torchvision_layout(
    tiny_mnist_dir: Path, tmp_path: Path, no_data_env: None
) -> None:
    blobs = {p.name: p.read_bytes() for p in tiny_mnist_dir.iterdir()}
    files = {
        key: IDXFile(f.name, hashlib.md5(blobs[f.name]).hexdigest(), f.shape)
        for key, f in MNIST.files.items()
    }
    with FileServer(blobs) as local:
        spec = replace(MNIST, mirrors=(dead_url() + "/", f"{local.url}/good/"), files=files)
        data_dir = tmp_path / "data"
        found = locate_files(spec, data_dir, download=True, progress=False)
        assert set(found) == set(MNIST.files)
        assert all(path.parent == data_dir / "MNIST" / "raw" for path in found.values())
        images = read_idx(found["train_images"])
        assert images.shape == (256, 28, 28)
        np.testing.assert_array_equal(images, read_idx(tiny_mnist_dir / files["train_images"].name))
        served = len(local.requests)
        again = locate_files(spec, data_dir, download=True, progress=False)
        assert again == found and len(local.requests) == served  # no second download


def test_a_failed_data_set_download_names_every_file_needed_and_where_to_put_them(
    tmp_path: Path, no_data_env: None
) -> None:
    spec = replace(MNIST, mirrors=(dead_url() + "/",))
    data_dir = tmp_path / "data"
    with pytest.raises(DownloadError) as info:
        locate_files(spec, data_dir, download=True, progress=False)
    assert isinstance(info.value, OSError)  # the command line reports it in one message
    message = str(info.value)
    assert "Could not download train-images-idx3-ubyte.gz" in message
    assert message.endswith(
        "MNIST needs train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (gzipped or not) in one folder: "
        f"{data_dir / 'MNIST' / 'raw'}, or any folder that data_dir (--data.data_dir) "
        "or $LIGHTNING_VAE_DATA points at.")
