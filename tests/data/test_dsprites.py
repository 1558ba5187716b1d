"""dSprites: the re-rendering has the official factor grid, value ranges and shape classes, its
images are deterministic and move as their factors say; the datamodule splits, caches, shards
and checks the official file's arrays."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from batches import all_batches

from lightning_vae import DSpritesDataModule
from lightning_vae.data.dsprites import FACTOR_NAMES, OFFICIAL_FILE, read_official
from lightning_vae.data.dsprites_render import (
    LATENT_NAMES,
    LATENT_SIZES,
    LATENT_VALUES,
    NUM_IMAGES,
    SHAPE_NAMES,
    latent_classes,
    latent_values,
    render_images,
    write_rendered_grid,
)

SIZE, VAL, TEST = 1200, 100, 150


def grid_index(shape=0, scale=5, orientation=0, x=15, y=15) -> int:
    return int(np.ravel_multi_index((0, shape, scale, orientation, x, y), LATENT_SIZES))


def centroid(image: np.ndarray) -> np.ndarray:
    """(row, column) of the lit pixels' centre."""
    return np.argwhere(image).mean(0)


@pytest.fixture(scope="module")
def datamodule(tmp_path_factory) -> DSpritesDataModule:
    module = DSpritesDataModule(data_dir=str(tmp_path_factory.mktemp("dsprites")), size=SIZE,
                                val_size=VAL, test_size=TEST, batch_size=64)
    module.prepare_data()
    module.setup("fit")
    return module


def test_the_grid_has_the_official_factors_sizes_and_order():
    assert LATENT_NAMES == ("color", "shape", "scale", "orientation", "posX", "posY")
    assert LATENT_SIZES == (1, 3, 6, 40, 32, 32) and NUM_IMAGES == 737280
    classes = latent_classes(np.arange(NUM_IMAGES))
    assert classes.dtype == np.int64 and classes.shape == (NUM_IMAGES, 6)
    # The last factor (posY) varies fastest, as in the official file.
    np.testing.assert_array_equal(classes[:3], [[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1],
                                                [0, 0, 0, 0, 0, 2]])
    np.testing.assert_array_equal(classes[32], [0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(classes[-1], [0, 2, 5, 39, 31, 31])
    assert len(np.unique(classes, axis=0)) == NUM_IMAGES


def test_the_values_have_the_official_ranges_and_shape_classes():
    color, shape, scale, orientation, x, y = LATENT_VALUES
    np.testing.assert_array_equal(color, [1.0])
    np.testing.assert_array_equal(shape, [1.0, 2.0, 3.0])
    assert SHAPE_NAMES == ("square", "ellipse", "heart")
    np.testing.assert_allclose(scale, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert orientation[0] == 0 and orientation[-1] == pytest.approx(2 * np.pi)
    assert orientation[5] == pytest.approx(0.80553658)  # the official metadata's 6th value
    assert x[0] == y[0] == 0 and x[-1] == y[-1] == 1 and x[1] == pytest.approx(0.03225806)
    values = latent_values(latent_classes(np.array([0, NUM_IMAGES - 1])))
    np.testing.assert_allclose(values, [[1, 1, 0.5, 0, 0, 0], [1, 3, 1, 2 * np.pi, 1, 1]])


def test_rendered_images_are_binary_deterministic_and_never_empty_or_clipped():
    indices = np.random.default_rng(0).choice(NUM_IMAGES, 500, replace=False)
    images = render_images(indices)
    assert images.dtype == np.uint8 and images.shape == (500, 64, 64)
    assert set(np.unique(images)) == {0, 1}
    np.testing.assert_array_equal(images, render_images(indices))
    assert images.sum((1, 2)).min() > 20
    border = np.concatenate([images[:, [0, -1]].reshape(500, -1),
                             images[:, :, [0, -1]].reshape(500, -1)], axis=1)
    assert border.sum() == 0


def test_each_position_step_moves_the_sprite_one_pixel_along_its_axis():
    xs = render_images(np.array([grid_index(shape=2, x=x) for x in range(32)]))
    ys = render_images(np.array([grid_index(shape=2, y=y) for y in range(32)]))
    np.testing.assert_allclose(np.diff([centroid(i) for i in xs], axis=0), [[0, 1]] * 31)
    np.testing.assert_allclose(np.diff([centroid(i) for i in ys], axis=0), [[1, 0]] * 31)


def test_scale_grows_the_sprite_and_the_three_shapes_differ():
    areas = render_images(np.array([grid_index(scale=s) for s in range(6)])).sum((1, 2), dtype=int)
    assert np.all(np.diff(areas) > 0)
    assert areas[-1] == pytest.approx(4 * areas[0], rel=0.15)  # twice the side, four the area
    shapes = render_images(np.array([grid_index(shape=s) for s in range(3)]))
    assert shapes[0].sum() == 19 * 19  # an upright square of side 19 at scale 1
    assert len({image.tobytes() for image in shapes}) == 3


def test_orientation_turns_the_sprite_and_a_full_turn_comes_back():
    turned = render_images(np.array([grid_index(shape=1, orientation=o) for o in (0, 10, 39)]))
    ellipse, quarter, full = turned
    rows, columns = np.ptp(np.argwhere(ellipse), axis=0)
    assert columns > 1.8 * rows  # the ellipse lies along the columns at 0
    rows, columns = np.ptp(np.argwhere(quarter), axis=0)
    assert rows > 1.8 * columns  # 10 steps of 2π/39 are about a quarter turn: along the rows
    np.testing.assert_array_equal(full, ellipse)


def test_batches_carry_the_five_factor_classes_of_their_images(datamodule):
    assert {name: len(split[0]) for name, split in datamodule.splits.items()} == {
        "train": SIZE - VAL - TEST, "val": VAL, "test": TEST}
    images, factors = all_batches(datamodule.test_dataloader())
    assert images.shape == (TEST, 1, 64, 64) and images.dtype == torch.float32
    assert set(images.unique().tolist()) == {0.0, 1.0}
    assert factors.dtype == torch.int64 and factors.shape == (TEST, 5)
    assert FACTOR_NAMES == ("shape", "scale", "orientation", "posX", "posY")
    # Each image is the rendering of the factors it comes with.
    indices = np.ravel_multi_index((np.zeros(TEST, dtype=int), *factors.numpy().T), LATENT_SIZES)
    np.testing.assert_array_equal(images[:, 0].numpy(), render_images(indices))


def test_the_splits_are_disjoint_and_the_same_in_every_run(datamodule, tmp_path):
    keys = {name: {tuple(row) for row in split[1].tolist()}
            for name, split in datamodule.splits.items()}
    assert not (keys["train"] & keys["val"] or keys["train"] & keys["test"]
                or keys["val"] & keys["test"])
    again = DSpritesDataModule(data_dir=str(tmp_path), size=SIZE, val_size=VAL, test_size=TEST,
                               seed=7)
    again.setup("fit")
    for name, (images, factors) in datamodule.splits.items():
        assert torch.equal(again.splits[name][0], images)
        assert torch.equal(again.splits[name][1], factors)


def test_the_rendering_is_cached_as_a_memory_mapped_npy(datamodule):
    assert datamodule.source_used == "rendered"
    assert datamodule.cache_path.name == f"dsprites-rerendered-v1-subset{SIZE}.npy"
    cached = datamodule._rendered()
    assert isinstance(cached, np.memmap) and cached.shape == (SIZE, 64, 64)
    np.testing.assert_array_equal(cached, render_images(datamodule.indices))


def test_evaluation_shards_cover_the_test_split_once_under_ddp(datamodule):
    def rank(r: int) -> SimpleNamespace:
        return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")),
                               global_rank=r, world_size=2)

    seen = []
    for r in range(2):
        datamodule.trainer = rank(r)
        seen.append(all_batches(datamodule.test_dataloader())[1])
    datamodule.trainer = None
    assert abs(len(seen[0]) - len(seen[1])) <= 1
    together = torch.cat(seen)
    assert sorted(map(tuple, together.tolist())) == sorted(
        map(tuple, datamodule.splits["test"][1].tolist()))


def test_source_official_without_the_file_says_how_to_get_it(tmp_path, no_data_env):
    module = DSpritesDataModule(data_dir=str(tmp_path), size=SIZE, val_size=VAL, test_size=TEST,
                                source="official")
    with pytest.raises(FileNotFoundError, match=f"{OFFICIAL_FILE} not found.*download=True"):
        module.prepare_data()


@pytest.mark.parametrize(("arrays", "message"), [
    ({"imgs": np.zeros((2, 64, 64), np.uint8)}, r"lacks the arrays \['latents_classes'"),
    ({"imgs": np.zeros((2, 64, 64), np.uint8), "latents_values": np.zeros((2, 6)),
      "latents_classes": np.zeros((2, 6), np.int64), "metadata": np.zeros(1)},
     r"imgs is uint8 \(2, 64, 64\), but the official file's is uint8 \(737280, 64, 64\)"),
])
def test_a_file_without_the_official_arrays_is_refused_by_name(tmp_path, arrays, message):
    path = tmp_path / OFFICIAL_FILE
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message):
        read_official(path)


@pytest.mark.parametrize(("options", "message"), [
    ({"size": 0}, "size=0: expected an integer >= 1"),
    ({"size": NUM_IMAGES + 1}, "dSprites has 737280 images"),
    ({"size": 100, "val_size": 50, "test_size": 50}, "leave no training images of 100"),
    ({"source": "original"}, "source='original': expected 'auto', 'official' or 'rendered'"),
])
def test_bad_options_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        DSpritesDataModule(**options)


@pytest.mark.slow
def test_the_whole_grid_renders_as_the_subsets_do_and_reads_back_as_official(tmp_path: Path):
    """All 737 280 images in one file, the same as rendered a few at a time; the file, saved in
    the official layout, passes the official checks."""
    path = write_rendered_grid(tmp_path / "grid.npy")
    grid = np.load(path, mmap_mode="r")
    sample = np.sort(np.random.default_rng(1).choice(NUM_IMAGES, 5000, replace=False))
    np.testing.assert_array_equal(grid[sample], render_images(sample))
    classes = latent_classes(np.arange(NUM_IMAGES))
    np.savez(tmp_path / OFFICIAL_FILE, imgs=grid, latents_values=latent_values(classes),
             latents_classes=classes, metadata=np.zeros(1))
    module = DSpritesDataModule(data_dir=str(tmp_path), size=SIZE, val_size=VAL, test_size=TEST,
                                source="official")
    module.setup("fit")
    assert module.source_used == "official"
    rendered = DSpritesDataModule(data_dir=str(tmp_path), size=SIZE, val_size=VAL,
                                  test_size=TEST, source="rendered")
    rendered.setup("fit")
    for name, (images, factors) in module.splits.items():
        assert torch.equal(rendered.splits[name][0], images)
        assert torch.equal(rendered.splits[name][1], factors)
