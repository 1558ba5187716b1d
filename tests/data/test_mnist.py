"""MNIST / Fashion-MNIST datamodules and locate_files: tiny generated data, then the real sets."""

from __future__ import annotations

import gc
import itertools
import re
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from batches import all_batches
from conftest import write_tiny_mnist
from idx_files import write_idx
from torch.utils.data import DataLoader

from lightning_vae.data.device_loader import DeviceLoader
from lightning_vae.data.idx import IDXError, read_idx
from lightning_vae.data.mnist import FashionMNISTDataModule, MNISTDataModule
from lightning_vae.data.sources import FASHION_MNIST, MNIST, locate_files

pytestmark = pytest.mark.usefixtures("no_data_env")


def tiny(data_dir: Path, **kwargs) -> MNISTDataModule:
    dm = MNISTDataModule(str(data_dir), val_size=32, download=False, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def epoch(loader, number: int) -> tuple[torch.Tensor, torch.Tensor]:
    loader.sampler.set_epoch(number)
    return all_batches(loader)


def by_index(loader: DeviceLoader, number: int) -> torch.Tensor:
    """Epoch ``number``'s images put back in data set order, to compare draws of one image."""
    images, _ = epoch(loader, number)
    out = torch.empty_like(images)
    out[loader.sampler.indices()] = images
    return out


# -- locating files ----------------------------------------------------------------------------


def test_locate_finds_gz_files_in_data_dir(tiny_mnist_dir: Path) -> None:
    found = locate_files(MNIST, tiny_mnist_dir, download=False)
    assert found == {key: tiny_mnist_dir / f.name for key, f in MNIST.files.items()}


def test_locate_finds_uncompressed_files(tiny_mnist_raw_dir: Path) -> None:
    found = locate_files(MNIST, tiny_mnist_raw_dir, download=False)
    assert found["train_images"] == tiny_mnist_raw_dir / "train-images-idx3-ubyte"


def test_locate_reuses_the_torchvision_layout(tiny_mnist_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_mnist_dir, tmp_path / "data" / "MNIST" / "raw")
    found = locate_files(MNIST, tmp_path / "data", download=False)
    assert found["test_labels"] == tmp_path / "data" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"


@pytest.mark.parametrize("layout", [".", "MNIST/raw"])
def test_locate_searches_the_environment_variable(
    tiny_mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    shutil.copytree(tiny_mnist_dir, tmp_path / "env" / layout, dirs_exist_ok=True)
    monkeypatch.setenv("LIGHTNING_VAE_DATA", str(tmp_path / "env"))
    found = locate_files(MNIST, tmp_path / "empty", download=False)
    assert found["train_images"] == tmp_path / "env" / layout / "train-images-idx3-ubyte.gz"


def test_missing_files_without_download_say_where_we_looked(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        locate_files(MNIST, tmp_path / "data", download=False)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and "download=True" in message
    assert str(tmp_path / "data") in message and str(tmp_path / "data" / "MNIST" / "raw") in message
    assert "LIGHTNING_VAE_DATA" in message


def test_missing_fashion_mnist_suggests_the_debian_package(tmp_path: Path) -> None:
    spec = replace(FASHION_MNIST, system_dirs=(tmp_path / "system",))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as info:
        locate_files(spec, tmp_path / "data", download=False)
    assert str(tmp_path / "system") in str(info.value)


def test_unusable_files_are_named_with_the_reason(tiny_mnist_dir: Path) -> None:
    write_idx(tiny_mnist_dir / "train-images-idx3-ubyte.gz", torch.zeros(5, 27, 27).byte().numpy())
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.gz: header declares"):
        locate_files(MNIST, tiny_mnist_dir, download=False)


def test_images_and_labels_come_from_one_folder(tmp_path: Path) -> None:
    # data_dir holds another copy's training images only; $LIGHTNING_VAE_DATA holds a complete
    # copy. Its labels must not be paired with data_dir's images: a pair comes from one folder.
    complete = write_tiny_mnist(tmp_path / "env")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    other = 255 - read_idx(complete / "train-images-idx3-ubyte.gz")
    write_idx(data_dir / "train-images-idx3-ubyte.gz", other)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIGHTNING_VAE_DATA", str(complete))
        found = locate_files(MNIST, data_dir, download=False)
    assert found["train_images"] == complete / "train-images-idx3-ubyte.gz"
    assert found["train_labels"] == complete / "train-labels-idx1-ubyte.gz"


def test_a_stray_mnist_file_is_not_paired_with_fashion_mnist_labels(
    shared_mnist_dir: Path, system_fashion_mnist_dir: Path, tmp_path: Path
) -> None:
    shutil.copy(shared_mnist_dir / "train-images-idx3-ubyte.gz", tmp_path)
    found = locate_files(FASHION_MNIST, tmp_path, download=False)
    assert found["train_images"] == system_fashion_mnist_dir / "train-images-idx3-ubyte.gz"
    assert found["train_labels"] == system_fashion_mnist_dir / "train-labels-idx1-ubyte.gz"


def link_data_set(source: Path, folder: Path) -> Path:
    """``folder`` holding links to the four files of the copy in ``source``."""
    folder.mkdir(parents=True, exist_ok=True)
    for file in source.glob("*-ubyte.gz"):
        (folder / file.name).symlink_to(file)
    return folder


def test_mnist_in_data_dir_is_not_taken_for_fashion_mnist(
    shared_mnist_dir: Path, system_fashion_mnist_dir: Path, tmp_path: Path
) -> None:
    data_dir = link_data_set(shared_mnist_dir, tmp_path / "data")
    found = locate_files(FASHION_MNIST, data_dir, download=False)
    assert {path.parent for path in found.values()} == {system_fashion_mnist_dir}
    data_module = FashionMNISTDataModule(str(data_dir), download=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own filter: each text once
        data_module.prepare_data()
        data_module.setup("fit")
    passed_over = [str(w.message) for w in caught if str(w.message).startswith("ignoring")]
    assert sorted(passed_over) == sorted(
        f"ignoring {data_dir / name}: holds MNIST's {split} labels, not FashionMNIST's"
        for name, split in (("train-labels-idx1-ubyte.gz", "train"),
                            ("t10k-labels-idx1-ubyte.gz", "test")))
    fashion_test_images = read_idx(system_fashion_mnist_dir / "t10k-images-idx3-ubyte.gz")
    assert torch.equal(data_module.splits["test"][0][:, 0], torch.from_numpy(fashion_test_images))


def test_fashion_mnist_in_data_dir_is_not_taken_for_mnist_and_says_why(
    system_fashion_mnist_dir: Path, tmp_path: Path
) -> None:
    data_dir = link_data_set(system_fashion_mnist_dir, tmp_path / "data")
    with pytest.raises(FileNotFoundError) as error:
        locate_files(MNIST, data_dir, download=False)
    message = str(error.value)
    assert "Files found but not usable" in message
    for split in ("train", "t10k"):
        assert (f"{data_dir}/{split}-labels-idx1-ubyte.gz: holds FashionMNIST's "
                f"{'test' if split == 't10k' else 'train'} labels, not MNIST's") in message


def test_a_label_file_whose_stream_is_corrupt_is_passed_over_with_the_reason(
    tiny_mnist_dir: Path, no_data_env: None
) -> None:
    labels = tiny_mnist_dir / "train-labels-idx1-ubyte.gz"
    data = bytearray(labels.read_bytes())
    data[len(data) // 2] ^= 0xFF  # the header and the trailer's size stay intact
    labels.write_bytes(bytes(data))
    with pytest.raises(FileNotFoundError, match=r"train-labels-idx1-ubyte.gz: corrupt gzip"
                       ) as error, pytest.warns(UserWarning, match="corrupt gzip") as warned:
        locate_files(MNIST, tiny_mnist_dir, download=False)
    for message in (str(error.value), *(str(w.message) for w in warned)):
        assert message.count(str(labels)) == 1, message  # the file named once


def test_a_pair_split_across_folders_is_missing_without_download(tiny_mnist_dir: Path) -> None:
    labels = tiny_mnist_dir / "train-labels-idx1-ubyte.gz"
    (tiny_mnist_dir / "MNIST" / "raw").mkdir(parents=True)
    labels.rename(tiny_mnist_dir / "MNIST" / "raw" / labels.name)
    with pytest.raises(FileNotFoundError) as info:
        locate_files(MNIST, tiny_mnist_dir, download=False)
    first_line = str(info.value).splitlines()[0]
    assert "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz" in first_line
    assert "together in one folder" in first_line and "t10k" not in first_line


def test_fashion_mnist_is_found_in_the_debian_folder(
    system_fashion_mnist_dir: Path, tmp_path: Path
) -> None:
    found = locate_files(FASHION_MNIST, tmp_path, download=False)
    assert found["train_images"].parent == system_fashion_mnist_dir


# -- the datamodule on tiny data ---------------------------------------------------------------


def test_splits_and_batch_format(tiny_mnist_dir: Path) -> None:
    dm = tiny(tiny_mnist_dir, batch_size=50, binarize="none")
    assert dm.image_shape == (1, 28, 28) and dm.dataset_name == "mnist"
    sizes = {split: len(images) for split, (images, _) in dm.splits.items()}
    assert sizes == {"train": 224, "val": 32, "test": 64}
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.float32 and images.shape == (50, 1, 28, 28)
    assert labels.dtype == torch.int64 and images.min() >= 0 and images.max() <= 1
    assert len(dm.train_dataloader()) == 5 and len(dm.test_dataloader()) == 2


def test_uncompressed_files_give_the_same_data(
    tiny_mnist_dir: Path, tiny_mnist_raw_dir: Path
) -> None:
    gz, raw = tiny(tiny_mnist_dir), tiny(tiny_mnist_raw_dir)
    assert all(torch.equal(gz.splits[s][0], raw.splits[s][0]) for s in ("train", "val", "test"))


def test_split_is_fixed_whatever_the_seed(tiny_mnist_dir: Path) -> None:
    a, b = tiny(tiny_mnist_dir, seed=0), tiny(tiny_mnist_dir, seed=1)
    assert torch.equal(a.splits["val"][0], b.splits["val"][0])
    assert torch.equal(a.splits["train"][1], b.splits["train"][1])


def test_train_and_validation_do_not_overlap(tiny_mnist_dir: Path) -> None:
    dm = tiny(tiny_mnist_dir, binarize="none")
    flat = {split: images.flatten(1) for split, (images, _) in dm.splits.items()}
    assert not (torch.cdist(flat["train"].float(), flat["val"].float()) == 0).any()


def test_defaults_dynamic_for_mnist_none_for_fashion(tiny_mnist_dir: Path) -> None:
    assert MNISTDataModule().binarize == "dynamic"
    fashion = FashionMNISTDataModule(str(tiny_mnist_dir), val_size=32, download=False)
    assert fashion.binarize == "none" and fashion.dataset_name == "fashion_mnist"
    assert fashion.hparams["val_size"] == 32


def test_none_gives_grey_levels_over_255(tiny_mnist_dir: Path) -> None:
    dm = tiny(tiny_mnist_dir, binarize="none")
    images, _ = all_batches(dm.test_dataloader())
    assert torch.equal(images, dm.splits["test"][0].float() / 255)
    assert len(images.unique()) > 2


def test_dynamic_draws_fresh_training_batches_and_fixed_evaluation(tiny_mnist_dir: Path) -> None:
    dm = tiny(tiny_mnist_dir, binarize="dynamic")
    train = dm.train_dataloader()
    first, second = by_index(train, 0), by_index(train, 1)
    assert set(first.unique().tolist()) == {0.0, 1.0} and not torch.equal(first, second)
    val_a, val_b = epoch(dm.val_dataloader(), 0)[0], epoch(dm.val_dataloader(), 1)[0]
    assert torch.equal(val_a, val_b) and set(val_a.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(val_a, epoch(tiny(tiny_mnist_dir, seed=9).val_dataloader(), 0)[0])


def test_static_uses_one_draw_for_every_epoch_and_split(tiny_mnist_dir: Path) -> None:
    static, dynamic = tiny(tiny_mnist_dir, binarize="static"), tiny(tiny_mnist_dir)
    train = static.train_dataloader()
    first, second = by_index(train, 0), by_index(train, 1)
    assert set(first.unique().tolist()) == {0.0, 1.0} and torch.equal(first, second)
    assert torch.equal(static.splits["val"][0], dynamic.splits["val"][0])
    assert torch.equal(static.splits["test"][0], dynamic.splits["test"][0])


def test_loader_option_picks_the_implementation(tiny_mnist_dir: Path) -> None:
    assert isinstance(tiny(tiny_mnist_dir).train_dataloader(), DeviceLoader)
    fallback = tiny(tiny_mnist_dir, loader="dataloader", batch_size=16).train_dataloader()
    assert isinstance(fallback, DataLoader)
    images, labels = all_batches(fallback)
    assert images.shape == (224, 1, 28, 28) and images.dtype == torch.float32
    assert set(images.unique().tolist()) == {0.0, 1.0} and labels.dtype == torch.int64
    # Stop the persistent workers here: collected later, inside an import, their shutdown
    # can wait out torch's 5 s join timeout per worker.
    del fallback
    gc.collect()


def test_eval_batch_size_and_drop_last(tiny_mnist_dir: Path) -> None:
    dm = tiny(tiny_mnist_dir, batch_size=100, eval_batch_size=30, drop_last=True)
    assert [len(y) for _, y in dm.train_dataloader()] == [100, 100]
    assert [len(y) for _, y in dm.val_dataloader()] == [30, 2]


def test_invalid_arguments_name_the_value() -> None:
    with pytest.raises(ValueError, match="binarize='yes'"):
        MNISTDataModule(binarize="yes")
    with pytest.raises(ValueError, match="loader='gpu'"):
        MNISTDataModule(loader="gpu")


@pytest.mark.parametrize(("option", "error", "message"), [
    ({"val_size": 2.5}, TypeError, "val_size=2.5: expected an integer >= 0, got a float"),
    ({"val_size": -1}, ValueError, "val_size=-1: expected an integer >= 0"),
    ({"batch_size": "64"}, TypeError, "batch_size='64': expected an integer >= 1, got a str"),
    ({"eval_batch_size": 0}, ValueError, "eval_batch_size=0: expected an integer >= 1"),
    ({"seed": 1.0}, TypeError, "seed=1.0: expected an integer >= 0, got a float"),
    ({"download": "false"}, TypeError, "download='false': expected true or false, got a str"),
    ({"drop_last": 1}, TypeError, "drop_last=1: expected true or false, got a int"),
])
def test_arguments_of_a_wrong_type_or_range_are_refused_by_name(
    option: dict, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        MNISTDataModule(**option)


def test_batch_larger_than_the_training_split_with_drop_last_fails_at_setup(
    tiny_mnist_dir: Path,
) -> None:
    dm = MNISTDataModule(
        str(tiny_mnist_dir), val_size=32, download=False, batch_size=300, drop_last=True
    )
    with pytest.raises(ValueError, match=re.escape(
        "batch_size=300 with drop_last=True leaves no training batch: MNISTDataModule has 224 "
        "training images. Pass a batch_size of at most 224, or drop_last=False"
    )):
        dm.setup("fit")
    dm.setup("test")  # testing alone needs no training batch
    assert len(dm.test_dataloader()) == 1


def corrupt_the_middle(path: Path) -> None:
    """Flip 64 bytes in the middle of a .gz; its header and its trailer (the uncompressed size
    that locate_files checks) stay intact."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("download", [False, True])
def test_damaged_image_file_advice_fits_the_download_option_and_names_the_md5(
    tiny_mnist_dir: Path, download: bool
) -> None:
    images = tiny_mnist_dir / "train-images-idx3-ubyte.gz"
    corrupt_the_middle(images)
    dm = MNISTDataModule(str(tiny_mnist_dir), val_size=32, download=download)
    dm.prepare_data()  # the header and size are right: the file is taken, nothing downloaded
    with pytest.raises(IDXError) as error:
        dm.setup("fit")
    message = str(error.value)
    assert message.startswith(f"{images}: ") and "delete it and " in message
    assert ("pass download=True" in message) != download
    assert f"into {tiny_mnist_dir / 'MNIST' / 'raw'}" in message
    assert MNIST.files["train_images"].md5 in message
    assert "IDX bytes have MD5 6bbc9ace898e44ae57da46a324031adb" in message


def test_val_size_too_large_names_the_file(tiny_mnist_dir: Path) -> None:
    dm = MNISTDataModule(str(tiny_mnist_dir), val_size=256, download=False)
    with pytest.raises(ValueError, match=r"val_size=256 leaves no training images.*holds 256"):
        dm.setup()


class TinyModel(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(784, 10)
        self.first_batches: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        images, labels = batch
        if batch_idx == 0:
            self.first_batches.append(labels.clone())
        return torch.nn.functional.cross_entropy(self.linear(images.flatten(1)), labels)

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        self.log(
            "val_loss", torch.nn.functional.cross_entropy(self.linear(images.flatten(1)), labels)
        )

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_reshuffles_every_epoch_through_set_epoch(tiny_mnist_dir: Path) -> None:
    model = TinyModel()
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, MNISTDataModule(str(tiny_mnist_dir), val_size=32, download=False))
    assert trainer.train_dataloader.sampler.epoch == 2
    first = [labels.tolist() for labels in model.first_batches]
    assert len(first) == 3 and first[0] != first[1] != first[2]


def test_prepare_data_with_download_uses_existing_files_offline(tiny_mnist_dir: Path) -> None:
    dm = MNISTDataModule(str(tiny_mnist_dir), val_size=32, download=True)
    dm.prepare_data()  # finds the files: no network (there is none here)
    dm.setup()
    assert len(dm.splits["train"][0]) == 224


# -- the real data sets ------------------------------------------------------------------------

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def real_mnist(shared_mnist_dir: Path) -> MNISTDataModule:
    dm = MNISTDataModule(str(shared_mnist_dir), download=False, binarize="none")
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def real_fashion(system_fashion_mnist_dir: Path) -> FashionMNISTDataModule:
    dm = FashionMNISTDataModule(str(system_fashion_mnist_dir), download=False)
    dm.setup()
    return dm


def full_train(dm) -> tuple[torch.Tensor, torch.Tensor]:
    """The 60 000 training images and labels, reassembled from train + validation."""
    (train, train_y), (val, val_y) = dm.splits["train"], dm.splits["val"]
    return torch.cat([train, val]), torch.cat([train_y, val_y])


@pytest.mark.parametrize("name", ["real_mnist", "real_fashion"])
def test_real_split_sizes(name: str, request: pytest.FixtureRequest) -> None:
    dm = request.getfixturevalue(name)
    assert {s: len(x) for s, (x, _) in dm.splits.items()} == {
        "train": 55_000,
        "val": 5_000,
        "test": 10_000,
    }


def test_real_mnist_pixel_mean_and_class_counts(real_mnist: MNISTDataModule) -> None:
    images, labels = full_train(real_mnist)
    assert images.double().mean().item() / 255 == pytest.approx(0.1307, abs=1e-4)
    assert torch.bincount(labels).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(real_mnist.splits["test"][1]).tolist() == MNIST_TEST_COUNTS


def test_real_fashion_pixel_mean_and_class_counts(real_fashion: FashionMNISTDataModule) -> None:
    images, labels = full_train(real_fashion)
    assert images.double().mean().item() / 255 == pytest.approx(0.2860, abs=1e-4)
    assert torch.bincount(labels).tolist() == [6000] * 10
    assert torch.bincount(real_fashion.splits["test"][1]).tolist() == [1000] * 10


def test_real_mnist_dynamic_binarization_is_fresh_each_epoch(shared_mnist_dir: Path) -> None:
    dm = MNISTDataModule(str(shared_mnist_dir), download=False, batch_size=1000)
    dm.setup()
    loader = dm.train_dataloader()
    draws = []
    for number in (0, 1):  # the first 10 000 images of each epoch, keyed by index
        loader.sampler.set_epoch(number)
        indices = loader.sampler.indices()[:10_000]
        images = torch.cat([x for x, _ in itertools.islice(loader, 10)])
        draws.append(dict(zip(indices.tolist(), images, strict=True)))
    shared = sorted(draws[0].keys() & draws[1].keys())
    first = torch.stack([draws[0][i] for i in shared])
    second = torch.stack([draws[1][i] for i in shared])
    assert len(shared) > 1000 and ((first == 0) | (first == 1)).all()
    assert first.mean().item() == pytest.approx(0.1307, abs=0.01)
    assert 0.02 < (first != second).float().mean().item() < 0.2  # same images, fresh noise
