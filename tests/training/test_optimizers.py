"""The optimizers a VAE trains with (lightning_vae.training.optimizers): Adam or AdamW, the
fused single-kernel implementation wherever torch has one, capturable on a GPU, and their
checkpoints loading whatever implementation wrote them."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset
from training_models import tiny_bars

from lightning_vae import VAE
from lightning_vae.training.optimizers import (
    build_optimizer,
    capturable_supported,
    fused_supported,
)


def tiny_mlp() -> VAE:
    """With torch's default Adam, which (unlike the fused kernel) checks ``capturable``."""
    return VAE(arch="mlp", image_shape=(1, 8, 8), latent_dim=2,
               arch_options={"hidden_dims": [16]}, iw_samples=0, fused_optimizer=False)


def small_conv(**options) -> VAE:
    return VAE(arch="conv", image_shape=(1, 16, 16), latent_dim=4,
               arch_options={"channels": [4, 8], "hidden_dim": 16}, **options)


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_the_fused_optimizer_is_chosen_where_torch_has_a_kernel(name, cls):
    model = small_conv(optimizer=name)
    if not fused_supported(model.parameters()):
        pytest.skip(f"torch {torch.__version__} has no fused Adam for the CPU (2.4 and later do)")
    optimizer = model.configure_optimizers()
    assert type(optimizer) is cls
    assert optimizer.defaults["fused"] is True


def test_fused_optimizer_false_keeps_torchs_default_implementation():
    optimizer = small_conv(fused_optimizer=False).configure_optimizers()
    assert not optimizer.defaults["fused"]


def test_fused_kernels_are_not_claimed_for_devices_or_dtypes_without_one():
    assert not fused_supported([torch.zeros(2, device="meta")])
    assert not fused_supported([torch.zeros(2, dtype=torch.int64)])


def test_capturable_is_asked_only_where_torch_can_capture_the_step():
    params = [torch.nn.Parameter(torch.zeros(3))]
    assert not capturable_supported(params)  # the CPU keeps Adam's step count on the host
    optimizer = build_optimizer("adam", params, 1e-3, 0.0, fused=False, capturable=True)
    assert not optimizer.param_groups[0]["capturable"]


def trained_optimizer(**options) -> tuple[torch.nn.Linear, torch.optim.Optimizer]:
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 2)
    optimizer = build_optimizer("adamw", layer.parameters(), 1e-2, 0.1, **options)
    for _ in range(3):
        optimizer.zero_grad()
        layer(torch.randn(8, 4)).square().sum().backward()
        optimizer.step()
    return layer, optimizer


def test_the_optimizer_state_survives_a_state_dict_round_trip():
    layer, optimizer = trained_optimizer(fused=True)
    copy = build_optimizer("adamw", layer.parameters(), 1e-2, 0.1, fused=True)
    copy.load_state_dict(optimizer.state_dict())
    for key, value in optimizer.state_dict()["state"][0].items():
        torch.testing.assert_close(copy.state_dict()["state"][0][key], value, msg=key)
    assert copy.param_groups[0]["lr"] == 1e-2


def capturable_style(state: dict) -> dict:
    """``state``, in place, as a capturable optimizer on a GPU writes it: ``capturable: True``
    in every param group and each step count a float32 tensor (on the CPU here, as after
    ``map_location="cpu"``)."""
    for group in state["param_groups"]:
        group["capturable"] = True
    for values in state["state"].values():
        values["step"] = torch.tensor(float(values["step"]), dtype=torch.float32)
    return state


def test_a_capturable_state_loads_into_a_cpu_optimizer_that_keeps_its_own_flags():
    layer, optimizer = trained_optimizer(fused=False)
    steps = float(optimizer.state_dict()["state"][0]["step"])
    reloaded = build_optimizer("adamw", layer.parameters(), 1e-2, 0.1, fused=False)
    reloaded.load_state_dict(capturable_style(optimizer.state_dict()))
    assert reloaded.param_groups[0]["capturable"] is False
    reloaded.zero_grad()
    layer(torch.ones(1, 4)).sum().backward()
    reloaded.step()  # a capturable flag on CPU parameters would raise here
    assert float(reloaded.state_dict()["state"][0]["step"]) == steps + 1 == 4


def test_a_checkpoint_of_a_capturable_optimizer_resumes_on_the_cpu(tmp_path):
    """Four steps saved, the optimizer state rewritten as a graphed GPU run writes it, then
    resumed on the CPU to eight steps: the same weights as resuming the untouched file."""
    images = tiny_bars(64)
    loader = DataLoader(TensorDataset(images), batch_size=16)
    trainer_options = dict(logger=False, enable_progress_bar=False, enable_model_summary=False,
                           accelerator="cpu")
    pl.seed_everything(0)
    pl.Trainer(max_steps=4, default_root_dir=tmp_path, **trainer_options).fit(
        tiny_mlp(), loader)
    (saved,) = (tmp_path / "checkpoints").glob("*.ckpt")
    checkpoint = torch.load(saved, weights_only=False)
    capturable_style(checkpoint["optimizer_states"][0])
    torch.save(checkpoint, tmp_path / "capturable.ckpt")
    weights = []
    for path in (saved, tmp_path / "capturable.ckpt"):
        pl.seed_everything(0)
        model = tiny_mlp()
        pl.Trainer(max_steps=8, enable_checkpointing=False, **trainer_options).fit(
            model, loader, ckpt_path=str(path))
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])
