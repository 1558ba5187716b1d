"""ImageDataModule: the options every built-in datamodule shares are checked, recorded and
assigned in one place, with the same messages whichever data set takes them."""

import re
from pathlib import Path

import pytest

from lightning_vae.data import (
    CelebADataModule,
    DSpritesDataModule,
    FashionMNISTDataModule,
    ImageDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
)

BUILT_IN = {
    "mnist": MNISTDataModule,
    "fashion_mnist": FashionMNISTDataModule,
    "celeba": CelebADataModule,
    "folder": lambda **options: ImageFolderDataModule("pictures", **options),
    "dsprites": DSpritesDataModule,
}
"""Each built-in datamodule, built from options alone (nothing is read before setup)."""

SHARED_REFUSALS = [
    ({"batch_size": 0}, ValueError, "batch_size=0: expected an integer >= 1"),
    ({"batch_size": 2.0}, TypeError, "batch_size=2.0: expected an integer >= 1, got a float"),
    ({"eval_batch_size": 0}, ValueError, "eval_batch_size=0: expected an integer >= 1"),
    ({"seed": -1}, ValueError, "seed=-1: expected an integer >= 0"),
    ({"loader": "gpu"}, ValueError, "loader='gpu': expected 'auto', 'device' or 'dataloader'"),
    ({"drop_last": 1}, TypeError, "drop_last=1: expected true or false, got a int"),
]

HYPERPARAMETERS = {
    "mnist": ["data_dir", "batch_size", "binarize", "val_size", "seed", "download", "loader",
              "drop_last", "eval_batch_size"],
    "fashion_mnist": ["data_dir", "batch_size", "binarize", "val_size", "seed", "download",
                      "loader", "drop_last", "eval_batch_size"],
    "dsprites": ["data_dir", "batch_size", "size", "val_size", "test_size", "source", "seed",
                 "download", "loader", "drop_last", "eval_batch_size"],
    "celeba": ["data_dir", "image_size", "crop_size", "batch_size", "download", "loader", "seed",
               "cache_dir", "return_attributes", "drop_last", "eval_batch_size", "progress"],
    "folder": ["data_dir", "image_size", "channels", "crop_size", "val_fraction",
               "test_fraction", "batch_size", "binarize", "strict", "seed", "loader", "cache_dir",
               "drop_last", "eval_batch_size", "progress"],
}
"""The arguments each datamodule's checkpoints record (datamodule_hyper_parameters), in order:
its own constructor's, never only the shared subset."""


@pytest.mark.parametrize("name", BUILT_IN)
@pytest.mark.parametrize(("option", "error", "message"), SHARED_REFUSALS)
def test_every_datamodule_refuses_a_shared_option_with_the_same_message(name, option, error,
                                                                         message):
    with pytest.raises(error, match=re.escape(message)):
        BUILT_IN[name](**option)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "folder"])
def test_every_datamodule_that_binarizes_refuses_an_unknown_binarization(name):
    with pytest.raises(ValueError, match=re.escape(
            "binarize='yes': expected 'none', 'dynamic' or 'static'")):
        BUILT_IN[name](binarize="yes")


@pytest.mark.parametrize("name", BUILT_IN)
def test_hyperparameters_are_the_datamodules_own_arguments_as_given(name):
    data = BUILT_IN[name](batch_size=4, seed=3)
    assert list(data.hparams) == HYPERPARAMETERS[name]
    assert data.hparams["batch_size"] == 4 and data.hparams["seed"] == 3
    assert data.hparams["eval_batch_size"] is None


def test_a_subclass_default_is_recorded_as_the_subclass_gives_it():
    assert FashionMNISTDataModule().hparams["binarize"] == "none"
    assert MNISTDataModule().hparams["binarize"] == "dynamic"


@pytest.mark.parametrize("name", BUILT_IN)
def test_shared_options_are_assigned_alike(name):
    data = BUILT_IN[name](batch_size=4, seed=3, loader="dataloader", drop_last=True)
    assert isinstance(data, ImageDataModule)
    assert (data.batch_size, data.eval_batch_size, data.seed) == (4, 4, 3)
    assert (data.loader, data.drop_last) == ("dataloader", True)
    assert isinstance(data.data_dir, Path) and data.splits == {}
    assert BUILT_IN[name](batch_size=4, eval_batch_size=7).eval_batch_size == 7
