"""Where a model's files come from (lightning_vae/hub/fetch.py): a local folder, or a Hub
repository through huggingface_hub's cache, each failure named with its fix.

No Hub server is reachable here: tests load from a cache written by hand (hub_cache.py) with
offline mode on, or from a local HTTP server standing in for the Hub (``hub_server``).
"""

import hashlib
import pickle
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub
import pytest
from hub_cache import COMMIT, folder_bytes, write_hub_cache
from hub_models import assert_identical, images, outputs, save_small_model
from huggingface_hub.errors import LocalTokenNotFoundError

import lightning_vae
from lightning_vae import VAE, VAEModel


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save_small_model(tmp_path / "model")


# --- loading by repo id from the hub's cache -------------------------------------------------


def test_from_pretrained_by_repo_id_is_served_offline_from_the_hub_cache(
        tmp_path, saved, offline):
    assert huggingface_hub.constants.is_offline_mode()
    cache = tmp_path / "hf-cache"
    write_hub_cache(saved, cache, "someuser/some-vae", COMMIT)
    x = images(3)
    expected = outputs(VAEModel.from_pretrained(saved), x)
    by_branch = lightning_vae.from_pretrained("someuser/some-vae", cache_dir=cache)
    by_commit = VAEModel.from_pretrained("someuser/some-vae", cache_dir=cache, revision=COMMIT)
    to_fine_tune = VAE.from_pretrained("someuser/some-vae", cache_dir=cache, revision=COMMIT)
    assert_identical(outputs(by_branch, x), expected)
    assert_identical(outputs(by_commit, x), expected)
    assert_identical(outputs(to_fine_tune.model, x), expected)


def test_from_pretrained_uses_hf_hub_cache_by_default(tmp_path, saved, offline, monkeypatch):
    """HF_HUB_CACHE too is read at import (into ``constants.HF_HUB_CACHE``, which
    hf_hub_download reads at each call), so the constant is what a test can set."""
    write_hub_cache(saved, tmp_path / "hf-cache", "someuser/some-vae", COMMIT)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    assert lightning_vae.from_pretrained("someuser/some-vae").latent_dim == 3


def test_a_repo_missing_from_the_cache_while_offline_names_repo_and_fix(tmp_path, offline):
    with pytest.raises(FileNotFoundError, match=r"config.json of Hub repo 'someuser/absent' "
                       r"\(revision main\) is not in the Hugging Face cache.*HF_HUB_OFFLINE"):
        VAEModel.from_pretrained("someuser/absent", cache_dir=tmp_path)


class HubStandIn(BaseHTTPRequestHandler):
    """Answers every request as ``answer`` says: (status, headers, body bytes sent); a
    Content-Length header larger than the body makes a download that breaks off."""

    answer: tuple[int, dict[str, str], bytes] = (500, {}, b"")
    protocol_version = "HTTP/1.1"

    def do_HEAD(self) -> None:
        status, headers, _ = self.answer
        self.send_response(status)
        for name, value in {"Content-Length": "0", **headers, "Connection": "close"}.items():
            self.send_header(name, value)
        self.end_headers()

    def do_GET(self) -> None:
        self.do_HEAD()
        self.wfile.write(self.answer[2])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hub_server(monkeypatch: pytest.MonkeyPatch) -> type[HubStandIn]:
    """A real HTTP server on 127.0.0.1 in the Hub's place, reached as HF_ENDPOINT would reach
    it (huggingface_hub reads HF_ENDPOINT at import, into the constants set here). Set the
    returned class's ``answer``."""
    handler = type("Answers", (HubStandIn,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    yield handler
    server.shutdown()


@pytest.mark.parametrize("status", [401, 404])
def test_a_repo_the_hub_does_not_know_says_so_and_how_to_get_access(status, hub_server,
                                                                     tmp_path):
    hub_server.answer = (status, {"X-Error-Code": "RepoNotFound"}, b"")
    with pytest.raises(FileNotFoundError, match=re.escape(
            "no folder 'someuser/absent' here, and Hub repo 'someuser/absent' (revision main) "
            "was not found on the Hub or is not accessible") + ".*hf auth login"):
        VAEModel.from_pretrained("someuser/absent", cache_dir=tmp_path)


def test_a_failing_hub_is_not_blamed_on_offline_mode_when_it_is_off(hub_server, tmp_path):
    hub_server.answer = (400, {}, b"")  # a 5xx would be retried for some 20 s
    with pytest.raises(FileNotFoundError, match="check the connection to the Hub") as error:
        VAEModel.from_pretrained("someuser/some-vae", cache_dir=tmp_path)
    assert "HF_HUB_OFFLINE" not in str(error.value)


@pytest.mark.slow  # huggingface_hub retries the broken download for some 15 s
def test_a_download_that_breaks_off_names_the_file_and_the_cached_model_still_loads(
        hub_server, saved, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    repo = write_hub_cache(saved, cache, "someuser/some-vae", COMMIT).parent.parent
    before = folder_bytes(repo)
    config = (saved / "config.json").read_bytes()
    hub_server.answer = (200, {"X-Repo-Commit": COMMIT,
                               "ETag": f'"{hashlib.sha256(config).hexdigest()}"',
                               "Content-Length": str(len(config))}, config[:10])
    with pytest.raises(OSError, match=re.escape(
            "downloading config.json of Hub repo 'someuser/some-vae' (revision main) failed (")
            + ".*files already in the cache are kept: retry"):
        VAEModel.from_pretrained("someuser/some-vae", cache_dir=cache, force_download=True)
    assert folder_bytes(repo) == before
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert VAEModel.from_pretrained("someuser/some-vae", cache_dir=cache).latent_dim == 3


def test_a_repo_missing_from_the_cache_with_local_files_only_says_to_leave_it_out(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"leave out local_files_only=True to download it"):
        VAEModel.from_pretrained("someuser/absent", cache_dir=tmp_path, local_files_only=True)


def test_token_true_without_a_token_is_huggingface_hubs_own_error_not_a_download_failure(
        hub_server, no_token, tmp_path):
    with pytest.raises(LocalTokenNotFoundError):
        VAEModel.from_pretrained("someuser/private-vae", cache_dir=tmp_path, token=True)


def test_a_name_that_is_neither_a_folder_nor_a_repo_id_says_both(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no model folder at 'my model', and it is not a "
                       r"Hub repo id \(user/name\) either"):
        VAEModel.from_pretrained("my model")


def test_a_pickled_weights_file_in_a_repo_is_never_unpickled(tmp_path, saved, offline):
    """huggingface_hub's own PyTorchModelHubMixin falls back to pytorch_model.bin; ours must
    not: this pickle would create ``marker`` if it were ever loaded."""
    marker = tmp_path / "unpickled"
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "config.json").write_bytes((saved / "config.json").read_bytes())
    (repo / "pytorch_model.bin").write_bytes(_touching_pickle(marker))
    write_hub_cache(repo, tmp_path / "cache", "someuser/pickled", COMMIT)
    with pytest.raises(FileNotFoundError, match=re.escape(
            "model.safetensors of Hub repo 'someuser/pickled'")):
        VAEModel.from_pretrained("someuser/pickled", cache_dir=tmp_path / "cache")
    assert not marker.exists()


def _touching_pickle(marker: Path) -> bytes:
    class Touch:
        def __reduce__(self):
            return (Path.touch, (marker,))

    return pickle.dumps(Touch())


def test_a_checkpoint_file_is_pointed_to_export(tmp_path):
    checkpoint = tmp_path / "last.ckpt"
    checkpoint.write_bytes(b"")
    expected = re.escape(f"lightning-vae export {checkpoint} FOLDER")
    with pytest.raises(FileNotFoundError, match=expected):
        VAEModel.from_pretrained(checkpoint)


# --- zoo names --------------------------------------------------------------------------------


def test_a_mistyped_zoo_name_names_the_closest_model_without_asking_the_hub(hub_server,
                                                                            tmp_path):
    """The zoo's account holds the zoo and nothing else: a name there that is not a zoo model
    is a typo, reported at once, not after half a minute of retries as a connection failure."""
    hub_server.seen = 0
    hub_server.answer = (500, {}, b"")  # a Hub that answers at all would be retried for ~20 s

    def counting_head(handler) -> None:
        type(handler).seen += 1
        HubStandIn.do_HEAD(handler)

    hub_server.do_HEAD = counting_head
    with pytest.raises(FileNotFoundError) as error:
        lightning_vae.from_pretrained("lightning-vae/mnist-vea", cache_dir=tmp_path)
    assert str(error.value) == (
        "'lightning-vae/mnist-vea' is not a zoo model; did you mean 'lightning-vae/mnist-vae'?; "
        "the zoo has lightning-vae/mnist-vae, lightning-vae/mnist-beta-vae, "
        "lightning-vae/fashion-mnist-vae, lightning-vae/mnist-hvae, lightning-vae/dsprites-tcvae "
        "(`lightning-vae zoo` lists them)")
    assert hub_server.seen == 0


def test_the_cli_reports_a_mistyped_zoo_name_in_one_line(capsys):
    from lightning_vae.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["sample", "lightning-vae/fashion-mnist-vea"])
    first = str(stopped.value.code).splitlines()[0]
    assert first.startswith("lightning-vae sample: error: 'lightning-vae/fashion-mnist-vea' is "
                            "not a zoo model; did you mean 'lightning-vae/fashion-mnist-vae'?")


def test_a_zoo_name_without_its_account_missing_offline_suggests_the_zoo_model(tmp_path,
                                                                               offline):
    with pytest.raises(FileNotFoundError, match=r"unset HF_HUB_OFFLINE.*; did you mean "
                       r"'lightning-vae/mnist-vae'\?$"):
        lightning_vae.from_pretrained("mnist-vae", cache_dir=tmp_path)
