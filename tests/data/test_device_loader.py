"""DeviceLoader: DistributedSampler semantics, on-device conversion, reproducible randomness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, DistributedSampler

from lightning_vae.data import device_loader
from lightning_vae.data.device_loader import (
    DeviceLoader,
    EpochShardSampler,
    InMemoryImageDataset,
    bernoulli_uint8,
    binarize_once,
    choose_loader,
    make_loader,
    placement_of,
)

N = 103


def index_images(n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose every pixel is ``i % 256`` and labels ``i``: a batch tells its indices."""
    images = (torch.arange(n) % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4)
    return images.contiguous(), torch.arange(n)


def epoch_labels(loader: DeviceLoader, epoch: int) -> list[int]:
    loader.sampler.set_epoch(epoch)
    return torch.cat([labels for _, labels in loader]).tolist()


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_sampler_matches_distributed_sampler(
    world_size: int, drop_last: bool, shuffle: bool
) -> None:
    dataset = list(range(N))
    for rank in range(world_size):
        ours = EpochShardSampler(
            N, shuffle=shuffle, seed=7, rank=rank, world_size=world_size, drop_last=drop_last
        )
        torch_sampler = DistributedSampler(
            dataset, world_size, rank, shuffle=shuffle, seed=7, drop_last=drop_last
        )
        for epoch in (0, 1, 5):
            ours.set_epoch(epoch)
            torch_sampler.set_epoch(epoch)
            assert list(ours) == list(torch_sampler)
            assert len(ours) == len(torch_sampler)


def test_shards_are_disjoint_cover_the_data_and_change_every_epoch() -> None:
    samplers = [EpochShardSampler(100, shuffle=True, rank=r, world_size=2) for r in range(2)]
    orders = []
    for epoch in range(3):
        shards = []
        for sampler in samplers:
            sampler.set_epoch(epoch)
            shards.append(sampler.indices().tolist())
        assert not set(shards[0]) & set(shards[1])
        assert sorted(shards[0] + shards[1]) == list(range(100))
        orders.append(shards[0])
    assert orders[0] != orders[1] != orders[2]


def test_batches_are_float_in_unit_range_and_match_labels() -> None:
    images, labels = index_images()
    loader = DeviceLoader(images, labels, batch_size=10, shuffle=True)
    seen = []
    for batch, batch_labels in loader:
        assert batch.dtype == torch.float32 and batch.shape[1:] == (1, 4, 4)
        assert batch_labels.dtype == torch.int64
        expected = (batch_labels % 256).float() / 255
        assert torch.equal(batch[:, 0, 0, 0], expected)
        seen += batch_labels.tolist()
    assert sorted(seen) == list(range(N)) and seen != list(range(N))


def test_length_and_last_batch_follow_drop_last() -> None:
    images, labels = index_images()
    keep = DeviceLoader(images, labels, batch_size=10)
    drop = DeviceLoader(images, labels, batch_size=10, drop_last=True)
    assert len(keep) == 11 and [len(y) for _, y in keep][-1] == 3
    assert len(drop) == 10 and all(len(y) == 10 for _, y in drop)


def test_same_epoch_gives_the_same_batches_in_a_fresh_loader() -> None:
    """A run resumed at an epoch boundary (new loader, set_epoch) sees the same order."""
    images, labels = index_images()
    first = DeviceLoader(images, labels, batch_size=16, shuffle=True, seed=3)
    resumed = DeviceLoader(images, labels, batch_size=16, shuffle=True, seed=3)
    assert epoch_labels(first, 4) == epoch_labels(resumed, 4)
    assert epoch_labels(first, 4) != epoch_labels(first, 5)


def binary_epoch(loader: DeviceLoader, epoch: int) -> torch.Tensor:
    loader.sampler.set_epoch(epoch)
    return torch.cat([batch for batch, _ in loader])


def test_dynamic_binarization_is_fresh_per_epoch_and_reproducible() -> None:
    grey = torch.full((64, 1, 8, 8), 128, dtype=torch.uint8)
    labels = torch.arange(64)
    loader = DeviceLoader(grey, labels, batch_size=16, binarize=True, seed=1)
    epoch0, epoch1 = binary_epoch(loader, 0), binary_epoch(loader, 1)
    assert set(epoch0.unique().tolist()) == {0.0, 1.0}
    assert abs(epoch0.mean().item() - 128 / 255) < 0.03
    assert not torch.equal(epoch0, epoch1)
    resumed = DeviceLoader(grey, labels, batch_size=16, binarize=True, seed=1)
    assert torch.equal(binary_epoch(resumed, 1), epoch1)


@pytest.mark.parametrize(("rank", "world_size", "drop_last"),
                         [(0, 1, False), (0, 1, True), (2, 3, False), (1, 3, True)])
@pytest.mark.parametrize("per_chunk", [1, 2, 3, 11])
def test_chunked_batches_follow_the_order_and_resume_anywhere(
        monkeypatch, per_chunk, rank, world_size, drop_last) -> None:
    """Batches gathered and binarized a chunk at a time: the sampler's order for this rank, the
    last batch partial or dropped, and a loader resumed at any batch (at or inside a chunk's
    bounds) yields the uninterrupted epoch's remaining batches, binarization noise included."""
    images, labels = index_images()
    monkeypatch.setattr(device_loader, "CPU_CHUNK_BYTES", per_chunk * 10 * images[0].numel())

    def loader() -> DeviceLoader:
        made = DeviceLoader(images, labels, batch_size=10, shuffle=True, binarize=True, seed=2,
                            rank=rank, world_size=world_size, drop_last=drop_last)
        made.sampler.set_epoch(3)
        return made

    assert loader().chunk_batches() == per_chunk
    uninterrupted = list(loader())
    binary = torch.cat([x for x, _ in uninterrupted])
    order = torch.cat([y for _, y in uninterrupted])
    shard = loader().sampler.indices().tolist()
    kept = len(shard) // 10 * 10 if drop_last else len(shard)
    assert order.tolist() == shard[:kept]
    assert [len(y) for _, y in uninterrupted] == [10] * (len(shard) // 10) + (
        [] if drop_last or len(shard) % 10 == 0 else [len(shard) % 10])
    assert set(binary.unique().tolist()) == {0.0, 1.0}
    assert not binary[order == 0].any()  # image 0 is black: P(1) = 0 exactly
    for skip in range(1, len(uninterrupted)):
        resumed = loader()
        resumed.load_state_dict({"epoch": 3, "batches": skip})
        for (x, y), (want_x, want_y) in zip(resumed, uninterrupted[skip:], strict=True):
            assert torch.equal(y, want_y) and torch.equal(x, want_x)


def test_a_loader_over_no_images_yields_no_batches() -> None:
    empty = DeviceLoader(torch.zeros(0, 1, 4, 4, dtype=torch.uint8),
                         torch.zeros(0, dtype=torch.long), batch_size=8, binarize=True)
    assert len(empty) == 0 and list(empty) == []


def test_a_cpu_chunk_is_a_cache_sized_one_and_a_gpu_chunk_an_mnist_epoch() -> None:
    mnist_batches = DeviceLoader(torch.zeros(256, 1, 28, 28, dtype=torch.uint8),
                                 torch.zeros(256, dtype=torch.long), batch_size=128)
    assert mnist_batches.chunk_batches() == 10  # 1 MiB of 128-image batches
    assert device_loader.ACCELERATOR_CHUNK_BYTES // (128 * 28 * 28) >= 60_000 // 128


def test_a_batch_after_the_first_of_its_chunk_costs_one_kernel() -> None:
    """The per-step work of the loader: after a chunk's gather and binarization, each batch
    is views of the chunk and one conversion to float (a step launches one kernel for it)."""
    images, labels = index_images()
    batches = iter(DeviceLoader(images, labels, batch_size=10, shuffle=True, binarize=True))
    next(batches)  # gathers and binarizes the chunk: the whole epoch here (1 KiB of images)
    with CountOps() as ops:
        next(batches)
    assert [op for op in ops.names if op not in VIEWS] == ["_to_copy"], ops.names


VIEWS = {"slice", "select", "view", "alias", "as_strided"}


class CountOps(TorchDispatchMode):
    """The ATen operators run inside the block, by name (``aten.slice.Tensor`` → ``slice``)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_ranks_get_different_binarization_noise() -> None:
    grey = torch.full((64, 1, 8, 8), 128, dtype=torch.uint8)
    ranks = [
        DeviceLoader(grey, torch.arange(64), 32, binarize=True, rank=r, world_size=2)
        for r in range(2)
    ]
    assert not torch.equal(binary_epoch(ranks[0], 0), binary_epoch(ranks[1], 0))


def test_bernoulli_is_exact_at_zero_and_full_intensity() -> None:
    images = torch.tensor([0, 255], dtype=torch.uint8).repeat(10_000)
    draw = bernoulli_uint8(images, torch.Generator().manual_seed(0))
    assert not draw[0::2].any() and draw[1::2].all()


def test_binarize_once_is_a_fixed_draw_in_0_255() -> None:
    grey = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8)
    once = binarize_once(grey, seed=5)
    assert torch.equal(once, binarize_once(grey, seed=5))
    assert not torch.equal(once, binarize_once(grey, seed=6))
    assert set(once.unique().tolist()) <= {0, 255}


def test_rejects_non_uint8_images() -> None:
    with pytest.raises(ValueError, match=r"uint8 tensor \(N, C, H, W\), got torch.float32"):
        DeviceLoader(torch.zeros(4, 1, 2, 2), torch.zeros(4), batch_size=2)


def test_choose_loader_by_budget_or_forced() -> None:
    assert choose_loader(100, "cpu", "auto", budget_bytes=100) == "device"
    assert choose_loader(101, "cpu", "auto", budget_bytes=100) == "dataloader"
    assert choose_loader(10**15, "cpu", "device") == "device"
    assert choose_loader(1, "cpu", "dataloader") == "dataloader"
    assert choose_loader(47_040_000, "cpu") == "device"  # MNIST fits any machine's budget
    with pytest.raises(ValueError, match="loader='gpu'"):
        choose_loader(1, "cpu", "gpu")


def test_dataloader_fallback_yields_the_same_kind_of_batches() -> None:
    images, labels = index_images()
    loader = make_loader(images, labels, 10, shuffle=True, loader="dataloader", num_workers=0)
    assert isinstance(loader, DataLoader)
    batch, batch_labels = next(iter(loader))
    assert batch.dtype == torch.float32 and batch.shape == (10, 1, 4, 4)
    assert torch.equal(batch[:, 0, 0, 0], (batch_labels % 256).float() / 255)


@pytest.mark.parametrize("loader", ["device", "dataloader"])
def test_make_loader_takes_the_device_loaders_options_for_either_loader(loader: str) -> None:
    images, labels = index_images()
    made = make_loader(images, labels, 10, loader=loader, num_workers=0, drop_last=True)
    assert len(made) == N // 10
    with pytest.raises(TypeError, match="shufle"):
        make_loader(images, labels, 10, loader=loader, shufle=True)


def test_in_memory_dataset_binarizes_per_sample() -> None:
    dataset = InMemoryImageDataset(
        torch.full((2, 1, 8, 8), 128, dtype=torch.uint8), torch.arange(2), True
    )
    image, label = dataset[1]
    assert set(image.unique().tolist()) == {0.0, 1.0} and label == 1


def test_placement_without_trainer_is_cpu_rank_zero() -> None:
    assert placement_of(None) == (torch.device("cpu"), 0, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_are_produced_on_the_gpu() -> None:
    images, labels = index_images()
    loader = DeviceLoader(images, labels, 10, shuffle=True, binarize=True, device="cuda")
    batch, batch_labels = next(iter(loader))
    assert batch.device.type == "cuda" and batch_labels.device.type == "cuda"


# -- two-process DDP on CPU ---------------------------------------------------------------------


class IndexDataModule(pl.LightningDataModule):
    """Labels are indices; the loader takes device and rank from the attached trainer."""

    def train_dataloader(self) -> DeviceLoader:
        device, rank, world_size = placement_of(self.trainer)
        images, labels = index_images(40)
        return DeviceLoader(
            images,
            labels,
            4,
            shuffle=True,
            binarize=True,
            device=device,
            rank=rank,
            world_size=world_size,
        )


class RecordIndices(pl.LightningModule):
    """Writes each rank's indices and binarized pixels per epoch to ``out_dir``."""

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir, self.weight = out_dir, torch.nn.Parameter(torch.zeros(()))
        self.seen: list[int] = []

    def training_step(self, batch, batch_idx):
        images, labels = batch
        self.seen += labels.tolist()
        return (self.weight * images.mean()) ** 2

    def on_train_epoch_end(self) -> None:
        path = Path(self.out_dir) / f"rank{self.global_rank}_epoch{self.current_epoch}.json"
        path.write_text(json.dumps(self.seen))
        self.seen = []

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.slow
def test_ddp_ranks_get_disjoint_shards_that_cover_the_data_and_change_each_epoch(
    tmp_path: Path,
) -> None:
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(RecordIndices(str(tmp_path)), IndexDataModule())
    shards = {
        (rank, epoch): json.loads((tmp_path / f"rank{rank}_epoch{epoch}.json").read_text())
        for rank in range(2)
        for epoch in range(3)
    }
    for epoch in range(3):
        first, second = shards[0, epoch], shards[1, epoch]
        assert len(first) == len(second) == 20
        assert not set(first) & set(second)
        assert sorted(first + second) == list(range(40))
    assert shards[0, 0] != shards[0, 1] != shards[0, 2]
