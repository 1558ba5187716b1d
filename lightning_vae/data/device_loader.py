"""Batches drawn on the training device from one in-memory uint8 tensor, for any image data set.

Small image data sets (MNIST: 47 MB as uint8) fit on the GPU many times over. Copying them there
once and drawing every batch by index *on the device* removes the per-sample Python work, the
worker processes and the host-to-device copy of each step that a ``DataLoader`` pays for; the
uint8 → float conversion (and dynamic binarization) then happens on the device as well.

:class:`DeviceLoader` is the fast path, :func:`dataloader_for` the ordinary ``DataLoader``
fallback for data that does not fit, and :func:`make_loader` picks one by a memory budget.
Nothing here knows about a particular data set: callers hand over a uint8 tensor (N, C, H, W)
with values 0..255 and a label tensor (N, ...); data without labels passes
``torch.zeros(n, dtype=torch.long)``.

Randomness is reproducible: the epoch's permutation follows ``torch.utils.data.DistributedSampler``
exactly (seeded by ``seed + epoch``, shared by all ranks, each rank taking every
``world_size``-th index), and the binarization noise comes from a generator seeded by
``(seed, epoch, rank)``. A run resumed at an epoch boundary therefore sees the same batches and the
same binary images, and no two ranks share noise. Lightning calls ``loader.sampler.set_epoch``
before every epoch, for custom iterables too (``lightning_fabric.utilities.data._set_sampler_epoch``
from the fit loop's ``on_advance_start``); without a Trainer, call it yourself. A
:class:`DeviceLoader` is also resumable mid-epoch: Lightning saves its ``state_dict`` (epoch and
batches seen) in checkpoints and a resumed run continues with the next batch.

Evaluation loaders are built with ``even_shards=False``: no index is repeated to even out the
shards, so a metric summed over ranks counts every example exactly once. The ``DataLoader``
fallback does the same with Lightning's ``UnrepeatedDistributedSampler``.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, Literal, NamedTuple, get_args

import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from lightning_vae.seeding import noise_seed

LoaderKind = Literal["auto", "device", "dataloader"]
# uint8 images a DeviceLoader gathers at once (plus its noise, if any). On an accelerator the
# chunk saves kernel launches, so larger is better (a whole MNIST epoch); on the CPU there are no
# launches to save, and a small chunk was fastest (docs/results.md, "Data loading").
ACCELERATOR_CHUNK_BYTES = 64 * 2**20
CPU_CHUNK_BYTES = 2**20


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Refuse ``value`` for the option ``name`` unless it is one of ``choices`` (a ``Literal``'s
    ``get_args``), naming it and the choices: when the object is built, not at its first batch."""
    if value not in choices:
        listed = ", ".join(map(repr, choices[:-1])) + f" or {choices[-1]!r}"
        raise ValueError(f"{name}={value!r}: expected {listed}")


class EpochShardSampler(Sampler[int]):
    """This rank's indices for each epoch, with the semantics of ``DistributedSampler``.

    One permutation per epoch (from ``seed + epoch``, identical on every rank), padded by
    repeating its head (``drop_last=False``) or truncated (``drop_last=True``) to a multiple of
    ``world_size``; rank ``r`` takes positions ``r, r + world_size, ...``. With ``shuffle=False``
    the order is ``0..n-1``, sharded the same way.

    ``even_shards=False`` (for evaluation) neither pads nor truncates: the shards differ in length
    by at most one and hold every index exactly once between them, so evaluation metrics summed
    over ranks count no example twice. Training needs even shards (``True``): DDP ranks must run
    the same number of steps.
    """

    def __init__(
        self,
        num_items: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        even_shards: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must lie in [0, world_size={world_size})")
        if seed < 0:
            raise ValueError(f"seed={seed} must be non-negative")
        self.num_items, self.shuffle, self.seed = num_items, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.even_shards = even_shards
        if not even_shards and 0 < num_items < world_size:
            raise ValueError(
                f"{num_items} items cannot give each of {world_size} ranks one (a rank without "
                "a batch can stall DDP): evaluate on at least as many items as ranks"
            )
        self.epoch = 0
        if not even_shards:
            self.num_samples = len(range(rank, num_items, world_size))
        elif drop_last:
            self.num_samples = num_items // world_size
        else:
            self.num_samples = math.ceil(num_items / world_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation :meth:`indices` returns (Lightning calls this)."""
        self.epoch = epoch

    def indices(self) -> Tensor:
        """This rank's indices for the current epoch: int64 on the CPU, ``len(self)`` of them."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_items, generator=generator)
        else:
            order = torch.arange(self.num_items)
        if not self.even_shards:
            return order[self.rank :: self.world_size]
        total = self.num_samples * self.world_size
        if total > self.num_items:  # pad by repeating the head, as DistributedSampler does
            order = order.repeat(math.ceil(total / self.num_items))
        return order[:total][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples


def bernoulli_uint8(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Binary images with P(pixel = 1) = value / 255, exactly, as a bool tensor.

    Compares each uint8 pixel with a uniform integer in [0, 255): no float noise tensor, and
    pixels 0 and 255 stay 0 and 1.
    """
    noise = torch.randint(
        0, 255, images.shape, dtype=torch.uint8, device=images.device, generator=generator
    )
    return noise < images


def to_unit_float(images: Tensor) -> Tensor:
    """uint8 0..255 → float32 in [0, 1]."""
    return images.to(torch.float32).div_(255)


def binarize_once(images: Tensor, seed: int) -> Tensor:
    """One fixed Bernoulli draw of a uint8 tensor, returned as uint8 0/255 (static binarization).

    Used for statically binarized data and for evaluation sets under dynamic binarization, so
    every run and every epoch sees the same binary images for a given ``seed``.
    """
    generator = torch.Generator(device=images.device).manual_seed(seed)
    return bernoulli_uint8(images, generator).to(torch.uint8).mul_(255)


class DeviceLoader:
    """Iterate ``(images, labels)`` batches drawn by index from tensors held on ``device``.

    ``images`` (N, C, H, W) uint8 and ``labels`` (N, ...) are moved to ``device`` once, here.
    Batches are gathered on the device a chunk at a time (:meth:`chunk_batches`), with
    ``binarize=True`` a fresh Bernoulli draw for every image of the chunk (dynamic
    binarization); each batch is then converted to float32 in [0, 1]. ``sampler``
    (an :class:`EpochShardSampler`) decides the order and this rank's shard; ``drop_last`` both
    truncates the shards (when ``even_shards``) and drops the last incomplete batch.
    """

    # Lightning reads ``batch_sampler`` wherever it finds ``sampler`` (to detect shuffling).
    batch_sampler = None

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        binarize: bool = False,
        seed: int = 0,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        even_shards: bool = True,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be a uint8 tensor (N, C, H, W), got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        self.device = torch.device(device)
        self.images = images.to(self.device).contiguous()
        self.labels = labels.to(self.device)
        self.batch_size, self.drop_last, self.binarize, self.seed = (
            batch_size,
            drop_last,
            binarize,
            seed,
        )
        self.sampler = EpochShardSampler(
            len(images),
            shuffle=shuffle,
            seed=seed,
            rank=rank,
            world_size=world_size,
            drop_last=drop_last,
            even_shards=even_shards,
        )
        self._noise = torch.Generator(device=self.device)
        self._batches_seen = 0  # of the sampler's epoch, for state_dict
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches) from load_state_dict

    def state_dict(self) -> dict[str, int]:
        """The epoch and how many of its batches were yielded. Lightning stores this in
        checkpoints (for iterables with ``state_dict``/``load_state_dict``), so that a run resumed
        mid-epoch does not see the epoch's first batches again."""
        return {"epoch": self.sampler.epoch, "batches": self._batches_seen}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Skip the first ``state["batches"]`` batches the next time epoch ``state["epoch"]`` is
        iterated; any other epoch starts from its first batch."""
        self._resume_at = (int(state["epoch"]), int(state["batches"]))

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def chunk_batches(self) -> int:
        """How many batches :meth:`__iter__` gathers (and binarizes) at once: as many as fit in
        :data:`CPU_CHUNK_BYTES` of uint8 images on the CPU, :data:`ACCELERATOR_CHUNK_BYTES`
        elsewhere, at least one. For MNIST at batch 128: 10 batches on the CPU, a whole epoch on
        a GPU."""
        budget = CPU_CHUNK_BYTES if self.device.type == "cpu" else ACCELERATOR_CHUNK_BYTES
        return max(1, budget // max(1, self.batch_size * math.prod(self.images.shape[1:])))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        # One small index copy per epoch. The gathers and the binarization run once per chunk
        # of batches; each batch is then slices of the chunk and its conversion to float: on a
        # GPU, one kernel launch per step for binary images (two for grey levels), where a
        # gather per batch took five (four) (docs/results.md, "Fourth session").
        indices = self.sampler.indices().to(self.device)
        s = self.sampler
        self._noise.manual_seed(noise_seed(self.seed, s.epoch, s.rank))
        resume_epoch, skip = self._resume_at or (s.epoch, 0)
        if resume_epoch != s.epoch:
            skip = 0
        self._resume_at, self._batches_seen = None, skip
        size, per_chunk, batches = self.batch_size, self.chunk_batches(), len(self)
        for first in range(0, batches, per_chunk):
            last = min(first + per_chunk, batches)
            idx = indices[first * size : last * size]
            chunk, labels = self.images[idx], self.labels[idx]
            # Skipped chunks draw their binarization noise too, so the later batches match.
            binary = bernoulli_uint8(chunk, self._noise) if self.binarize else None
            for b in range(max(first, skip), last):
                rows = slice((b - first) * size, (b - first + 1) * size)
                self._batches_seen = b + 1
                images = to_unit_float(chunk[rows]) if binary is None else binary[rows].float()
                yield images, labels[rows]


class InMemoryImageDataset(Dataset):
    """Per-sample view of uint8 images (N, C, H, W): ``(float image in [0, 1], label)``.

    The usual ``Dataset`` approach, used by the ``DataLoader`` fallback. With ``binarize=True``
    each access draws a fresh Bernoulli sample from the worker's global torch RNG (seeded by
    Lightning per worker and rank), so it is not tied to (seed, epoch) like :class:`DeviceLoader`.
    """

    def __init__(self, images: Tensor, labels: Tensor, binarize: bool = False) -> None:
        self.images, self.labels, self.binarize = images, labels, binarize

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index]
        if self.binarize:
            return bernoulli_uint8(image).to(torch.float32), self.labels[index]
        return to_unit_float(image), self.labels[index]


def dataloader_for(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    drop_last: bool = False,
    seed: int = 0,
    device: torch.device | str = "cpu",
    num_workers: int | None = None,
    sampler: Sampler | None = None,
) -> DataLoader:
    """An ordinary ``DataLoader`` with worker processes and, for CUDA, pinned memory.

    Under DDP, Lightning swaps its sampler for a ``DistributedSampler``, so no rank is passed here,
    unless ``sampler`` is already one (Lightning then keeps it). ``num_workers`` defaults to
    ``min(4, CPU count)``.
    """
    if num_workers is None:
        num_workers = min(4, os.cpu_count() or 1)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=torch.device(device).type == "cuda",
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )


def free_memory_bytes(device: torch.device | str) -> int:
    """Free memory where ``device``'s tensors live: the GPU's, else the host's available RAM."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def choose_loader(
    nbytes: int,
    device: torch.device | str,
    loader: LoaderKind = "auto",
    budget_bytes: int | None = None,
) -> Literal["device", "dataloader"]:
    """``"device"`` when ``nbytes`` fit the budget (default: a quarter of the free memory on
    ``device``), else ``"dataloader"``; ``loader="device"|"dataloader"`` forces the choice."""
    check_choice("loader", loader, get_args(LoaderKind))
    if loader != "auto":
        return loader
    if budget_bytes is None:
        budget_bytes = free_memory_bytes(device) // 4
    return "device" if nbytes <= budget_bytes else "dataloader"


def make_loader(
    images: Tensor,
    labels: Tensor,
    batch_size: int,
    *,
    loader: LoaderKind = "auto",
    budget_bytes: int | None = None,
    num_workers: int | None = None,
    **options: Any,
) -> DeviceLoader | DataLoader:
    """A :class:`DeviceLoader` when the images fit the device's budget, else a ``DataLoader``.

    Both yield ``(float32 images in [0, 1] (B, C, H, W), labels)``; see :func:`choose_loader`.
    ``options`` are the DeviceLoader's keyword arguments, with its defaults (``shuffle``,
    ``drop_last``, ``binarize``, ``seed``, ``device``, ``rank``, ``world_size``,
    ``even_shards``): named there only, and honoured by the ``DataLoader`` as well. Pass
    ``even_shards=False`` for evaluation: each example on exactly one rank, none repeated (see
    :class:`EpochShardSampler`).
    """
    bound = inspect.signature(DeviceLoader).bind(images, labels, batch_size, **options)
    bound.apply_defaults()
    given = SimpleNamespace(**bound.arguments)
    kind = choose_loader(images.numel() * images.element_size(), given.device, loader,
                         budget_bytes)
    if kind == "device":
        return DeviceLoader(*bound.args, **bound.kwargs)
    dataset = InMemoryImageDataset(images, labels, given.binarize)
    sampler = None
    if not given.even_shards and given.world_size > 1:  # Lightning's would repeat examples
        sampler = UnrepeatedDistributedSampler(
            dataset, num_replicas=given.world_size, rank=given.rank, shuffle=False)
    return dataloader_for(
        dataset,
        batch_size,
        shuffle=given.shuffle,
        drop_last=given.drop_last,
        seed=given.seed,
        device=given.device,
        num_workers=num_workers,
        sampler=sampler,
    )


class Placement(NamedTuple):
    """Where a loader's batches go: the device, this process's rank and the number of ranks."""

    device: torch.device
    rank: int
    world_size: int


def placement_of(trainer: object | None) -> Placement:
    """Device and rank from an attached Lightning trainer (``strategy.root_device``,
    ``global_rank``, ``world_size``); without one, the CPU as rank 0 of 1."""
    if trainer is None:
        return Placement(torch.device("cpu"), 0, 1)
    return Placement(trainer.strategy.root_device, trainer.global_rank, trainer.world_size)
