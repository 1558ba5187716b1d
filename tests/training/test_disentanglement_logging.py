"""The module scores disentanglement at test when the batches carry factor classes
(``(images, factors)``, as dSprites gives) and not otherwise."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_vae import VAE
from lightning_vae.metrics import (
    DCIDisentanglement,
    FactorVAEScore,
    MutualInformationGap,
    SAPScore,
)
from lightning_vae.training.module import factors_of

SCORES = {"test/mig": MutualInformationGap, "test/factorvae_score": FactorVAEScore,
          "test/dci_d": DCIDisentanglement, "test/sap": SAPScore}


def bars_with_factors(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """8x8 images of a horizontal bar (row: factor 0) and a vertical one (column: factor 1)."""
    generator = torch.Generator().manual_seed(0)
    factors = torch.randint(0, 8, (n, 2), generator=generator)
    images = torch.zeros(n, 1, 8, 8)
    images[torch.arange(n), 0, factors[:, 0], :] = 1.0
    images[torch.arange(n), 0, :, factors[:, 1]] = 1.0
    return images, factors


def run_test(module: VAE, dataset: TensorDataset, root) -> dict[str, float]:
    trainer = pl.Trainer(logger=False, default_root_dir=root, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    (results,) = trainer.test(module, DataLoader(dataset, batch_size=32), verbose=False)
    return results


def small_module() -> VAE:
    torch.manual_seed(0)
    return VAE(arch="mlp", image_shape=(1, 8, 8), latent_dim=4,
               arch_options={"hidden_dims": [32]}, iw_samples=0)


def test_batches_with_factors_log_the_four_scores_of_the_posterior_means(tmp_path):
    module = small_module()
    images, factors = bars_with_factors()
    results = run_test(module, TensorDataset(images, factors), tmp_path)
    with torch.no_grad():
        means = module.model.posterior(images).mean
    for name, metric_class in SCORES.items():
        metric = metric_class()
        metric.update(means, factors)
        assert results[name] == pytest.approx(metric.compute().item(), abs=1e-6), name


def test_batches_with_class_labels_or_bare_images_log_no_scores(tmp_path):
    images, factors = bars_with_factors()
    results = run_test(small_module(), TensorDataset(images, factors[:, 0]), tmp_path)
    assert "test/elbo" in results and not set(SCORES) & set(results)


def test_factors_are_integer_columns_beside_the_images():
    images, factors = bars_with_factors(4)
    assert factors_of((images, factors)) is factors
    assert factors_of((images, factors[:, 0])) is None  # class labels
    assert factors_of((images, factors.float())) is None
    assert factors_of(images) is None
