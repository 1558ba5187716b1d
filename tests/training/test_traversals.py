"""LatentTraversals: one looping GIF per latent dimension, that dimension swept while the others
stay at each image's posterior mean, written to the run folder after validation."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader
from training_models import tiny_bars

from lightning_vae import VAE, LatentTraversals


def small_module() -> VAE:
    torch.manual_seed(0)
    return VAE(arch="mlp", image_shape=(1, 8, 8), latent_dim=3,
               arch_options={"hidden_dims": [32]}, iw_samples=0)


def gif_frames(path) -> list[np.ndarray]:
    frames = []
    with Image.open(path) as gif:
        for index in range(gif.n_frames):
            gif.seek(index)
            frames.append(np.asarray(gif.convert("L")))
    return frames


def test_the_sweep_goes_out_and_back_so_the_animation_loops():
    values = LatentTraversals(traversal_range=2.0, frames=8).sweep()
    torch.testing.assert_close(values, torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0, 1.0, 0.0, -1.0]))


def test_each_frame_decodes_the_swept_code_of_every_kept_image(tmp_path):
    module, callback = small_module(), LatentTraversals(num_images=4, frames=6)
    callback.images = tiny_bars(4)
    paths = callback.write_animations(module.model, tmp_path)
    assert [path.name for path in paths] == ["latent_0.gif", "latent_1.gif", "latent_2.gif"]
    frames = gif_frames(paths[1])
    assert len(frames) == 6 and frames[0].shape == (2 + 10, 2 + 4 * 10)
    with torch.no_grad():
        codes = module.model.posterior(tiny_bars(4)).mean
        codes[:, 1] = callback.sweep()[2]
        expected = module.model.decode(codes)
    pixels = (expected[:, 0] * 255).round().numpy()
    for image in range(4):  # image i sits at columns 2 + 10·i onwards, below 2 rows of padding
        tile = frames[2][2:10, 2 + 10 * image:10 + 10 * image].astype(float)
        assert np.abs(tile - pixels[image]).max() <= 1
    assert not np.array_equal(frames[0], frames[3])  # the sweep changes the pictures


def test_after_validation_the_gifs_land_in_the_run_folder(tmp_path):
    trainer = pl.Trainer(max_steps=2, val_check_interval=2, limit_val_batches=1,
                         logger=CSVLogger(tmp_path), default_root_dir=tmp_path,
                         callbacks=[LatentTraversals(num_images=2, frames=4)],
                         enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, accelerator="cpu")
    trainer.fit(small_module(), DataLoader(tiny_bars(32), batch_size=8),
                DataLoader(tiny_bars(16), batch_size=8))
    folder = tmp_path / "lightning_logs" / "version_0" / "traversals" / "epoch=000-step=000002"
    assert sorted(path.name for path in folder.iterdir()) == [
        "latent_0.gif", "latent_1.gif", "latent_2.gif"]


@pytest.mark.parametrize("options", [{"frames": 1}, {"num_images": 0}, {"traversal_range": 0}])
def test_bad_settings_are_refused(options):
    with pytest.raises(ValueError, match="LatentTraversals needs"):
        LatentTraversals(**options)
