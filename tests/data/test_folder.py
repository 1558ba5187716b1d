"""ImageFolderDataModule: a folder of your own images, any sizes, modes and formats, with the
files that cannot be used listed by name and skipped."""

import csv
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

import lightning_vae.data.folder as folder_module
from lightning_vae import VAE
from lightning_vae.cli import main
from lightning_vae.data import ImageFolderDataModule
from lightning_vae.data.images import ImageTransform, load_image
from lightning_vae.training.checkpoints import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore:.*cannot be used:UserWarning")
GOOD = {  # name: (mode, (width, height))
    "cats/grey.png": ("L", (20, 30)),
    "cats/photo.jpg": ("RGB", (64, 48)),
    "cats/clear.webp": ("RGBA", (33, 33)),
    "cats/palette.bmp": ("P", (40, 25)),
    "cats/deep/nested.png": ("RGB", (16, 16)),
    "cats/SHOUT.PNG": ("P", (18, 22)),
    "dogs/alpha.png": ("RGBA", (16, 16)),
    "dogs/grey.jpeg": ("L", (50, 70)),
    "dogs/photo.webp": ("RGB", (24, 31)),
    "dogs/big.bmp": ("RGB", (100, 80)),
    "dogs/palette.png": ("P", (21, 17)),
    "dogs/small.jpg": ("RGB", (17, 17)),
}
BAD = {"dogs/truncated.jpg": "truncated", "cats/notes.png": "cannot be decoded as an image"}


def write_image(path: Path, mode: str, size: tuple[int, int], seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rgba = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    Image.fromarray(rgba).convert(mode).save(path)


def write_folder(root: Path, good: dict = GOOD, bad: bool = True) -> Path:
    """`good` images, and with `bad` a truncated JPEG and a text file named like a PNG; also a
    README.txt and a hidden file, which are not images and are ignored."""
    for seed, (name, (mode, size)) in enumerate(good.items()):
        write_image(root / name, mode, size, seed)
    if bad:
        write_image(root / "dogs/truncated.jpg", "RGB", (60, 60), seed=99)
        data = (root / "dogs/truncated.jpg").read_bytes()
        (root / "dogs/truncated.jpg").write_bytes(data[: len(data) // 2])
        (root / "cats/notes.png").write_text("not an image\n")
    (root / "README.txt").write_text("my pictures\n")
    write_image(root / ".thumbnail.png", "RGB", (8, 8), seed=7)
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "pictures")


def datamodule(folder: Path, **kwargs) -> ImageFolderDataModule:
    options = {"image_size": 16, "val_fraction": 0.25, "batch_size": 4, "progress": False,
               "cache_dir": str(folder.parent / "cache")} | kwargs
    return ImageFolderDataModule(str(folder), **options)


def test_mixed_folder_trains_a_few_steps_and_names_each_skipped_file(folder):
    data = datamodule(folder)
    torch.manual_seed(0)
    model = VAE(arch="mlp", image_shape=data.image_shape, latent_dim=4, iw_samples=0,
                arch_options={"hidden_dims": [16]}, preprocessing=data.preprocessing)
    trainer = pl.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    with pytest.warns(UserWarning, match="2 image files in .* cannot be used") as caught:
        trainer.fit(model, data)
    assert trainer.global_step == 3
    message = "\n".join(str(w.message) for w in caught)
    for name, reason in BAD.items():
        assert f"{folder / name}: " in message and reason in message
    assert sorted(name for name, _ in data.skipped) == sorted(BAD)
    assert sorted(name for files in data.files.values() for name in files) == sorted(GOOD)


def test_strict_run_fails_listing_every_unusable_file(folder):
    with pytest.raises(ValueError, match="cannot be used") as error:
        datamodule(folder, strict=True).setup("fit")
    assert all(str(folder / name) in str(error.value) for name in BAD)
    assert "strict=False" in str(error.value)


def test_each_image_is_cached_as_load_image_prepares_its_file(folder):
    data = datamodule(folder, channels=1, crop_size=16)
    data.setup("fit")
    transform = ImageTransform(16, 1, 16)
    for split, (images, _) in data.splits.items():
        assert images.dtype == torch.uint8 and images.shape[1:] == (1, 16, 16)
        for name, image in zip(data.files[split], images, strict=True):
            np.testing.assert_array_equal(image.numpy(), load_image(folder / name, transform))


def test_batches_are_unit_floats_with_class_subfolders_as_labels(folder):
    data = datamodule(folder)
    data.setup("fit")
    assert data.classes == ["cats", "dogs"]
    images, _ = next(iter(data.train_dataloader()))
    assert images.dtype == torch.float32 and images.shape == (4, 3, 16, 16)
    assert images.min() >= 0 and images.max() <= 1
    _, labels = data.splits["train"]
    expected = [data.classes.index(name.split("/")[0]) for name in data.files["train"]]
    assert labels.tolist() == expected


def test_flat_folder_has_no_classes_and_zero_labels(tmp_path):
    flat = write_folder(tmp_path / "flat", {f"{i}.png": ("RGB", (20, 20)) for i in range(6)},
                        bad=False)
    data = datamodule(flat)
    data.setup("fit")
    assert data.classes == []
    assert torch.cat([labels for _, labels in data.train_dataloader()]).eq(0).all()


def test_split_sizes_follow_the_fractions_and_do_not_depend_on_the_seed(folder):
    first = datamodule(folder, val_fraction=0.25, test_fraction=0.1, seed=1)
    first.setup("fit")
    assert {split: len(files) for split, files in first.files.items()} == {
        "val": 3, "test": 1, "train": 8}
    second = datamodule(folder, val_fraction=0.25, test_fraction=0.1, seed=2)
    second.setup("fit")
    assert second.files == first.files
    assert len(first.test_dataloader()) == 1
    assert datamodule(folder, test_fraction=0).test_dataloader() == []


def test_second_run_reuses_the_cache_and_still_names_the_skipped_files(folder):
    datamodule(folder).setup("fit")
    cache = folder.parent / "cache"
    before = {path.name: path.stat().st_mtime_ns for path in cache.iterdir()}
    assert {Path(name).suffix for name in before} == {".npy", ".json"}
    again = datamodule(folder)
    with pytest.warns(UserWarning, match="truncated.jpg"):
        again.setup("fit")
    assert {path.name: path.stat().st_mtime_ns for path in cache.iterdir()} == before


def test_default_cache_is_hidden_inside_the_folder_and_never_read_as_images(folder):
    data = ImageFolderDataModule(str(folder), image_size=16, progress=False, val_fraction=0.25)
    with pytest.warns(UserWarning):
        data.setup("fit")
    assert list((folder / ".lightning-vae-cache").glob("folder-*.npy"))
    with pytest.warns(UserWarning):
        ImageFolderDataModule(str(folder), image_size=16, progress=False).setup("fit")


def test_cache_folder_that_cannot_be_created_says_to_pass_cache_dir(folder, tmp_path):
    (tmp_path / "a_file").write_text("")
    data = datamodule(folder, cache_dir=str(tmp_path / "a_file" / "cache"))
    with pytest.raises(PermissionError, match=r"a_file/cache .*pass a writable cache_dir"):
        data.prepare_data()


def test_image_smaller_than_the_crop_is_skipped_with_the_reason(tmp_path):
    pictures = write_folder(tmp_path / "p", {f"{i}.png": ("L", (30, 30)) for i in range(5)}
                            | {"tiny.png": ("L", (10, 12))}, bad=False)
    data = datamodule(pictures, crop_size=20)
    with pytest.warns(UserWarning, match=r"tiny.png: crop_size=20 does not fit in a 10x12"):
        data.setup("fit")
    assert sum(len(files) for files in data.files.values()) == 5


def test_static_binarization_gives_binary_images_and_is_described(folder):
    data = datamodule(folder, binarize="static", channels=1)
    assert data.preprocessing == {"binarize": "static", "crop_size": None, "input_size": None}
    with pytest.warns(UserWarning):
        data.setup("fit")
    images, _ = next(iter(data.train_dataloader()))
    assert set(images.unique().tolist()) <= {0.0, 1.0}


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "labels.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match=r"holds no image files .* labels.csv"):
        datamodule(tmp_path / "empty").setup("fit")


def write_text_files(root: Path, names: list[str]) -> Path:
    """Text files named like images, none of which can be decoded."""
    root.mkdir()
    for name in names:
        (root / name).write_text("nope\n")
    return root


def test_folder_without_a_usable_image_says_in_the_error_why_each_file_fails(tmp_path):
    bad = write_text_files(tmp_path / "bad", ["x.png", "y.jpg"])
    with pytest.raises(ValueError, match=r"none of the 2 image files in .* can be used") as error:
        datamodule(bad).prepare_data()
    for name in ("x.png", "y.jpg"):
        assert f"{bad / name}: cannot be decoded as an image" in str(error.value)


def test_folder_without_a_usable_image_counts_the_files_it_leaves_out(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_module, "SHOWN_SKIPPED", 2)
    bad = write_text_files(tmp_path / "bad", ["a.png", "b.png", "c.png"])
    with pytest.raises(ValueError, match=r"b\.png: cannot be decoded") as error:
        datamodule(bad).setup("fit")
    listed = re.search(r"\.\.\. and 1 more, all listed in (\S+\.json)", str(error.value))
    assert "c.png" not in str(error.value) and listed
    assert [name for name, _ in json.loads(Path(listed[1]).read_text())["skipped"]] == [
        "a.png", "b.png", "c.png"]


def test_missing_folder_says_which_option_to_set(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_dir"):
        datamodule(tmp_path / "nowhere").setup("fit")


def test_too_few_images_for_the_split_is_a_clear_error(tmp_path):
    two = write_folder(tmp_path / "two", {"a.png": ("L", (8, 8)), "b.png": ("L", (8, 8))},
                       bad=False)
    with pytest.raises(ValueError, match="2 usable images: too few"):
        datamodule(two, val_fraction=0.3, test_fraction=0.3).setup("fit")


@pytest.mark.parametrize("options, message", [
    ({"val_fraction": 0.6, "test_fraction": 0.5}, "their sum below 1"),
    ({"binarize": "yes"}, "binarize='yes'"),
    ({"loader": "gpu"}, "loader='gpu'"),
    ({"channels": 4}, "channels must be 1"),
])
def test_invalid_options_are_refused(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        datamodule(tmp_path, **options)


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"batch_size": "64"}, TypeError, "batch_size='64': expected an integer >= 1, got a str"),
    ({"eval_batch_size": 0}, ValueError, "eval_batch_size=0: expected an integer >= 1"),
    ({"image_size": 16.5}, TypeError, "image_size=16.5: expected an integer >= 1, got a float"),
    ({"crop_size": 0}, ValueError, "crop_size=0: expected an integer >= 1"),
    ({"val_fraction": "0.1"}, TypeError, "val_fraction='0.1': expected a number, got a str"),
    ({"seed": -1}, ValueError, "seed=-1: expected an integer >= 0"),
    ({"strict": "true"}, TypeError, "strict='true': expected true or false, got a str"),
])
def test_options_of_a_wrong_type_or_range_are_refused_by_name(tmp_path, options, error,
                                                                       message):
    with pytest.raises(error, match=re.escape(message)):
        datamodule(tmp_path, **options)


def test_image_folder_recipe_trains_and_records_the_preprocessing(folder, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setattr(sys, "argv", ["lightning-vae"])  # LightningCLI warns about pytest's
    main(["fit", "--config", str(ROOT / "recipes" / "image_folder.yaml"),
          "--data.init_args.data_dir", str(folder),
          "--data.init_args.image_size", "16",
          "--data.init_args.cache_dir", str(tmp_path / "cache"),
          "--data.init_args.progress", "false",
          "--trainer.max_steps", "3",
          "--trainer.accelerator", "cpu",
          "--trainer.enable_progress_bar", "false",
          "--trainer.default_root_dir", str(tmp_path),
          "--trainer.logger", "CSVLogger",
          "--trainer.logger.save_dir", str(tmp_path),
          "--trainer.log_every_n_steps", "1"])
    run = tmp_path / "lightning_logs" / "version_0"
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert sorted({int(r["step"]) for r in rows if r.get("train/loss")}) == [0, 1, 2]
    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert checkpoint["hyper_parameters"]["image_shape"] == (3, 16, 16)
    assert checkpoint["hyper_parameters"]["preprocessing"] == {
        "binarize": "none", "crop_size": None, "input_size": None}
    assert os.path.isdir(tmp_path / "cache")
