"""The EMA callback: the averaged weights follow the decay with its warm-up, validation runs on
them, checkpoints hold them (the raw weights beside them), and fitting ends with them."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_vae import EMA, VAE
from lightning_vae.training.checkpoints import load_checkpoint


def module() -> VAE:
    torch.manual_seed(0)
    return VAE(arch="mlp", image_shape=(1, 4, 4), latent_dim=2,
               arch_options={"hidden_dims": [8]}, iw_samples=0, lr=0.05)


def loader() -> DataLoader:
    x = torch.rand(32, 1, 4, 4, generator=torch.Generator().manual_seed(0)).round()
    return DataLoader(TensorDataset(x), batch_size=8)


class Record(pl.Callback):
    """The raw weights after every optimizer step, and the weights validation ran on."""

    def __init__(self) -> None:
        self.raw, self.validated = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.raw.append([p.detach().clone() for p in pl_module.parameters()])

    def on_validation_epoch_end(self, trainer, pl_module):
        self.validated.append([p.detach().clone() for p in pl_module.parameters()])


def expected_average(raw: list[list[torch.Tensor]], decay: float) -> list[torch.Tensor]:
    average = [p.clone() for p in raw[0]]
    for n, weights in enumerate(raw[1:], start=1):
        d = min(decay, (1 + n) / (10 + n))
        average = [d * a + (1 - d) * w for a, w in zip(average, weights, strict=True)]
    return average


def fit(tmp_path, steps: int, decay: float = 0.9):
    record = Record()  # before EMA: it sees the raw weights at the end of each batch
    trainer = pl.Trainer(max_steps=steps, logger=False, default_root_dir=tmp_path,
                         callbacks=[record, EMA(decay=decay)], enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0,
                         val_check_interval=steps, check_val_every_n_epoch=None)
    vae = module()
    trainer.fit(vae, loader(), loader())
    return vae, record


def test_validation_and_the_fitted_model_use_the_average_with_the_warmed_up_decay(tmp_path):
    vae, record = fit(tmp_path, steps=8)
    average = expected_average(record.raw, 0.9)
    assert len(record.raw) == 8 and len(record.validated) == 1
    for validated, fitted, expected in zip(record.validated[0], vae.parameters(), average,
                                           strict=True):
        torch.testing.assert_close(validated, expected)
        torch.testing.assert_close(fitted.detach(), expected)
    assert not all(torch.allclose(a, r) for a, r in zip(average, record.raw[-1], strict=True))


def test_a_checkpoint_holds_the_average_as_the_model_and_the_raw_weights_beside_it(tmp_path):
    vae, record = fit(tmp_path, steps=8)
    path = next((tmp_path / "checkpoints").glob("*.ckpt"))
    checkpoint = load_checkpoint(path)
    names = [name for name, _ in vae.named_parameters()]
    average = expected_average(record.raw, 0.9)
    for name, expected, raw in zip(names, average, record.raw[-1], strict=True):
        torch.testing.assert_close(checkpoint["state_dict"][name], expected)
        torch.testing.assert_close(checkpoint["current_model_state"][name], raw)


@pytest.mark.parametrize("decay", [1.0, -0.1, "0.9", None])
def test_a_decay_outside_zero_to_one_is_refused(decay):
    with pytest.raises(ValueError, match=f"EMA decay must be a number in \\[0, 1\\), got "
                                         f"decay={decay!r}"):
        EMA(decay=decay)
