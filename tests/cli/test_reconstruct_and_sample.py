"""`lightning-vae reconstruct` and `lightning-vae sample`: a pretrained VAE in one command, from
a Hub repo id, a model folder or a Lightning checkpoint."""

import re
import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import write_capped, write_tiny_mnist
from hub_cache import COMMIT, write_hub_cache
from PIL import Image

from lightning_vae import VAE, from_pretrained
from lightning_vae.cli import main
from lightning_vae.data import MNISTDataModule

REPO_ID = "someuser/tiny-vae"


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A VAE trained two steps on tiny MNIST, as a checkpoint, a model folder and a Hub repo id
    (served from a Hugging Face cache)."""
    root = tmp_path_factory.mktemp("models")
    data = MNISTDataModule(str(write_tiny_mnist(root / "mnist")), batch_size=64, val_size=64,
                           download=False)
    torch.manual_seed(0)
    model = VAE(arch="conv", arch_options={"channels": [4, 8], "hidden_dim": 16}, latent_dim=4,
                iw_samples=0, preprocessing=data.preprocessing)
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, limit_val_batches=0,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=root)
    trainer.fit(model, data)
    trainer.save_checkpoint(root / "model.ckpt")
    model.save_pretrained(root / "folder")
    write_hub_cache(root / "folder", root / "hf-cache", REPO_ID, COMMIT)
    return {"checkpoint": str(root / "model.ckpt"), "folder": str(root / "folder"),
            "hub": REPO_ID}


@pytest.fixture
def hub_cache(sources, offline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, with the Hugging Face cache holding REPO_ID (constants are read at import)."""
    cache = Path(sources["folder"]).parent / "hf-cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))


def write_inputs(folder: Path) -> list[str]:
    """A colour JPEG, a palette PNG, and a folder holding a grey WebP in a subfolder."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(folder / "cat.jpg")
    Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)).convert("P").save(
        folder / "digit.png")
    (folder / "more" / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (90, 60), dtype=np.uint8)).save(
        folder / "more" / "sub" / "wide.webp")
    return [str(folder / "cat.jpg"), str(folder / "digit.png"), str(folder / "more")]


@pytest.mark.parametrize("kind", ["folder", "checkpoint", "hub"])
def test_sample_writes_a_grid_png_of_the_expected_size(kind, sources, hub_cache, tmp_path,
                                                       capsys):
    out = tmp_path / "grids" / "grid.png"
    main(["sample", sources[kind], "-n", "10", "--nrow", "5", "--out", str(out)])
    with Image.open(out) as grid:
        assert grid.format == "PNG" and grid.mode == "L"
        assert grid.size == (2 + 5 * (28 + 2), 2 + 2 * (28 + 2))
    assert str(out) in capsys.readouterr().out


def test_sample_is_the_same_for_the_same_seed_only(sources, tmp_path):
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        main(["sample", sources["folder"], "-n", "4", "--seed", seed,
              "--out", str(tmp_path / f"{name}.png")])
    read = {name: (tmp_path / f"{name}.png").read_bytes() for name in "abc"}
    assert read["a"] == read["b"] != read["c"]


@pytest.mark.parametrize("kind", ["folder", "checkpoint"])
def test_reconstruct_writes_one_model_size_png_per_image(kind, sources, tmp_path, capsys):
    inputs = write_inputs(tmp_path / "in")
    main(["reconstruct", sources[kind], *inputs, "--out", str(tmp_path / "out")])
    written = sorted(p.relative_to(tmp_path / "out").as_posix()
                     for p in (tmp_path / "out").rglob("*.png"))
    assert written == ["cat.png", "digit.png", "sub/wide.png"]
    for name in written:
        with Image.open(tmp_path / "out" / name) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "L", (28, 28))
    assert "wrote 3 reconstructions" in capsys.readouterr().out


def test_reconstructions_written_are_the_python_api_ones(sources, tmp_path):
    inputs = write_inputs(tmp_path / "in")
    main(["reconstruct", sources["checkpoint"], inputs[0], "--out", str(tmp_path / "out")])
    model = from_pretrained(sources["folder"])
    with Image.open(inputs[0]) as image:
        (expected,) = model.postprocess(model.reconstruct(image), "pil")
    with Image.open(tmp_path / "out" / "cat.png") as written:
        np.testing.assert_array_equal(np.asarray(written), np.asarray(expected))


def test_unreadable_input_is_named(sources, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(SystemExit, match=r"^lightning-vae reconstruct: error: \S*broken.png: "
                       r"cannot be decoded as an image"):
        main(["reconstruct", sources["folder"], str(tmp_path / "broken.png"),
              "--out", str(tmp_path / "out")])


def test_inputs_that_would_overwrite_each_other_are_refused(sources, tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        Image.new("L", (28, 28)).save(tmp_path / sub / "same.png")
    with pytest.raises(SystemExit, match=r"would both be written as same.png"):
        main(["reconstruct", sources["folder"], str(tmp_path / "a" / "same.png"),
              str(tmp_path / "b" / "same.png"), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["sample", "missing.ckpt"], "no checkpoint file at missing.ckpt"),
    (["reconstruct", "{folder}", "nowhere.png"], "no image file or folder at nowhere.png"),
    (["sample", "{folder}/config.json"], "config.json is not a PyTorch checkpoint"),
    (["sample", "no-such-folder"], "no folder 'no-such-folder' here, and config.json of Hub repo"),
    (["sample", ""], "no model folder at '', and it is not a Hub repo id"),
    (["sample", "{folder}", "--device", "gpu0"], "--device 'gpu0' is not a device"),
])
def test_missing_or_wrong_model_or_input_is_named_in_one_line(argv, message, sources, offline,
                                                               tmp_path):
    with pytest.raises(SystemExit) as stopped:
        main([arg.format(**sources) for arg in argv] + ["--out", str(tmp_path / "out")])
    assert str(stopped.value).startswith(f"lightning-vae {argv[0]}: error: ")
    assert message in str(stopped.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_a_gpu_this_machine_lacks_is_refused_with_the_fix(sources, tmp_path):
    with pytest.raises(SystemExit, match=r"--device cuda:0: this torch .* sees no CUDA GPU; use "
                       r"--device cpu"):
        main(["sample", sources["folder"], "--out", str(tmp_path / "s.png"), "--device", "cuda:0"])


@pytest.mark.parametrize("name, image_format", [("grid.png", "PNG"), ("grid.JPG", "JPEG"),
                                                ("grid.webp", "WEBP"), ("grid", "PNG")])
def test_sample_writes_the_format_the_file_name_names(name, image_format, sources, tmp_path):
    main(["sample", sources["folder"], "-n", "4", "--out", str(tmp_path / name)])
    with Image.open(tmp_path / name) as grid:
        assert grid.format == image_format


@pytest.mark.parametrize("out, message", [
    ("grid.pngx", "Pillow writes no image format with the extension '.pngx'"),
    ("grid.psd", "Pillow writes no image format with the extension '.psd'"),  # read-only
    ("folder", "is a folder; give the path of a file to write"),
    ("a_file/grid.png", "part of its folder's path is a file"),
])
def test_an_output_path_that_cannot_be_an_image_file_is_refused(out, message, sources, tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "a_file").write_text("in the way")
    with pytest.raises(SystemExit, match=re.escape(message)):
        main(["sample", sources["folder"], "--out", str(tmp_path / out)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "folder"]


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_a_failed_write_leaves_the_earlier_picture_whole(sources, tmp_path):
    out = tmp_path / "grid.png"
    main(["sample", sources["folder"], "-n", "64", "--out", str(out)])
    before = out.read_bytes()
    failed = write_capped(["sample", sources["folder"], "-n", "64", "--seed", "1",
                           "--out", str(out)], max_bytes=len(before) // 2)
    assert failed.returncode == 1
    assert failed.stderr.startswith(f"lightning-vae sample: error: cannot write {out} (File too "
                                    "large); it was left as it was")
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary file left


def test_a_black_on_white_digit_gets_a_hint_and_invert_reconstructs_it(tmp_path, capsys):
    """The zoo's MNIST model draws white digits on black: a scanned black-on-white digit would
    come back as noise, so the command says so, and --invert makes it a digit again."""
    model = from_pretrained("lightning-vae/mnist-vae")
    with torch.no_grad():
        digit = model.postprocess(model.sample(1, torch.Generator().manual_seed(3)), "pil")[0]
    Image.fromarray(255 - np.asarray(digit)).save(tmp_path / "scan.png")
    main(["reconstruct", "lightning-vae/mnist-vae", str(tmp_path / "scan.png"),
          "--out", str(tmp_path / "plain")])
    (hint,) = capsys.readouterr().err.strip().splitlines()
    assert hint == (f"hint: {tmp_path / 'scan.png'} looks inverted to this model (background "
                    "light where its images' is dark, or the reverse); if the output is noise, "
                    "pass --invert")
    main(["reconstruct", "lightning-vae/mnist-vae", str(tmp_path / "scan.png"),
          "--out", str(tmp_path / "inverted"), "--invert"])
    assert capsys.readouterr().err == ""

    def error(name: str) -> float:  # against the digit the scan was made from
        with Image.open(tmp_path / name / "scan.png") as picture:
            return float(np.abs(np.asarray(picture, float) - np.asarray(digit, float)).mean())

    assert error("inverted") < 40 < error("plain")
