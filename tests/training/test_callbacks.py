"""Image panels and latent diagnostics: what each logger receives, and that it is comparable."""

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from lightning_vae import VAE, ImagePanels, LatentDiagnostics

SIDE, PAD, LATENT = 8, 2, 4
PANEL_OPTIONS = {"num_images": 6, "num_samples": 10, "traversal_steps": 5,
                 "interpolation_steps": 4}
PANELS = ("reconstructions", "samples", "traversals", "interpolations")


def grid_size(rows: int, cols: int) -> tuple[int, int]:
    """(height, width) of a make_grid picture of SIDE x SIDE tiles."""
    return PAD + rows * (SIDE + PAD), PAD + cols * (SIDE + PAD)


EXPECTED_SIZES = {  # 6 inputs over their reconstructions; 10 samples, 8 a row; a row per
    "reconstructions": grid_size(2, 6),  # latent dimension; a row per pair: 4 steps + 2 ends
    "samples": grid_size(2, 8),
    "traversals": grid_size(LATENT, 5),
    "interpolations": grid_size(3, 4 + 2),
}


def bar_images(n: int, seed: int) -> torch.Tensor:
    """Binary 8x8 images of one horizontal bar each: structure a VAE learns in a few steps."""
    rows = torch.randint(0, SIDE, (n,), generator=torch.Generator().manual_seed(seed))
    images = torch.zeros(n, 1, SIDE, SIDE)
    images[torch.arange(n), :, rows, :] = 1.0
    return images


VAL_IMAGES = bar_images(32, seed=1)


def fit(logger, *callbacks: pl.Callback, epochs: int = 2, latent_dim: int = LATENT,
        **trainer_args) -> VAE:
    pl.seed_everything(0)
    model = VAE(image_shape=(1, SIDE, SIDE), latent_dim=latent_dim, arch="mlp",
                arch_options={"hidden_dims": [32]}, iw_samples=0)
    train = DataLoader(TensorDataset(bar_images(64, seed=0)), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(VAL_IMAGES), batch_size=16)
    trainer = pl.Trainer(max_epochs=epochs, logger=logger, callbacks=list(callbacks),
                         log_every_n_steps=1, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         **{"accelerator": "cpu", **trainer_args})
    trainer.fit(model, train, val)
    return model


def png_sizes(folder: Path) -> dict[str, list[tuple[int, int]]]:
    """panel name → (height, width) of each PNG the CSV logger's run wrote for it."""
    return {name: [Image.open(p).size[::-1] for p in sorted((folder / name).glob("*.png"))]
            for name in PANELS}


def validation_rows(metrics_csv: Path) -> list[dict[str, str]]:
    with metrics_csv.open(newline="") as file:
        return [row for row in csv.DictReader(file) if row["val/kl"]]


def test_csv_logger_gets_png_panels_of_the_expected_grid_sizes_every_epoch(tmp_path):
    logger = CSVLogger(tmp_path)
    fit(logger, ImagePanels(**PANEL_OPTIONS))
    folder = Path(logger.log_dir) / "images" / "panels"
    files = sorted(p.name for p in (folder / "samples").glob("*.png"))
    assert files == ["epoch=000-step=000004.png", "epoch=001-step=000008.png"]
    assert png_sizes(folder) == {name: [size, size] for name, size in EXPECTED_SIZES.items()}


def test_panels_are_drawn_only_every_n_epochs(tmp_path):
    logger = CSVLogger(tmp_path)
    fit(logger, ImagePanels(every_n_epochs=2, **PANEL_OPTIONS), epochs=3)
    files = sorted(p.name for p in (Path(logger.log_dir) / "images/panels/samples").glob("*"))
    assert files == ["epoch=001-step=000008.png"]


def test_tensorboard_gets_image_summaries_of_the_expected_grid_sizes(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="")
    fit(logger, ImagePanels(**PANEL_OPTIONS), LatentDiagnostics())
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    assert set(events.Tags()["images"]) == {f"panels/{name}" for name in PANELS} | {
        "diagnostics/kl_per_dim"}
    for name, size in EXPECTED_SIZES.items():
        images = events.Images(f"panels/{name}")
        assert [(image.step, image.height, image.width) for image in images] == [
            (4, *size), (8, *size)]
    # and as PNG files in the run's folder, beside its checkpoints, to open without TensorBoard
    assert png_sizes(Path(logger.log_dir) / "images" / "panels") == {
        name: [size, size] for name, size in EXPECTED_SIZES.items()}
    assert len(list(Path(logger.log_dir).glob("images/diagnostics/kl_per_dim/*.png"))) == 2


def test_panels_show_the_first_validation_images_and_repeat_exactly(tmp_path):
    panels = ImagePanels(**PANEL_OPTIONS)
    model = fit(CSVLogger(tmp_path), panels).model.eval()
    assert torch.equal(panels.images, VAL_IMAGES[:6])
    first, second = panels.panels(model), panels.panels(model)
    assert all(np.array_equal(first[name], second[name]) for name in PANELS)
    tile = SIDE + PAD  # an interpolation row starts with one input of its pair, ends with the other
    for pair in range(3):
        top = PAD + pair * tile
        row = first["interpolations"][top:top + SIDE]
        assert np.array_equal(row[:, PAD:PAD + SIDE], 255 * VAL_IMAGES[2 * pair, 0].numpy())
        assert np.array_equal(row[:, -PAD - SIDE:-PAD], 255 * VAL_IMAGES[2 * pair + 1, 0].numpy())


def test_runs_with_the_same_seed_draw_the_same_prior_samples(tmp_path):
    pictures = []
    for seed in (0, 0, 1):
        panels = ImagePanels(seed=seed, **PANEL_OPTIONS)
        model = fit(CSVLogger(tmp_path / str(len(pictures))), panels, epochs=1)
        pictures.append(panels.panels(model.model.eval())["samples"])
    assert np.array_equal(pictures[0], pictures[1])
    assert not np.array_equal(pictures[0], pictures[2])


def test_traversal_codes_sweep_one_dimension_per_row_and_hold_the_others():
    panels = ImagePanels(traversal_range=2.0, traversal_steps=3)
    mean = torch.tensor([0.5, -1.0])
    codes = panels._traversal_codes(mean)
    assert codes.tolist() == [[-2.0, -1.0], [0.0, -1.0], [2.0, -1.0],
                              [0.5, -2.0], [0.5, 0.0], [0.5, 2.0]]


def test_latent_diagnostics_log_kl_per_dimension_summing_to_the_kl_and_a_chart(tmp_path):
    logger = CSVLogger(tmp_path)
    fit(logger, LatentDiagnostics())
    rows = validation_rows(Path(logger.log_dir) / "metrics.csv")
    assert len(rows) == 2
    for row in rows:  # the same posteriors as the model's val/kl, split by dimension
        per_dim = [float(row[f"val/kl_dim/{i}"]) for i in range(LATENT)]
        assert min(per_dim) >= 0
        assert sum(per_dim) == pytest.approx(float(row["val/kl"]), rel=1e-4)
    charts = sorted((Path(logger.log_dir) / "images/diagnostics/kl_per_dim").glob("*.png"))
    assert len(charts) == 2
    assert Image.open(charts[0]).mode == "RGB"


def test_a_single_latent_dimension_gets_its_kl_a_chart_and_a_one_row_traversal(tmp_path):
    logger = CSVLogger(tmp_path)
    fit(logger, ImagePanels(**PANEL_OPTIONS), LatentDiagnostics(), epochs=1, latent_dim=1)
    (row,) = validation_rows(Path(logger.log_dir) / "metrics.csv")
    assert float(row["val/kl_dim/0"]) == pytest.approx(float(row["val/kl"]), rel=1e-4)
    assert "val/kl_dim/1" not in row
    images = Path(logger.log_dir) / "images"
    assert len(list((images / "diagnostics/kl_per_dim").glob("*.png"))) == 1
    assert png_sizes(images / "panels")["traversals"] == [grid_size(1, 5)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_latent_diagnostics_run_on_a_gpu(tmp_path):
    """Their metrics, made in setup, are on the GPU: Lightning gives the module its device
    there before it moves the weights."""
    logger = CSVLogger(tmp_path)
    fit(logger, LatentDiagnostics(), epochs=1, accelerator="cuda", devices=1)
    (row,) = validation_rows(Path(logger.log_dir) / "metrics.csv")
    per_dim = [float(row[f"val/kl_dim/{i}"]) for i in range(LATENT)]
    assert sum(per_dim) == pytest.approx(float(row["val/kl"]), rel=1e-4)


def test_options_out_of_range_are_refused_with_their_values():
    with pytest.raises(ValueError, match="interpolation_steps >= 2"):
        ImagePanels(interpolation_steps=1)
    with pytest.raises(ValueError, match="every_n_epochs >= 1, got 0"):
        LatentDiagnostics(every_n_epochs=0)


DDP_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger
from test_callbacks import PANEL_OPTIONS, fit
from lightning_vae import ImagePanels, LatentDiagnostics

if __name__ == "__main__":
    fit(CSVLogger({root!r}), ImagePanels(**PANEL_OPTIONS), LatentDiagnostics(),
        devices=2, strategy="ddp")
"""


@pytest.mark.slow
def test_two_process_ddp_finishes_and_rank_zero_alone_writes_the_pictures(tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(
        tests=str(Path(__file__).parent), root=str(tmp_path))))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    (log_dir,) = tmp_path.glob("lightning_logs/version_*")
    assert png_sizes(log_dir / "images" / "panels") == {
        name: [size, size] for name, size in EXPECTED_SIZES.items()}
    # rank 0 validates on images 0, 2, 4, ... (DistributedSampler): its inputs are the top row
    (picture,) = (log_dir / "images/panels/reconstructions").glob("epoch=001*.png")
    top_row = np.asarray(Image.open(picture))[PAD:PAD + SIDE]
    for i, image in enumerate(VAL_IMAGES[0::2][:6]):
        left = PAD + i * (SIDE + PAD)
        assert np.array_equal(top_row[:, left:left + SIDE], 255 * image[0].numpy())
    rows = validation_rows(log_dir / "metrics.csv")
    for row in rows:  # both ranks' examples: the per-dimension sums were gathered
        per_dim = [float(row[f"val/kl_dim/{i}"]) for i in range(LATENT)]
        assert sum(per_dim) == pytest.approx(float(row["val/kl"]), rel=1e-4)
