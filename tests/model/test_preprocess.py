"""Preprocessing that travels with the model: any image → exactly what the model was trained on,
and decoder output → displayable images."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from lightning_vae import VAE, VAEModel, from_pretrained
from lightning_vae.cli import run_lightning
from lightning_vae.data import CelebADataModule, FashionMNISTDataModule, MNISTDataModule
from lightning_vae.data.idx import read_idx
from lightning_vae.data.images import ImageTransform, load_image
from lightning_vae.model.preprocess import Preprocessing, postprocess_images, preprocess_images

ROOT = Path(__file__).resolve().parents[2]
GREY = (1, 28, 28)
COLOUR = (3, 16, 16)


def pixels(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def small_vae(image_shape=GREY, **kwargs) -> VAEModel:
    torch.manual_seed(0)
    return VAEModel(arch="mlp", image_shape=image_shape, latent_dim=4,
                    arch_options={"hidden_dims": [16]}, **kwargs)


def as_file_array(image: Image.Image, path, image_shape, crop_size=None) -> torch.Tensor:
    """What the data cache holds for ``image`` saved as a file, as floats in [0, 1]."""
    image.save(path)
    transform = ImageTransform(image_shape[1], image_shape[0], crop_size)
    return torch.from_numpy(load_image(path, transform)).float() / 255


# --- the settings -----------------------------------------------------------------------------

def test_default_settings_are_whole_images_in_grey_levels():
    assert Preprocessing.from_dict(None) == Preprocessing("none", None, None)
    assert Preprocessing.from_dict(None).to_dict() == {
        "binarize": "none", "crop_size": None, "input_size": None}


@pytest.mark.parametrize("settings, message", [
    ({"binarise": "dynamic"}, "unknown preprocessing options ['binarise']"),
    ({"binarize": "always"}, "binarize='always'"),
    ({"crop_size": 0}, "crop_size=0"),
    ({"input_size": [178]}, "input_size=[178]"),
    ({"crop_size": 200, "input_size": [178, 218]}, "crop_size=200 does not fit"),
])
def test_invalid_settings_are_refused_naming_the_option(settings, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Preprocessing.from_dict(settings)


def test_crop_is_in_pixels_or_in_proportion_to_the_shorter_side():
    assert Preprocessing(crop_size=20).crop_for(100, 80) == 20
    celeba = Preprocessing(crop_size=148, input_size=(178, 218))
    assert celeba.crop_for(178, 218) == 148
    assert celeba.crop_for(356, 436) == 296
    assert celeba.crop_for(1000, 500) == round(148 * 500 / 178)


def test_datamodules_describe_their_input_convention():
    assert MNISTDataModule().preprocessing == {
        "binarize": "dynamic", "crop_size": None, "input_size": None}
    assert FashionMNISTDataModule().preprocessing["binarize"] == "none"
    assert CelebADataModule(crop_size=140).preprocessing == {
        "binarize": "none", "crop_size": 140, "input_size": [178, 218]}


# --- images in --------------------------------------------------------------------------------

def test_uint8_batch_of_the_model_shape_becomes_unit_floats():
    raw = torch.from_numpy(pixels((4, *GREY)))
    out = preprocess_images(raw, GREY, Preprocessing())
    assert out.dtype == torch.float32 and out.shape == (4, *GREY)
    assert torch.equal(out, raw.float() / 255)


def test_float_batch_of_the_model_shape_passes_unchanged():
    x = torch.rand(3, *COLOUR)
    assert torch.equal(preprocess_images(x, COLOUR, Preprocessing()), x)


def test_one_image_as_tensor_array_or_pil_gives_the_same_batch_of_one():
    raw = pixels((28, 28))
    expected = torch.from_numpy(raw).float()[None, None] / 255
    for image in (raw, torch.from_numpy(raw), raw[None], Image.fromarray(raw)):
        assert torch.equal(preprocess_images(image, GREY, Preprocessing()), expected)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA", "I;16"])
@pytest.mark.parametrize("size", [(16, 16), (23, 17), (40, 64)])
def test_in_memory_images_are_prepared_exactly_as_files_are(tmp_path, mode, size):
    image = Image.fromarray(pixels((size[1], size[0], 4))).convert(mode)
    expected = as_file_array(image, tmp_path / "image.png", COLOUR)
    assert torch.equal(preprocess_images(image, COLOUR, Preprocessing())[0], expected)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_tensors_of_another_size_or_channels_are_prepared_as_files_are(tmp_path, channels):
    raw = pixels((channels, 40, 30))
    image = Image.fromarray(raw[0] if channels == 1 else raw.transpose(1, 2, 0))
    expected = as_file_array(image, tmp_path / "a.png", COLOUR)
    assert torch.equal(preprocess_images(torch.from_numpy(raw), COLOUR, Preprocessing())[0],
                       expected)
    floats = torch.from_numpy(raw).float() / 255
    assert torch.equal(preprocess_images(floats, COLOUR, Preprocessing())[0], expected)


def test_crop_size_cuts_every_image_like_the_folder_datamodule(tmp_path):
    image = Image.fromarray(pixels((50, 60, 3)))
    expected = as_file_array(image, tmp_path / "a.png", COLOUR, crop_size=30)
    out = preprocess_images(image, COLOUR, Preprocessing(crop_size=30))
    assert torch.equal(out[0], expected)


def test_celeba_crop_matches_the_datamodule_at_the_original_size_and_scales_otherwise(tmp_path):
    settings = Preprocessing(crop_size=148, input_size=(178, 218))
    face = Image.fromarray(pixels((218, 178, 3)))
    face.save(tmp_path / "face.png")
    cached = load_image(tmp_path / "face.png", ImageTransform(64, 3, 148, (178, 218)))
    out = preprocess_images(face, (3, 64, 64), settings)
    assert torch.equal(out[0], torch.from_numpy(cached).float() / 255)
    large = preprocess_images(face.resize((356, 436), Image.Resampling.NEAREST), (3, 64, 64),
                              settings)
    assert (large - out).abs().mean() < 0.02  # the same framing, at twice the resolution


def test_images_of_the_model_size_are_taken_as_prepared_and_not_cropped():
    raw = pixels((16, 16, 3))
    out = preprocess_images(Image.fromarray(raw), COLOUR, Preprocessing(crop_size=10))
    assert torch.equal(out[0], torch.from_numpy(raw).permute(2, 0, 1).float() / 255)


def test_a_list_of_mixed_kinds_and_sizes_gives_one_batch():
    batch = preprocess_images(
        [Image.fromarray(pixels((30, 20, 3))), pixels((28, 28)), torch.rand(2, 1, 56, 56),
         torch.rand(1, 28, 28)], GREY, Preprocessing())
    assert batch.shape == (5, *GREY) and batch.dtype == torch.float32


def test_exif_orientation_of_a_pil_image_is_applied(tmp_path):
    raw = pixels((16, 24, 3))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    Image.fromarray(raw).save(tmp_path / "turned.jpg", exif=exif.tobytes(), quality=100)
    with Image.open(tmp_path / "turned.jpg") as image:
        out = preprocess_images(image, (3, 24, 16), Preprocessing())
    assert out.shape == (1, 3, 24, 16)  # upright: 16 wide, 24 high


def test_binarized_model_is_given_the_most_probable_draw():
    raw = torch.tensor([[0, 127, 128, 255]], dtype=torch.uint8).reshape(1, 1, 2, 2)
    out = preprocess_images(raw, (1, 2, 2), Preprocessing(binarize="dynamic"))
    assert out.flatten().tolist() == [0.0, 0.0, 1.0, 1.0]


def test_binary_images_pass_a_binarized_model_unchanged():
    binary = torch.randint(0, 2, (6, *GREY)).float()
    for binarize in ("dynamic", "static"):
        assert torch.equal(preprocess_images(binary, GREY, Preprocessing(binarize)), binary)


@pytest.mark.parametrize("image, error, message", [
    (np.zeros((28, 28, 3), np.uint8), ValueError, r"channels-last .*transpose\(2, 0, 1\)"),
    (torch.full((1, 28, 28), 2.0), ValueError, r"values in \[0, 1\], got \[2, 2\]"),
    (torch.full((1, 28, 28), float("nan")), ValueError, r"values in \[0, 1\]"),
    (torch.zeros(1, 28, 28, dtype=torch.int64), TypeError, "pass uint8"),
    ("digit.png", TypeError, "got str"),
    ([], ValueError, "no images given"),
])
def test_unusable_input_is_refused_with_the_fix(image, error, message):
    with pytest.raises(error, match=message):
        preprocess_images(image, GREY, Preprocessing())


def test_image_smaller_than_the_training_crop_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"image is 20x20, smaller than the centred 24x24"):
        preprocess_images(pixels((20, 20)), (1, 16, 16), Preprocessing(crop_size=24))


# --- images out -------------------------------------------------------------------------------

def test_postprocess_clips_and_rounds_to_uint8():
    out = postprocess_images(torch.tensor([-0.5, 0.0, 0.5, 1.5]).reshape(1, 1, 2, 2))
    assert out.dtype == torch.uint8 and out.flatten().tolist() == [0, 0, 128, 255]


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_postprocess_gives_pil_images_of_the_model_size(channels, mode):
    images = postprocess_images(torch.rand(2, channels, 12, 10), "pil")
    assert [(image.mode, image.size) for image in images] == [(mode, (10, 12))] * 2


# --- saved with the model ---------------------------------------------------------------------

@pytest.mark.parametrize("saved", ["model", "training module"])
def test_preprocessing_is_saved_in_config_json_and_restored(tmp_path, saved):
    settings = {"binarize": "static", "crop_size": 20, "input_size": None}
    model = small_vae(preprocessing=settings)
    if saved == "training module":  # VAE.save_pretrained saves its VAEModel
        model = VAE(**model.config, iw_samples=0)
    model.save_pretrained(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "config.json").read_text())["preprocessing"] == \
        settings
    assert from_pretrained(tmp_path / "model").preprocessing == Preprocessing("static", 20)


def test_encode_and_reconstruct_take_raw_images():
    model = small_vae(preprocessing={"binarize": "dynamic"}).eval()
    raw = pixels((28, 28))
    binary = torch.from_numpy(raw >= 128).float()[None, None]
    assert torch.equal(model.encode(Image.fromarray(raw)).mean, model.encode(binary).mean)
    assert model.reconstruct([raw, raw]).shape == (2, *GREY)


def test_fit_from_the_command_line_takes_the_preprocessing_of_the_datamodule(tiny_mnist_dir,
                                                                             monkeypatch):
    monkeypatch.setattr(sys, "argv", ["lightning-vae"])  # LightningCLI warns about pytest's
    cli = run_lightning(["--config", str(ROOT / "recipes" / "mnist_vae.yaml"),
                         "--data.init_args.data_dir", str(tiny_mnist_dir),
                         "--data.init_args.download", "false",
                         "--data.init_args.binarize", "static",
                         "--trainer.logger", "false"], run=False)
    assert cli.model.hparams.preprocessing == cli.datamodule.preprocessing
    assert cli.model.model.preprocessing == Preprocessing(binarize="static")


@pytest.mark.parametrize("binarize", ["none", "dynamic"])
def test_trained_model_reconstructs_raw_resized_and_datamodule_images_alike(
        binarize, tiny_mnist_dir, tmp_path):
    data = {"data_dir": str(tiny_mnist_dir), "val_size": 64, "download": False}
    datamodule = MNISTDataModule(batch_size=64, binarize=binarize, **data)
    torch.manual_seed(0)
    model = VAE(arch="mlp", latent_dim=4, arch_options={"hidden_dims": [64]}, lr=1e-2,
                iw_samples=0, preprocessing=datamodule.preprocessing)
    pl.Trainer(max_steps=40, accelerator="cpu", logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False,
               limit_val_batches=0).fit(model, datamodule)
    model.save_pretrained(tmp_path / "model")
    loaded = from_pretrained(tmp_path / "model")

    raw = torch.from_numpy(read_idx(tiny_mnist_dir / "t10k-images-idx3-ubyte.gz")[:16])
    grey = MNISTDataModule(batch_size=16, binarize="none", **data)
    grey.setup("test")
    floats, _ = next(iter(grey.test_dataloader()))
    upscaled = [Image.fromarray(image.numpy()).resize((56, 56), Image.Resampling.BILINEAR)
                for image in raw]

    from_raw = loaded.reconstruct(raw[:, None])
    assert (from_raw - floats).abs().mean() < 0.1  # it has learned to reconstruct
    assert torch.equal(from_raw, model.eval().model.reconstruct(raw[:, None]))
    assert torch.equal(loaded.reconstruct(floats), from_raw)
    from_upscaled = loaded.reconstruct(upscaled)
    other_digit = from_raw.roll(1, dims=0)
    assert (from_upscaled - from_raw).abs().mean() < 0.2 * (other_digit - from_raw).abs().mean()
    if binarize != "none":  # the binarized model sees the thresholded image
        assert torch.equal(loaded.preprocess(raw[:, None]), (raw[:, None] >= 128).float())
        datamodule.setup("test")
        binary, _ = next(iter(datamodule.test_dataloader()))
        assert torch.equal(loaded.preprocess(binary), binary)
