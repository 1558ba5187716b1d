"""Quantities accumulated over a data set, as torchmetrics ``Metric``s (correct under DDP)."""

from lightning_vae.metrics.disentanglement import (
    DCIDisentanglement,
    FactorVAEScore,
    MutualInformationGap,
    SAPScore,
)
from lightning_vae.metrics.latents import ACTIVE_UNIT_THRESHOLD, ActiveUnits, KLPerDimension
from lightning_vae.metrics.likelihood import ImportanceWeightedNLL

__all__ = [
    "ACTIVE_UNIT_THRESHOLD",
    "ActiveUnits",
    "DCIDisentanglement",
    "FactorVAEScore",
    "ImportanceWeightedNLL",
    "KLPerDimension",
    "MutualInformationGap",
    "SAPScore",
]
