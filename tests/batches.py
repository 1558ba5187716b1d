"""What the data tests read from a loader."""

import torch


def all_batches(loader) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ``(images, labels)`` batch of one pass over ``loader``, concatenated."""
    images, labels = zip(*loader, strict=True)
    return torch.cat(images), torch.cat(labels)
