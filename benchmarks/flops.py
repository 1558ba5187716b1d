"""What a training step computes and what the device could: the model's FLOPs per step, counted
once with ``torch.utils.flop_counter.FlopCounterMode``, and the device's peak FLOP/s, so that
``train_throughput.py`` reports each pipeline's achieved FLOP/s and its fraction of the peak.

Peaks: on the CPU, fp32 from the cores this process may use × clock × FMA width (vector lanes ×
2 FLOPs per fused multiply-add × 2 FMA units per core, the count of current x86 server cores:
Intel since Skylake-SP Gold, AMD since Zen 2); on NVIDIA GPUs the datasheet's dense
tensor-core peak of the dtype the matrix products run in (fp32 without TF32: the CUDA-core
peak).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

FMA_UNITS = 2
# Datasheet peaks, dense (no sparsity), TFLOP/s: (fp32, tf32, bf16). Matched in this order
# against torch.cuda.get_device_name.
GPU_PEAKS = {
    "H200": (67.0, 494.7, 989.4),
    "H100 NVL": (60.0, 417.5, 835.5),
    "H100 PCIe": (51.0, 378.0, 756.0),
    "H100": (67.0, 494.7, 989.4),  # SXM
    "A100": (19.5, 156.0, 312.0),
}


def step_flops(model_kwargs: dict, batch_size: int, image_shape=(1, 28, 28)) -> int:
    """FLOPs of one training step of ``VAE(**model_kwargs)`` on a batch: the forward (encoder,
    sampling, decoder, ELBO terms) and the backward, as ``FlopCounterMode`` counts them
    (matrix products and convolutions, 2 FLOPs per multiply-add; the optimizer and the
    element-wise operations are not counted, a few per cent at most here). Counted on the CPU:
    the count does not depend on the device."""
    from lightning_vae import VAE

    model = VAE(**{**model_kwargs, "image_shape": image_shape}).train()
    model._train_generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, *image_shape).round()
    with FlopCounterMode(display=False) as counter:
        model._objective(model._training_terms(x))["loss"].backward()
    return counter.get_total_flops()


def cpu_description() -> tuple[float, str]:
    """fp32 peak FLOP/s of the cores this process may run on, and how it was derived."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(re.search(r"^flags\s*:(.*)$", info, re.M).group(1).split()) if info else set()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags or "avx" in flags else 4
    fma = 2 if "fma" in flags or "avx512f" in flags else 1
    nominal = re.search(r"@\s*([\d.]+)\s*GHz", info)
    current = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M)]
    ghz = float(nominal.group(1)) if nominal else (max(current) / 1000 if current else 2.0)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    peak = cores * ghz * 1e9 * lanes * fma * FMA_UNITS
    how = (f"{cores} cores x {ghz:.2f} GHz x {lanes} fp32 lanes x {fma} (FMA) x {FMA_UNITS} "
           f"FMA units = {peak / 1e9:.0f} GFLOP/s fp32")
    return peak, how


def gpu_description(device: torch.device, bf16: bool) -> tuple[float | None, str]:
    """The datasheet peak of ``device`` for the dtype its products run in, and its name."""
    name = torch.cuda.get_device_name(device)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    dtype, column = ("bf16", 2) if bf16 else ("tf32", 1) if tf32 else ("fp32", 0)
    for key, peaks in GPU_PEAKS.items():
        if key in name:
            return peaks[column] * 1e12, f"{name}: {peaks[column]:g} TFLOP/s {dtype} (datasheet)"
    return None, f"{name}: no datasheet peak known for {dtype}"


def device_peak(device: str, bf16: bool) -> tuple[float | None, str]:
    """Peak FLOP/s of ``device`` ("cpu", "cuda", ...) for the step's dtype, and its derivation."""
    if device.startswith("cuda"):
        return gpu_description(torch.device(device), bf16)
    return cpu_description()
