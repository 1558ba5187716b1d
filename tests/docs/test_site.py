"""The documentation site: it builds in strict mode, a broken link fails the build, and its pages
render with their images in a real headless Chromium (served over HTTP, as a reader sees them).

Set LIGHTNING_VAE_UPDATE_SCREENSHOTS=1 to write the screenshots taken here into
docs/screenshots/ (home.png, gallery.png) for committing."""

import functools
import html
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WINDOW = (1280, 900)
PAGES = {  # path in the site → the first heading it must show
    "": "lightning-vae",
    "getting-started/": "Getting started",
    "concepts/": "Concepts",
    "workflows/train/": "Train a model",
    "api/": "API reference",
    "gallery/": "Gallery",
    "results/": "Results",
}
PROBE = """<!doctype html><html><body><pre id="report">pending</pre><script>
// Load each page in turn in an iframe (same origin) and report, once it has loaded (images
// included), its title, first heading, article text and each image's natural width (0: broken).
const pages = JSON.parse(new URLSearchParams(location.search).get("pages"));
const frame = document.createElement("iframe");
frame.style.width = "1280px"; frame.style.height = "900px";
document.body.appendChild(frame);
const report = {};
function visit(index) {
  if (index === pages.length) {
    document.getElementById("report").textContent = JSON.stringify(report);
    return;
  }
  frame.onload = () => {
    const doc = frame.contentDocument;
    const images = [...doc.querySelectorAll("article img")];
    const header = doc.querySelector(".md-header");
    report[pages[index]] = {
      title: doc.title,
      h1: doc.querySelector("article h1")?.textContent.replace("\\u00b6", "").trim(),
      text: doc.querySelector("article")?.innerText ?? "",
      styled: header !== null && getComputedStyle(header).position === "sticky",
      images: images.map(img => ({src: img.getAttribute("src"), width: img.naturalWidth})),
    };
    visit(index + 1);
  };
  frame.src = "/" + pages[index];
}
visit(0);
</script></body></html>
"""


def build_site(config: Path, out: Path) -> subprocess.CompletedProcess:
    """``mkdocs build --strict`` of ``config`` into ``out``, as .ci/run builds it."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(out)],
        capture_output=True, text=True, timeout=300,
        env=os.environ | {"NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = build_site(ROOT / "mkdocs.yml", out)
    assert result.returncode == 0, f"the strict docs build failed:\n{result.stderr}"
    return out


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    """The built site served on a free local port, with the probe page beside it."""
    (site / "probe.html").write_text(PROBE, encoding="utf-8")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with its own profile folder (other runs may hold the default one).
    Under heavy load headless Chromium's virtual time now and then never runs out and the
    browser hangs (seen at load average 7 on 2 cores, 1 run in 3); a hung browser is killed
    after a minute and started once more, a second hang fails the test."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
               "--virtual-time-budget=20000", *args]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    except subprocess.TimeoutExpired:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)


def test_every_page_in_the_nav_is_built(site: Path):
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)

    def pages(nav: list) -> Iterator[str]:
        for item in nav:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            yield from pages(value) if isinstance(value, list) else [value]

    built = [path.removesuffix(".md") for path in pages(config["nav"])]
    assert len(built) >= 15
    for path in built:
        assert (site / ("" if path == "index" else path) / "index.html").is_file(), path


def test_a_broken_link_fails_the_strict_build(tmp_path: Path):
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    (tmp_path / "lightning_vae").symlink_to(ROOT / "lightning_vae")
    with (tmp_path / "docs" / "concepts.md").open("a") as page:
        page.write("\nSee [the ELBO](elbo.md) and [VAE](api.md#lightning_vae.NoSuchThing).\n")
    result = build_site(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "contains a link 'elbo.md', but the target is not found" in result.stderr
    assert "does not contain an anchor '#lightning_vae.NoSuchThing'" in result.stderr


def test_the_api_reference_shows_the_public_api_with_roles_as_links(site: Path):
    import lightning_vae

    page = (site / "api" / "index.html").read_text()
    for name in lightning_vae.__all__:
        assert f'id="lightning_vae.{name}"' in page, (
            f"{name} is in lightning_vae.__all__ but not in the API reference: add "
            f"'::: lightning_vae.{name}' to docs/api.md")
    assert ":class:" not in page and ":func:" not in page and ":meth:" not in page
    assert 'href="#lightning_vae.VAEModel"><code>VAEModel</code></a>' in page


def test_pages_render_with_their_images_in_chromium(served: str, tmp_path: Path):
    query = urllib.parse.quote(json.dumps(list(PAGES)))
    dom = chromium(tmp_path, "--dump-dom", f"{served}/probe.html?pages={query}").stdout
    report = json.loads(html.unescape(dom.split('<pre id="report">', 1)[1].split("</pre>")[0]))
    assert set(report) == set(PAGES)
    for path, heading in PAGES.items():
        page = report[path]
        assert page["h1"] == heading, path
        assert page["title"].endswith("lightning-vae"), path
        assert page["styled"], f"{path}: Material's stylesheet did not apply"
        broken = [image["src"] for image in page["images"] if image["width"] == 0]
        assert not broken, f"{path}: images not rendered: {broken}"
    gallery = report["gallery/"]
    assert len(gallery["images"]) >= 4
    assert any("samples" in image["src"] for image in gallery["images"])
    assert any("rate_distortion" in image["src"] for image in gallery["images"])
    assert len(report[""]["images"]) == 1
    assert "A variational autoencoder (Kingma & Welling 2014)" in report["api/"]["text"]


@pytest.mark.parametrize("name, path", [("home", ""), ("gallery", "gallery/")])
def test_screenshots_of_home_and_gallery(served: str, tmp_path: Path, name: str, path: str):
    shot = tmp_path / f"{name}.png"
    chromium(tmp_path, f"--screenshot={shot}", f"{served}/{path}")
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (WINDOW[1], WINDOW[0])
    assert pixels.std() > 20  # a page, not a blank or single-colour window
    assert (pixels[:40] < 200).mean() > 0.5  # Material's coloured header bar across the top
    committed = ROOT / "docs" / "screenshots" / f"{name}.png"
    if os.environ.get("LIGHTNING_VAE_UPDATE_SCREENSHOTS") == "1":
        committed.parent.mkdir(exist_ok=True)
        shutil.copy(shot, committed)
    assert Image.open(committed).size == WINDOW
