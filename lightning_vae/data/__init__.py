"""Data: one base datamodule (:class:`ImageDataModule`) and its MNIST, Fashion-MNIST, CelebA,
dSprites and image-folder subclasses; IDX reading, downloads, device-resident batches."""

from lightning_vae.data.base import ImageDataModule
from lightning_vae.data.celeba import CelebADataModule
from lightning_vae.data.device_loader import DeviceLoader, EpochShardSampler, make_loader
from lightning_vae.data.download import DownloadError, download_file
from lightning_vae.data.dsprites import DSpritesDataModule
from lightning_vae.data.folder import ImageFolderDataModule
from lightning_vae.data.idx import IDXError, idx_mismatch, read_idx
from lightning_vae.data.mnist import FashionMNISTDataModule, IDXDataModule, MNISTDataModule
from lightning_vae.data.sources import FASHION_MNIST, MNIST, IDXDatasetSpec, IDXFile, locate_files

__all__ = [
    "FASHION_MNIST",
    "MNIST",
    "CelebADataModule",
    "DSpritesDataModule",
    "DeviceLoader",
    "DownloadError",
    "EpochShardSampler",
    "FashionMNISTDataModule",
    "IDXDataModule",
    "IDXDatasetSpec",
    "IDXError",
    "IDXFile",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "download_file",
    "idx_mismatch",
    "locate_files",
    "make_loader",
    "read_idx",
]
