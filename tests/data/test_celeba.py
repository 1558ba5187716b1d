"""CelebADataModule on a generated miniature CelebA in the official layout."""

import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from batches import all_batches
from celeba_fixture import ATTRIBUTE_NAMES, PARTITION, http_server, make_celeba, write_jpeg
from torch.utils.data import DataLoader

from lightning_vae.data.celeba import (
    HUB_REPO,
    HUB_REVISION,
    CelebADataModule,
    download_celeba,
    hub_mirrors,
    read_attributes,
    read_partition,
)
from lightning_vae.data.device_loader import DeviceLoader
from lightning_vae.data.download import DownloadError

SIZE = 16


pytestmark = pytest.mark.usefixtures("no_data_env")  # not a developer's data


def datamodule(data_dir: Path, **kwargs) -> CelebADataModule:
    options = {"image_size": SIZE, "batch_size": 4, "download": False, "progress": False,
               "loader": "device", **kwargs}
    dm = CelebADataModule(data_dir=str(data_dir), **options)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def cache_files(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_split_sizes_follow_the_partition_file(tmp_path):
    make_celeba(tmp_path / "celeba")
    dm = datamodule(tmp_path)
    assert {split: len(images) for split, (images, _) in dm.splits.items()} == {
        "train": PARTITION.count(0), "val": PARTITION.count(1), "test": PARTITION.count(2)}
    assert len(dm.train_dataloader()) == 4  # 14 images in batches of 4


def test_batches_are_float_images_in_unit_range_with_zero_labels(tmp_path):
    make_celeba(tmp_path / "celeba")
    dm = datamodule(tmp_path)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.float32 and images.shape == (4, 3, SIZE, SIZE)
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert labels.dtype == torch.int64 and labels.shape == (4,) and (labels == 0).all()
    assert dm.image_shape == (3, SIZE, SIZE) and dm.dataset_name == "celeba"


def test_each_split_holds_its_images_in_file_order(tmp_path):
    mini = make_celeba(tmp_path / "celeba")
    dm = datamodule(tmp_path)
    for split, code in (("val", 1), ("test", 2), ("train", 0)):
        images = dm.splits[split][0].float()
        expected = mini.colours[mini.split(code)].astype(np.float32)
        np.testing.assert_allclose(images.mean(dim=(2, 3)).numpy(), expected, atol=3)


def test_attributes_are_parsed_to_zero_one_in_split_order(tmp_path):
    mini = make_celeba(tmp_path / "celeba")
    dm = datamodule(tmp_path, return_attributes=True)
    _, labels = all_batches(dm.val_dataloader())
    assert labels.dtype == torch.int64 and labels.shape == (PARTITION.count(1), 40)
    np.testing.assert_array_equal(labels.numpy(), mini.attributes[mini.split(1)])
    assert dm.attribute_names == ATTRIBUTE_NAMES


def test_attribute_file_maps_minus_one_to_zero(tmp_path):
    lines = ["1", " ".join(ATTRIBUTE_NAMES) + " ",
             "000001.jpg" + " -1" + "  1" * 38 + " -1"]
    (tmp_path / "list_attr_celeba.txt").write_text("\r\n".join(lines) + "\r\n")
    names, images, values = read_attributes(tmp_path / "list_attr_celeba.txt")
    assert names[0] == "5_o_Clock_Shadow" and names[-1] == "Young"
    assert images == ["000001.jpg"]
    np.testing.assert_array_equal(values, [[0] + [1] * 38 + [0]])


@pytest.mark.parametrize(
    ("row", "message"),
    [(" 1" * 39 + "  0", "000002.jpg holds values other than -1 and 1"),
     (" 1" * 39, r"list_attr_celeba\.txt: .*columns changed from 41 to 40.*damaged"),
     (" 1" * 41, r"list_attr_celeba\.txt: .*columns changed from 41 to 42.*damaged")],
)
def test_damaged_attribute_line_is_refused(tmp_path, row, message):
    lines = ["2", " ".join(ATTRIBUTE_NAMES), "000001.jpg" + " 1" * 40, "000002.jpg" + row]
    (tmp_path / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message):
        read_attributes(tmp_path / "list_attr_celeba.txt")


def test_attribute_file_with_a_wrong_count_is_refused(tmp_path):
    make_celeba(tmp_path)
    path = tmp_path / "list_attr_celeba.txt"
    path.write_bytes(b"25" + path.read_bytes()[2:])
    with pytest.raises(ValueError, match=r"list_attr_celeba\.txt: line 1 announces 25 images"):
        read_attributes(path)


def test_partition_listing_an_image_in_two_splits_is_refused(tmp_path):
    path = tmp_path / "list_eval_partition.txt"
    path.write_text("000001.jpg 0\n000002.jpg 0\n000001.jpg 2\n")
    with pytest.raises(ValueError, match=re.escape(
            f"{path}, line 3: 000001.jpg is listed again, in the test split (line 1 put it in "
            "the train split)")):
        read_partition(path)


@pytest.mark.parametrize(("name", "reader"), [("list_eval_partition.txt", read_partition),
                                              ("list_attr_celeba.txt", read_attributes)])
def test_binary_annotation_file_is_named_instead_of_a_decoding_error(tmp_path, name, reader):
    path = tmp_path / name
    path.write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a text file")):
        reader(path)


def remove_images(mini, kept: int) -> Path:
    """Delete all but the first `kept` images of `mini`'s folder, as an interrupted unzip leaves
    it; returns the folder."""
    folder = mini.folder / "img_align_celeba"
    for name in mini.files[kept:]:
        (folder / name).unlink()
    return folder


@pytest.mark.parametrize(("kept", "download"), [(5, False), (23, True)])
def test_incomplete_image_folder_counts_the_missing_images_and_says_how_to_fix_it(
        tmp_path, kept, download):
    folder = remove_images(make_celeba(tmp_path / "celeba"), kept)
    with pytest.raises(FileNotFoundError) as error:
        datamodule(tmp_path, download=download)
    message = str(error.value)
    partition = tmp_path / "celeba" / "list_eval_partition.txt"
    assert f"{folder}/ lacks {24 - kept} of the 24 images listed in {partition}" in message
    assert f"{kept + 1:06d}.jpg" in message and "incompletely extracted" in message
    assert "unzip -o img_align_celeba.zip" in message and f"delete {folder}/" in message
    assert ("pass download=True" in message) != download


def test_images_unzipped_one_folder_too_deep_are_found_and_named(tmp_path):
    make_celeba(tmp_path / "celeba")
    folder = tmp_path / "celeba" / "img_align_celeba"
    (folder / "img_align_celeba").mkdir()
    for image in folder.glob("*.jpg"):
        image.rename(folder / "img_align_celeba" / image.name)
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"lacks 24 of the 24 images listed in {tmp_path / 'celeba' / 'list_eval_partition.txt'}"
            f" (000001.jpg, 000002.jpg, 000003.jpg and 21 more): they are one folder too deep, "
            f"in {folder / 'img_align_celeba'}/: move them up a level")):
        datamodule(tmp_path, download=False)


@pytest.mark.parametrize("download", [False, True])
def test_a_zip_lacking_listed_images_counts_them_and_says_how_to_replace_it(tmp_path, download):
    mini = make_celeba(tmp_path / "celeba", zipped=True)
    archive = mini.folder / "img_align_celeba.zip"
    with zipfile.ZipFile(archive) as whole:
        members = {name: whole.read(name) for name in whole.namelist()}
    with zipfile.ZipFile(archive, "w") as cut:  # the last four images lost
        for name in sorted(members)[:20]:
            cut.writestr(name, members[name])
    with pytest.raises(FileNotFoundError) as error:
        datamodule(tmp_path, download=download)
    message = str(error.value)
    assert message.startswith(
        f"{archive} lacks 4 of the 24 images listed in {mini.folder / 'list_eval_partition.txt'}"
        " (000023.jpg, 000024.jpg, 000021.jpg and 1 more): it is not the whole official "
        f"archive. Delete {archive} (the official one has md5 ")
    assert ("then downloads it again" if download else "pass download=True") in message
    assert archive.is_file()  # named, not deleted


def test_incomplete_image_folder_gives_way_to_the_complete_zip_beside_it(tmp_path):
    make_celeba(tmp_path / "zipped" / "celeba", zipped=True)
    make_celeba(tmp_path / "both" / "celeba", zipped=True)
    remove_images(make_celeba(tmp_path / "both" / "celeba"), kept=5)
    with pytest.warns(UserWarning, match=r"lacks 19 of the 24 images .* read from .*\.zip"):
        from_both = datamodule(tmp_path / "both")
    from_zip = datamodule(tmp_path / "zipped")
    for split in ("train", "val", "test"):
        torch.testing.assert_close(from_both.splits[split][0], from_zip.splits[split][0])


def test_same_settings_reuse_the_cache(tmp_path):
    make_celeba(tmp_path / "celeba")
    datamodule(tmp_path)
    cache = tmp_path / "celeba" / "cache"
    before = cache_files(cache)
    assert len(before) == 3  # one file per split
    datamodule(tmp_path)
    assert cache_files(cache) == before


def test_changed_image_size_builds_new_caches(tmp_path):
    make_celeba(tmp_path / "celeba")
    datamodule(tmp_path)
    cache = tmp_path / "celeba" / "cache"
    before = cache_files(cache)
    dm = datamodule(tmp_path, image_size=8)
    after = cache_files(cache)
    assert len(after) == 6 and all(after[name] == mtime for name, mtime in before.items())
    assert dm.splits["train"][0].shape == (PARTITION.count(0), 3, 8, 8)


def test_zip_gives_the_same_images_as_the_folder(tmp_path):
    make_celeba(tmp_path / "folder" / "celeba")
    make_celeba(tmp_path / "zipped" / "celeba", zipped=True)
    assert not (tmp_path / "zipped" / "celeba" / "img_align_celeba").exists()
    from_folder = datamodule(tmp_path / "folder")
    from_zip = datamodule(tmp_path / "zipped")
    for split in ("train", "val", "test"):
        torch.testing.assert_close(from_zip.splits[split][0], from_folder.splits[split][0])


def test_files_directly_in_data_dir_are_found(tmp_path):
    make_celeba(tmp_path)
    assert len(datamodule(tmp_path).splits["val"][0]) == PARTITION.count(1)


def test_files_under_the_environment_folder_are_found(tmp_path, monkeypatch):
    make_celeba(tmp_path / "shared" / "celeba")
    monkeypatch.setenv("LIGHTNING_VAE_DATA", str(tmp_path / "shared"))
    dm = datamodule(tmp_path / "empty", cache_dir=str(tmp_path / "cache"))
    assert len(dm.splits["test"][0]) == PARTITION.count(2)


def test_missing_files_error_lists_expected_files_folders_and_steps(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        datamodule(tmp_path, return_attributes=True)
    message = str(error.value)
    for expected in ("img_align_celeba.zip", "img_align_celeba/", "list_eval_partition.txt",
                     "list_attr_celeba.txt", f"{tmp_path / 'celeba'}/", f"{tmp_path}/",
                     "00d2c5bc6d35e252742224ab0c1e8fcb", "download=True",
                     f"https://huggingface.co/datasets/{HUB_REPO}"):
        assert expected in message


def test_attribute_file_is_only_required_for_attributes(tmp_path):
    make_celeba(tmp_path / "celeba", attributes=False)
    assert len(datamodule(tmp_path).splits["train"][0]) == PARTITION.count(0)
    with pytest.raises(FileNotFoundError, match=r"has only: img_align_celeba, list_eval_partition"):
        datamodule(tmp_path, return_attributes=True)


def test_image_of_unexpected_size_is_named_and_leaves_no_cache(tmp_path):
    mini = make_celeba(tmp_path / "celeba")
    odd = tmp_path / "celeba" / "img_align_celeba" / mini.files[3]
    write_jpeg(odd, (200, 200))
    with pytest.raises(ValueError, match=rf"{mini.files[3]}: image is 200x200 .* must be 178x218"):
        datamodule(tmp_path)
    assert not list((tmp_path / "celeba" / "cache").glob("*.npy"))


def test_unreadable_later_image_leaves_no_cache_file(tmp_path):
    mini = make_celeba(tmp_path / "celeba")
    last_train = mini.files[mini.split(0)[-1]]
    (tmp_path / "celeba" / "img_align_celeba" / last_train).write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ValueError, match=rf"{last_train}: cannot be decoded"):
        datamodule(tmp_path)
    assert list((tmp_path / "celeba" / "cache").iterdir()) == []


def test_unwritable_cache_folder_says_to_pass_cache_dir(tmp_path):
    make_celeba(tmp_path / "celeba")
    (tmp_path / "not_a_folder").write_text("")
    with pytest.raises(PermissionError, match=r"not_a_folder/cache .*cache_dir"):
        datamodule(tmp_path, cache_dir=str(tmp_path / "not_a_folder" / "cache"))


def test_crop_that_does_not_fit_celeba_is_refused():
    with pytest.raises(ValueError, match=r"crop_size=200 must lie in \[1, 178\]"):
        CelebADataModule(crop_size=200)


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"crop_size": 148.0}, TypeError, "crop_size=148.0: expected an integer >= 1, got a float"),
    ({"image_size": "64"}, TypeError, "image_size='64': expected an integer >= 1, got a str"),
    ({"batch_size": 0}, ValueError, "batch_size=0: expected an integer >= 1"),
    ({"return_attributes": "no"}, TypeError,
     "return_attributes='no': expected true or false, got a str"),
])
def test_options_of_a_wrong_type_or_range_are_refused_by_name(options, error, message):
    with pytest.raises(error, match=re.escape(message)):
        CelebADataModule(**options)


def test_dataloader_fallback_gives_the_same_batches(tmp_path):
    make_celeba(tmp_path / "celeba")
    on_device = datamodule(tmp_path).val_dataloader()
    fallback = datamodule(tmp_path, loader="dataloader").val_dataloader()
    assert isinstance(on_device, DeviceLoader) and isinstance(fallback, DataLoader)
    for (a, la), (b, lb) in zip(on_device, fallback, strict=True):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(la, lb)


def test_hub_mirror_follows_hf_endpoint(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.org/")
    assert hub_mirrors() == (
        f"https://hub.example.org/datasets/{HUB_REPO}/resolve/{HUB_REVISION}/",)


def test_download_fetches_files_checked_by_md5(tmp_path):
    mini = make_celeba(tmp_path / "served", zipped=True)
    names = ["img_align_celeba.zip", "list_eval_partition.txt", "list_attr_celeba.txt"]
    with http_server(tmp_path / "served") as url:
        download_celeba(tmp_path / "data" / "celeba", names, mirrors=(url + "/",),
                        md5={name: mini.md5(name) for name in names}, progress=False)
    for name in names:
        downloaded = tmp_path / "data" / "celeba" / name
        assert downloaded.read_bytes() == (mini.folder / name).read_bytes()
    dm = datamodule(tmp_path / "data")
    assert len(dm.splits["train"][0]) == PARTITION.count(0)


def test_download_with_wrong_checksum_keeps_nothing_and_gives_manual_steps(tmp_path, monkeypatch):
    # A Hub mirror (via HF_ENDPOINT) serving files that are not the official ones.
    served = tmp_path / "hub" / "datasets" / HUB_REPO / "resolve" / HUB_REVISION
    make_celeba(served, zipped=True)
    with http_server(tmp_path / "hub") as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        with pytest.raises(DownloadError) as error:
            datamodule(tmp_path / "data", download=True)
    message = str(error.value)
    assert "00d2c5bc6d35e252742224ab0c1e8fcb" in message and "To get CelebA by hand" in message
    assert f"{tmp_path / 'data' / 'celeba'}/" in message
    leftovers = list((tmp_path / "data" / "celeba").glob("*"))
    assert not [p for p in leftovers if p.name.startswith("img_align_celeba")]


def test_download_while_the_hub_is_switched_off_asks_nothing_and_gives_manual_steps(
        tmp_path, monkeypatch, offline):
    served = tmp_path / "hub" / "datasets" / HUB_REPO / "resolve" / HUB_REVISION
    make_celeba(served, zipped=True)
    with http_server(tmp_path / "hub") as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        with pytest.raises(DownloadError, match=r"downloaded from the Hugging Face Hub, but "
                           r"HF_HUB_OFFLINE is set: unset it to download, or\nTo get CelebA"):
            datamodule(tmp_path / "data", download=True)
    assert not [path for path in (tmp_path / "data").rglob("*") if path.is_file()]
