"""Batches per second: the device-resident loader against a plain per-sample DataLoader.

Both read the 60 000 MNIST training images and yield float32 (B, 1, 28, 28) batches in [0, 1]
(optionally dynamically binarized) on ``--device``:

- device: :class:`~lightning_vae.data.device_loader.DeviceLoader`, the whole uint8 set on the
  device, gathered a chunk of batches at a time and each batch converted there;
- dataloader: ``torch.utils.data.DataLoader`` over a per-sample ``Dataset`` (uint8 → float per
  image, then collate), ``--workers`` worker processes (default 1), pinned memory on CUDA and a
  host-to-device copy per batch: the usual approach (still cheaper than decoding PIL images).

Each is timed over ``--epochs`` full epochs after one warm-up epoch, synchronising the device
before reading the clock. Usage::

    python benchmarks/dataloading.py [--data-dir PATH] [--batch-size 128] [--device cuda]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable
from pathlib import Path

import torch

from lightning_vae.data.device_loader import DeviceLoader, InMemoryImageDataset, dataloader_for
from lightning_vae.data.idx import read_idx

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def batches_per_second(loader: Iterable, device: torch.device, epochs: int) -> float:
    """Mean batches per second over ``epochs`` epochs, after one untimed warm-up epoch."""

    def run_epoch(epoch: int) -> int:
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        count = 0
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            count += 1
        return count

    run_epoch(0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, count = time.perf_counter(), 0
    for epoch in range(1, epochs + 1):
        count += run_epoch(epoch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SHARED_MNIST)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--binarize", action="store_true", help="dynamic binarization in both")
    args = parser.parse_args()

    device = torch.device(args.device)
    images = torch.from_numpy(read_idx(args.data_dir / "train-images-idx3-ubyte.gz")).unsqueeze(1)
    labels = torch.from_numpy(read_idx(args.data_dir / "train-labels-idx1-ubyte.gz")).long()
    device_loader = DeviceLoader(
        images, labels, args.batch_size, shuffle=True, binarize=args.binarize, device=device
    )
    plain_loader = dataloader_for(
        InMemoryImageDataset(images, labels, args.binarize),
        args.batch_size,
        shuffle=True,
        device=device,
        num_workers=args.workers,
    )
    fast = batches_per_second(device_loader, device, args.epochs)
    slow = batches_per_second(plain_loader, device, args.epochs)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"MNIST train ({len(images)} images), batch {args.batch_size}, "
        f"binarize={'dynamic' if args.binarize else 'none'}, device {device} ({name}), "
        f"{torch.get_num_threads()} torch threads"
    )
    print(f"device-resident loader      : {fast:10.1f} batches/s")
    print(f"DataLoader, {args.workers} worker(s)     : {slow:10.1f} batches/s")
    print(f"ratio (device / DataLoader) : {fast / slow:10.1f}x")


if __name__ == "__main__":
    main()
