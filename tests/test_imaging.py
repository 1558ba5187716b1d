"""Image grids (lightning_vae/imaging.py): the model card's picture and the sample command's
output are tiled by make_grid and written by save_image."""

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_vae.imaging import make_grid, save_image


def test_make_grid_tiles_images_row_by_row_with_grey_padding():
    batch = torch.tensor([0.0, 1.0, 0.2]).reshape(3, 1, 1, 1).expand(3, 1, 2, 2)
    grid = make_grid(batch, nrow=2, padding=1)
    assert grid.dtype == np.uint8 and grid.shape == (7, 7)
    assert (grid[1:3, 1:3] == 0).all() and (grid[1:3, 4:6] == 255).all()
    assert (grid[4:6, 1:3] == 51).all()
    assert (grid[0] == 128).all() and (grid[4:6, 4:6] == 128).all()  # padding and empty cell


def test_make_grid_keeps_colour_clips_values_and_refuses_other_channel_counts():
    grid = make_grid(torch.full((2, 3, 4, 4), 2.0, requires_grad=True), nrow=8, padding=0)
    assert grid.shape == (4, 8, 3) and (grid == 255).all()
    with pytest.raises(ValueError, match=r"\(N, 1 or 3, H, W\), got \(2, 2, 4, 4\)"):
        make_grid(np.zeros((2, 2, 4, 4)))


def test_save_image_writes_the_array_pillow_reads_back(tmp_path):
    picture = np.arange(12, dtype=np.uint8).reshape(3, 4)
    with Image.open(save_image(picture, tmp_path / "p.png")) as image:
        assert np.array_equal(np.asarray(image), picture)
