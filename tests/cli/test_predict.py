"""`lightning-vae predict`: latents and reconstructions of image files or of a data set's split,
written to files, with the zoo's MNIST model."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_vae import from_pretrained
from lightning_vae.cli import main

ROOT = Path(__file__).resolve().parents[2]
MODEL = "lightning-vae/mnist-vae"


def digits(folder: Path, n: int = 3) -> Path:
    """``n`` white-on-black 28x28 PNG strokes in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = np.zeros((28, 28), np.uint8)
        pixels[6:22, 10 + i:14 + i] = 255
        Image.fromarray(pixels).save(folder / f"digit{i}.png")
    return folder


def test_predict_writes_the_posterior_of_every_image_and_its_reconstruction(tmp_path, capsys):
    inputs = digits(tmp_path / "in")
    main(["predict", MODEL, str(inputs), "--out", str(tmp_path / "out")])
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'out' / 'latents.npz'}")
    latents = np.load(tmp_path / "out" / "latents.npz")
    assert sorted(latents.files) == ["mean", "names", "std"]
    assert list(latents["names"]) == ["digit0.png", "digit1.png", "digit2.png"]
    model = from_pretrained(MODEL)
    expected = model.encode([Image.open(inputs / f"digit{i}.png") for i in range(3)])
    np.testing.assert_allclose(latents["mean"], expected.mean.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(latents["std"], expected.std.detach().numpy(), rtol=1e-5)
    for i in range(3):
        with Image.open(tmp_path / "out" / "reconstructions" / f"digit{i}.png") as picture:
            assert picture.size == (28, 28)


def test_predict_encodes_a_split_of_the_recipes_datamodule_with_its_labels(tmp_path,
                                                                            tiny_mnist_dir):
    main(["predict", MODEL, "--config", str(ROOT / "recipes" / "mnist_vae.yaml"),
          "--data.data_dir", str(tiny_mnist_dir), "--data.download", "false",
          "--data.val_size", "64", "--split", "test", "--limit", "10",
          "--no-reconstructions", "--out", str(tmp_path / "out")])
    latents = np.load(tmp_path / "out" / "latents.npz")
    assert latents["mean"].shape == (10, 32) and latents["std"].shape == (10, 32)
    assert list(latents["names"]) == [str(i) for i in range(10)]
    assert latents["labels"].shape == (10,) and latents["labels"].dtype.kind == "i"
    assert bool((torch.from_numpy(latents["std"]) > 0).all())
    assert not (tmp_path / "out" / "reconstructions").exists()


@pytest.mark.parametrize(("argv", "message"), [
    ([], "give image files or folders, or --config RECIPE"),
    (["x.png", "--config", "recipes/mnist_vae.yaml"], "(not both)"),
    (["x.png", "--data.batch_size", "4"], "--data.batch_size changes a recipe's datamodule: "
                                          "add --config RECIPE"),
    (["x.png", "--ouy", "dir"], "unrecognized arguments: --ouy"),
])
def test_predict_refuses_what_it_cannot_do_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit):
        main(["predict", MODEL, *argv])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("lightning-vae predict: error: ") and message in error


def test_lightnings_own_predict_is_not_offered_any_more(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "latents.npz" in capsys.readouterr().out
