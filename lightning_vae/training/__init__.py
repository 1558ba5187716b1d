"""Training: the LightningModule that owns a model, an objective, metrics, the optimizer and
logging; its callbacks, checkpoints and export, and the speed path."""

from lightning_vae.training.callbacks import ImagePanels, LatentDiagnostics
from lightning_vae.training.ema import EMA
from lightning_vae.training.export import PushToHub, export_checkpoint, push
from lightning_vae.training.host_memory import ReuseFreedMemory
from lightning_vae.training.module import VAE
from lightning_vae.training.subnormals import flush_subnormals
from lightning_vae.training.traversals import LatentTraversals

__all__ = ["EMA", "VAE", "ImagePanels", "LatentDiagnostics", "LatentTraversals", "PushToHub",
           "ReuseFreedMemory", "export_checkpoint", "flush_subnormals", "push"]
