"""Image decoding to uint8 (C, H, W) and the preprocessed .npy cache."""

import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightning_vae.atomic import new_file_mode
from lightning_vae.data.images import ImageTransform, build_uint8_cache, cache_file, load_image


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_pngs(folder: Path, count: int, height: int = 20, width: int = 16) -> list[str]:
    """`count` random RGB PNGs named 0.png, 1.png, ...; returns the names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i}.png" for i in range(count)]
    for i, name in enumerate(names):
        Image.fromarray(random_rgb(height, width, seed=i)).save(folder / name)
    return names


def test_center_crop_takes_the_documented_offsets(tmp_path):
    pixels = random_rgb(218, 178)
    Image.fromarray(pixels).save(tmp_path / "face.png")
    out = load_image(tmp_path / "face.png", ImageTransform(image_size=148, crop_size=148))
    assert out.dtype == np.uint8 and out.shape == (3, 148, 148)
    # left = (178 - 148) // 2 = 15, top = (218 - 148) // 2 = 35
    np.testing.assert_array_equal(out, pixels[35:183, 15:163].transpose(2, 0, 1))


def test_resize_uses_only_pixels_inside_the_crop(tmp_path):
    pixels = np.zeros((218, 178, 3), dtype=np.uint8)
    pixels[35:183, 15:163] = (10, 200, 30)
    Image.fromarray(pixels).save(tmp_path / "face.png")
    out = load_image(tmp_path / "face.png", ImageTransform(image_size=64, crop_size=148))
    assert out.shape == (3, 64, 64)
    np.testing.assert_array_equal(out[:, 0, 0], [10, 200, 30])
    assert (out == np.array([10, 200, 30], dtype=np.uint8)[:, None, None]).all()


def test_no_crop_size_takes_the_largest_centred_square(tmp_path):
    pixels = random_rgb(30, 20)
    Image.fromarray(pixels).save(tmp_path / "tall.png")
    out = load_image(tmp_path / "tall.png", ImageTransform(image_size=20))
    np.testing.assert_array_equal(out, pixels[5:25].transpose(2, 0, 1))


def test_grey_file_gives_three_equal_channels(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
    out = load_image(tmp_path / "grey.png", ImageTransform(image_size=8, channels=3))
    for channel in out:
        np.testing.assert_array_equal(channel, grey)


def test_rgb_file_to_one_channel_is_luma(tmp_path):
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    pixels[..., 0] = 255  # pure red: ITU-R 601 luma 0.299 * 255 = 76
    Image.fromarray(pixels).save(tmp_path / "red.png")
    out = load_image(tmp_path / "red.png", ImageTransform(image_size=4, channels=1))
    assert out.shape == (1, 4, 4)
    assert (out == 76).all()


def test_transparent_pixels_become_black_whatever_colour_they_hide(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., :3] = 255  # white, but fully transparent on the left half
    rgba[:, 2:, 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "alpha.png")
    out = load_image(tmp_path / "alpha.png", ImageTransform(image_size=4))
    assert (out[:, :, :2] == 0).all() and (out[:, :, 2:] == 255).all()


def test_palette_file_decodes_to_its_colours(tmp_path):
    image = Image.new("P", (4, 4))
    image.putpalette([0, 0, 0, 250, 100, 5] + [0] * 762)
    image.putpixel((1, 2), 1)
    image.save(tmp_path / "palette.png")
    out = load_image(tmp_path / "palette.png", ImageTransform(image_size=4))
    np.testing.assert_array_equal(out[:, 2, 1], [250, 100, 5])
    assert out.sum() == 250 + 100 + 5


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    wide = np.array([[0, 257 * 100], [65535, 257 * 200]], dtype=np.uint16)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", ImageTransform(image_size=2, channels=1))
    np.testing.assert_array_equal(out[0], [[0, 100], [255, 200]])


def test_sixteen_bit_grey_with_a_transparent_value_becomes_black_there(tmp_path):
    # A 16-bit grey PNG whose tRNS chunk makes the value 65535 transparent: those pixels are
    # composited over black like any other transparency, the others keep their scaled grey.
    wide = np.array([[65535, 257 * 100], [65535, 257 * 200]], dtype=np.uint16)
    Image.fromarray(wide).save(tmp_path / "wide.png", transparency=65535)
    assert Image.open(tmp_path / "wide.png").info["transparency"] == 65535
    out = load_image(tmp_path / "wide.png", ImageTransform(image_size=2, channels=1))
    np.testing.assert_array_equal(out[0], [[0, 100], [0, 200]])


def test_exif_orientation_is_applied(tmp_path):
    pixels = random_rgb(6, 4)  # stored 4 wide, 6 high; orientation 6 shows it rotated 90° cw
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "turned.png", exif=exif)
    out = load_image(tmp_path / "turned.png", ImageTransform(image_size=4, crop_size=4))
    upright = np.rot90(pixels, k=-1)  # 6 wide, 4 high
    np.testing.assert_array_equal(out, upright[:, 1:5].transpose(2, 0, 1))


def test_bytes_and_path_give_the_same_array(tmp_path):
    Image.fromarray(random_rgb(9, 7)).save(tmp_path / "a.png")
    transform = ImageTransform(image_size=5)
    from_path = load_image(tmp_path / "a.png", transform)
    from_bytes = load_image((tmp_path / "a.png").read_bytes(), transform)
    np.testing.assert_array_equal(from_path, from_bytes)


def test_unexpected_input_size_names_the_file_and_both_sizes(tmp_path):
    Image.fromarray(random_rgb(100, 90)).save(tmp_path / "odd.png")
    transform = ImageTransform(image_size=8, crop_size=80, input_size=(178, 218))
    with pytest.raises(ValueError, match=r"odd\.png: image is 90x100 .* must be 178x218"):
        load_image(tmp_path / "odd.png", transform)


def test_crop_larger_than_image_says_the_largest_that_fits(tmp_path):
    Image.fromarray(random_rgb(10, 12)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match=r"small\.png: crop_size=11 .* crop_size <= 10"):
        load_image(tmp_path / "small.png", ImageTransform(image_size=8, crop_size=11))


def test_undecodable_file_names_the_file(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"broken\.jpg: cannot be decoded"):
        load_image(tmp_path / "broken.jpg", ImageTransform(image_size=8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"image_size": 0}, "image_size"), ({"image_size": 8, "channels": 2}, "channels"),
     ({"image_size": 8, "crop_size": 0}, "crop_size")],
)
def test_invalid_transform_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageTransform(**kwargs)


def test_cache_holds_each_file_preprocessed_in_order(tmp_path):
    names = write_pngs(tmp_path / "images", 5)
    transform = ImageTransform(image_size=8, crop_size=12)
    cached = build_uint8_cache(names, tmp_path / "images", tmp_path / "cache", transform,
                               prefix="toy", progress=False)
    assert cached.dtype == np.uint8 and cached.shape == (5, 3, 8, 8)
    for row, name in zip(cached, names, strict=True):
        np.testing.assert_array_equal(row, load_image(tmp_path / "images" / name, transform))


def test_cache_name_shows_the_settings(tmp_path):
    names = write_pngs(tmp_path / "images", 2)
    path = cache_file(names, tmp_path / "images", tmp_path / "cache",
                      ImageTransform(image_size=8, channels=1, crop_size=12), prefix="toy")
    assert path.parent == tmp_path / "cache"
    assert path.name.startswith("toy-1x8x8-crop12-") and path.suffix == ".npy"


def test_same_settings_reuse_the_cache_without_rewriting_it(tmp_path):
    names = write_pngs(tmp_path / "images", 3)
    transform = ImageTransform(image_size=8)
    args = (names, tmp_path / "images", tmp_path / "cache", transform)
    build_uint8_cache(*args, prefix="toy", progress=False)
    path = cache_file(*args, prefix="toy")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    build_uint8_cache(*args, prefix="toy", progress=False)
    assert path.stat().st_mtime_ns == 1_000_000_000
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [path.name]


@pytest.mark.parametrize(
    "change",
    [{"image_size": 6}, {"crop_size": 10}, {"channels": 1}, {"input_size": (16, 20)}],
)
def test_changed_settings_build_a_new_cache(tmp_path, change):
    names = write_pngs(tmp_path / "images", 3)
    before = ImageTransform(image_size=8)
    after = ImageTransform(**{"image_size": 8, **change})
    first = cache_file(names, tmp_path / "images", tmp_path / "cache", before, prefix="toy")
    second = cache_file(names, tmp_path / "images", tmp_path / "cache", after, prefix="toy")
    assert first != second
    built = build_uint8_cache(names, tmp_path / "images", tmp_path / "cache", after,
                              prefix="toy", progress=False)
    assert built.shape[1:] == (after.channels, after.image_size, after.image_size)
    assert second.exists() and not first.exists()


def test_changed_file_list_or_file_builds_a_new_cache(tmp_path):
    names = write_pngs(tmp_path / "images", 3)
    transform = ImageTransform(image_size=8)
    root, cache = tmp_path / "images", tmp_path / "cache"
    original = cache_file(names, root, cache, transform, prefix="toy")
    assert cache_file(names[:2], root, cache, transform, prefix="toy") != original
    assert cache_file(names[::-1], root, cache, transform, prefix="toy") != original
    Image.new("RGB", (16, 20)).save(root / names[0])  # flat: compresses to fewer bytes
    assert cache_file(names, root, cache, transform, prefix="toy") != original


def test_zip_archive_gives_the_same_cache_as_the_folder(tmp_path):
    names = [f"faces/{name}" for name in write_pngs(tmp_path / "data" / "faces", 4)]
    with zipfile.ZipFile(tmp_path / "faces.zip", "w") as archive:
        for name in names:
            archive.write(tmp_path / "data" / name, arcname=name)
    transform = ImageTransform(image_size=8)
    from_zip = build_uint8_cache(names, tmp_path / "faces.zip", tmp_path / "cache", transform,
                                 prefix="toy", progress=False)
    from_folder = cache_file(names, tmp_path / "data", tmp_path / "cache", transform, prefix="toy")
    assert from_folder.exists()  # same names and sizes: the folder would reuse this file
    for row, name in zip(from_zip, names, strict=True):
        np.testing.assert_array_equal(row, load_image(tmp_path / "data" / name, transform))


def test_missing_file_is_named(tmp_path):
    names = [*write_pngs(tmp_path / "images", 2), "gone.png"]
    with pytest.raises(FileNotFoundError, match=r"images/gone\.png does not exist"):
        build_uint8_cache(names, tmp_path / "images", tmp_path / "cache",
                          ImageTransform(image_size=8), prefix="toy", progress=False)


def test_failed_build_leaves_no_cache_and_no_temporary_file(tmp_path):
    names = write_pngs(tmp_path / "images", 600)  # more than one chunk of 256
    (tmp_path / "images" / names[500]).write_bytes(b"truncated")
    with pytest.raises(ValueError, match=r"500\.png: cannot be decoded"):
        build_uint8_cache(names, tmp_path / "images", tmp_path / "cache",
                          ImageTransform(image_size=4), prefix="toy", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_new_cache_file_gets_the_mode_of_any_new_file(tmp_path):
    """Not mkstemp's 0600: a cache shared between users stays readable by them."""
    names = write_pngs(tmp_path / "images", 1)
    transform = ImageTransform(image_size=8)
    build_uint8_cache(names, tmp_path / "images", tmp_path / "cache", transform, prefix="toy",
                      progress=False)
    target = cache_file(names, tmp_path / "images", tmp_path / "cache", transform, prefix="toy")
    assert stat.S_IMODE(target.stat().st_mode) == new_file_mode()


def test_file_that_cannot_be_read_is_named_not_taken_for_a_failed_cache_write(tmp_path):
    names = [*write_pngs(tmp_path / "images", 1), "folder.png"]
    (tmp_path / "images" / "folder.png").mkdir()
    with pytest.raises(ValueError, match=r"images/folder\.png: cannot be read \(Is a directory\)"):
        build_uint8_cache(names, tmp_path / "images", tmp_path / "cache",
                          ImageTransform(image_size=8), prefix="toy", progress=False)
    assert not (tmp_path / "cache").exists()  # found while keying the cache, before writing


def test_cache_folder_that_cannot_be_created_says_how_to_fix_it(tmp_path):
    names = write_pngs(tmp_path / "images", 1)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(PermissionError, match=r"a_file/cache .*pass a writable cache_dir"):
        build_uint8_cache(names, tmp_path / "images", tmp_path / "a_file" / "cache",
                          ImageTransform(image_size=8), prefix="toy", progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_read_only_cache_folder_says_how_to_fix_it(tmp_path):
    names = write_pngs(tmp_path / "images", 1)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache").chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=r"cache .*pass a writable cache_dir"):
            build_uint8_cache(names, tmp_path / "images", tmp_path / "cache",
                              ImageTransform(image_size=8), prefix="toy", progress=False)
    finally:
        (tmp_path / "cache").chmod(0o755)


def test_progress_bar_is_shown_while_building(tmp_path, capsys):
    names = write_pngs(tmp_path / "images", 2)
    build_uint8_cache(names, tmp_path / "images", tmp_path / "cache",
                      ImageTransform(image_size=8), prefix="toy", progress=True)
    assert "Preprocessing toy-3x8x8" in capsys.readouterr().err


def test_damaged_zip_archive_is_named(tmp_path):
    (tmp_path / "faces.zip").write_bytes(b"PK but cut short")
    with pytest.raises(ValueError, match=r"faces\.zip: not a readable zip archive"):
        build_uint8_cache(["a.png"], tmp_path / "faces.zip", tmp_path / "cache",
                          ImageTransform(image_size=8), prefix="toy", progress=False)
