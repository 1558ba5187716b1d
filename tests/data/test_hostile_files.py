"""Image folders hold what users and other programs leave there (data/folder.py, images.py): a
FIFO, symlink loops, dangling symlinks, names that are not UTF-8, decompression bombs, files
replaced by others of the same size, damaged caches. Each is skipped and named, refused before
it costs memory, or rebuilt; nothing hangs."""

import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightning_vae.cli import main
from lightning_vae.data import ImageFolderDataModule
from lightning_vae.data.folder import list_images
from lightning_vae.data.images import MAX_IMAGE_PIXELS, ImageTransform, load_image

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="FIFOs and byte names as on Linux")


def write_png(path: Path, value: int, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)
    return path


def bomb(path: Path, side: int = 9000) -> Path:
    """A 1x1 PNG whose header claims ``side`` x ``side`` pixels (CRC fixed): the header is all
    Pillow reads before decoding."""
    write_png(path, 0, size=1)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 4  # signature, then the chunk's length; the type and data follow
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", side, side)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def hostile_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    for i in range(6):
        write_png(folder / f"good{i}.png", 40 * i)
    os.mkfifo(folder / "pipe.png")
    (folder / "dangling.png").symlink_to(folder / "gone.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "linked.png").symlink_to(folder / "good0.png")  # a symlink to a file is read
    write_png(Path(os.fsdecode(bytes(folder) + b"/bad\xff.png")), 200)
    return folder


def test_an_image_folder_skips_and_names_every_entry_that_is_not_a_readable_file(
        hostile_folder):
    images, _, unreadable = list_images(hostile_folder)
    assert images == [*(f"good{i}.png" for i in range(6)), "linked.png"]
    reasons = dict(unreadable)
    assert reasons["pipe.png"].startswith("not a regular file but a FIFO")
    assert reasons["dangling.png"].startswith("a symbolic link to nothing (dangling)")
    assert reasons["loop.png"].startswith("a symbolic link loop")
    assert reasons["bad\\xff.png"] == "its name is not valid UTF-8: rename it"


def test_the_datamodule_does_not_hang_on_a_fifo_and_warns_naming_each_skipped_entry(
        hostile_folder, tmp_path):
    data = ImageFolderDataModule(str(hostile_folder), image_size=8, channels=1,
                                 val_fraction=0.25, batch_size=2, progress=False,
                                 cache_dir=str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match="4 image files .* cannot be used") as warned:
        data.setup("fit")
    message = str(warned[0].message)
    for name in ("pipe.png", "dangling.png", "loop.png", "bad\\xff.png"):
        assert f"{hostile_folder / name}: " in message
    assert sum(len(files) for files in data.files.values()) == 7


def test_reconstruct_skips_and_names_what_is_not_a_readable_file(hostile_folder, tmp_path,
                                                                  capsys):
    from hub_models import save_small_model
    model = save_small_model(tmp_path / "model")
    main(["reconstruct", str(model), str(hostile_folder), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert f"skipped {hostile_folder / 'pipe.png'}: not a regular file but a FIFO" in err
    assert len(list((tmp_path / "out").iterdir())) == 7


def test_a_decompression_bomb_is_refused_from_its_header_naming_the_file(tmp_path):
    path = bomb(tmp_path / "bomb.png")
    with pytest.raises(ValueError, match=f"{path}: cannot be decoded as an image .*declares "
                                         f"9000x9000 pixels, more than the "
                                         f"{MAX_IMAGE_PIXELS}"):
        load_image(path, ImageTransform(image_size=8))


def test_reconstruct_of_a_decompression_bomb_fails_in_one_line_naming_it(tmp_path):
    from hub_models import save_small_model
    model = save_small_model(tmp_path / "model")
    path = bomb(tmp_path / "bomb.png")
    with pytest.raises(SystemExit) as stopped:
        main(["reconstruct", str(model), str(path), "--out", str(tmp_path / "out")])
    assert str(stopped.value).startswith(f"lightning-vae reconstruct: error: {path}: cannot be "
                                         "decoded as an image")


def folder_data(folder: Path, cache: Path) -> ImageFolderDataModule:
    data = ImageFolderDataModule(str(folder), image_size=8, channels=1, val_fraction=0,
                                 batch_size=2, progress=False, cache_dir=str(cache))
    data.setup("fit")
    return data


def train_pixels(data: ImageFolderDataModule) -> dict[str, int]:
    images, _ = data.splits["train"]
    return {name: int(images[row].float().mean())  # uint8 grey levels
            for row, name in enumerate(data.files["train"])}


def test_a_file_replaced_by_another_of_the_same_size_is_read_again(tmp_path):
    folder = tmp_path / "images"
    for i in range(3):
        write_png(folder / f"{i}.png", 10)
    assert train_pixels(folder_data(folder, tmp_path / "cache"))["1.png"] == 10
    size = (folder / "1.png").stat().st_size
    write_png(folder / "1.png", 250)
    assert (folder / "1.png").stat().st_size == size  # a flat PNG's size is its value's
    assert train_pixels(folder_data(folder, tmp_path / "cache"))["1.png"] == 250


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_image_cache_is_named_and_rebuilt(tmp_path, damage):
    folder = tmp_path / "images"
    for i in range(3):
        write_png(folder / f"{i}.png", 60 * i)
    expected = train_pixels(folder_data(folder, tmp_path / "cache"))
    [cache] = (tmp_path / "cache").glob("folder-*.npy")
    cache.write_bytes(cache.read_bytes()[:100] if damage == "truncate" else b"not numpy")
    with pytest.warns(UserWarning, match=f"the image cache {cache} is damaged .*; rebuilding it"):
        assert train_pixels(folder_data(folder, tmp_path / "cache")) == expected


def test_a_damaged_verdicts_file_is_named_and_the_images_checked_again(tmp_path):
    folder = tmp_path / "images"
    for i in range(3):
        write_png(folder / f"{i}.png", 60 * i)
    folder_data(folder, tmp_path / "cache")
    [verdicts] = (tmp_path / "cache").glob("folder-check-*.json")
    verdicts.write_text('{"skipped": [[' * 100_000)  # cut short, and nested past any limit
    with pytest.warns(UserWarning, match=f"the image check cache {verdicts} is damaged"):
        folder_data(folder, tmp_path / "cache")
    assert verdicts.read_text().startswith('{\n "skipped": []')
