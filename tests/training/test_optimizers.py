"""The optimizers a VAE trains with (lightning_vae.training.optimizers): Adam or AdamW, the
fused single-kernel implementation wherever torch has one."""

import pytest
import torch

from lightning_vae import VAE
from lightning_vae.training.optimizers import fused_supported


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
